/**
 * Library mode: a library records through its host application's telemetry, never its own. It
 * cannot ask for consent (it owns no terminal, config or exit), so a {@link Library} records only
 * when the host called `Telemetry.init` and its user consented; events then carry the
 * attributes `library` and `library_version` and go through the host's consent, pseudonym,
 * queue and delivery. Otherwise every call is a property check.
 */
import { type Attributes, global } from './telemetry.js';

/** A library's recorder; see {@link library}. */
export class Library {
  constructor(
    readonly name: string,
    readonly version: string,
  ) {}

  /** Whether the host records telemetry with consent. */
  get isEnabled(): boolean {
    return global().isEnabled;
  }

  /** Records that method `name` (e.g. `Database.connect`) of the library was called. */
  method(name: string, attributes?: Attributes): void {
    const host = global();
    if (host.isEnabled) host.method(name, this.tags(attributes));
  }

  /** Records that feature `name` of the library was used. */
  feature(name: string, attributes?: Attributes): void {
    const host = global();
    if (host.isEnabled) host.feature(name, this.tags(attributes));
  }

  /** Records a custom event of the library. */
  event(name: string, attributes?: Attributes): void {
    const host = global();
    if (host.isEnabled) host.event(name, this.tags(attributes));
  }

  private tags(attributes: Attributes | undefined): Attributes {
    return { ...attributes, library: this.name, library_version: this.version };
  }
}

/** The recorder of library `name` at `version`: a no-op unless the host application initialised optel with consent. */
export function library(name: string, version: string): Library {
  return new Library(name, version);
}
