/**
 * The resolved configuration of a tool (the Rust SDK's `TelemetryBuilder`): options given in
 * code, then the tool's environment variables, then the defaults. Shared by `Telemetry.init`
 * and the `telemetry` subcommand, so both read the same files.
 */
import { childPath } from './fsutil.js';
import { type Asking, type Consent, type Resolution, envPrefix, resolveConsent, userConfigPath } from './consent.js';
import { defaultDataDir, platformConfigDir, rustArch, rustOs } from './dirs.js';
import type { Policy } from './delivery.js';
import type { Exporter } from './export.js';
import { DEFAULT_RETENTION_DAYS, JsonlFileExporter } from './ledger.js';
import type { Epoch } from './identity.js';
import { newBatch, type Batch } from './wire.js';

/** The SDK's version, sent in the `User-Agent`. */
export const SDK_VERSION = '0.1.0';
/**
 * Default exit budget: the longest a natural exit waits for telemetry, in ms. Shorter than the
 * Rust SDK's 40 ms: a Node.js process's own exit time varies by ~23 ms at p99 with telemetry off
 * (sdk/js/BENCHMARKS.md), so a 40 ms wait would put the added p99 with a dead endpoint above the
 * 50 ms budget of PRODUCT.md. A run that finds a batch queued sends it from its start, so the
 * request has the run's time as well.
 */
export const DEFAULT_EXIT_TIMEOUT_MS = 20;
/** The longest exit budget `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` may ask for. */
export const MAX_EXIT_TIMEOUT_MS = 10_000;
/** Default exit budget in CI: a bounded blocking flush, since CI has no next run. */
export const DEFAULT_CI_FLUSH_TIMEOUT_MS = 2_000;
/** Default timeout of one delivery request. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 2_000;
/** Default cap on delivery requests per UTC day and install. */
export const DEFAULT_DAILY_REQUEST_CAP = 10_000;
/** Default batch size: a run sends once this many events are queued (its own included). */
export const DEFAULT_BATCH_EVENTS = 16;
/** A run sends whatever is queued once the oldest queued segment is older than this (1 h), whatever the batch size. */
export const MAX_BATCH_DELAY_MS = 3_600_000;
/**
 * Exit budgets at least this long mean waiting at exit is accepted (CI, or asked for): every run
 * sends, and after `process.exit()` a flush child (a Node.js start costs ~40 ms) is run within it.
 */
export const LONG_EXIT_BUDGET_MS = 250;

/** Options of {@link Telemetry.init}; every one documents its default and variable. */
export interface TelemetryOptions {
  /** The tool's name, `[A-Za-z0-9_.:-]`, at most 64 bytes (e.g. `"acme-node"`). Its variables are `<TOOL>_TELEMETRY…` with `<TOOL>` upper-cased and `-`/`.` as `_`. */
  tool: string;
  /** The tool's version (e.g. from its package.json). */
  version: string;
  /** The collector's base URL (events go to `<url>/v1/events`) or the full route. Default: none (events stay queued). `<TOOL>_TELEMETRY_ENDPOINT` replaces it. */
  endpoint?: string;
  /** The project ingest key (`optel projects create`), sent as `Authorization: Bearer`. `<TOOL>_TELEMETRY_KEY` replaces it. */
  ingestKey?: string;
  /** How the user is asked when no layer decided: `silent` (default), `opt-in` (ask once on a terminal, never in CI), `notice` (on, with a one-time notice). */
  asking?: Asking;
  /** The state when no layer decides and `asking` is `silent`. Default: `off`. */
  defaultConsent?: Consent;
  /** The directory of the install secret, queue and ledger. Default: `<data dir>/optel/<tool>` (Linux: `~/.local/share/optel/<tool>`). */
  dataDir?: string;
  /** The directory of the consent files (`<dir>/optel/<tool>.toml`, `<dir>/optel/consent.toml`). Default: the platform config dir (Linux: `~/.config`). */
  configDir?: string;
  /** How often the pseudonym changes. Default: `monthly`. */
  pseudonymEpoch?: Epoch;
  /** The longest a natural exit waits for delivery, in ms. Default: 40. `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS` replaces it (at most 10,000). */
  exitTimeoutMs?: number;
  /**
   * How many queued events (this run's included) make a run send them, in one request, at its
   * natural end; runs before that only write their segment, so most runs pay no network round
   * trip and load no delivery code. A run also sends when the oldest queued segment is older
   * than 1 hour. 1 sends at the end of every run. Default: 16, or 1 when the exit budget is at
   * least 250 ms (CI, or a long `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS`: waiting is then accepted).
   * `<TOOL>_TELEMETRY_BATCH_EVENTS` replaces it (at least 1). {@link Telemetry.shutdown} and
   * `telemetry flush` always send.
   */
  batchEvents?: number;
  /** The exit budget when `CI` is set. Default: 2,000 ms. */
  ciFlushTimeoutMs?: number;
  /** Timeout of one delivery request. Default: 2,000 ms. */
  requestTimeoutMs?: number;
  /** Most delivery requests per UTC day from this install. Default: 10,000. */
  dailyRequestCap?: number;
  /** Whether request bodies are gzip-compressed. Default: true. */
  gzip?: boolean;
  /** Sends batches with this exporter instead of HTTP (e.g. a `MemoryExporter` in tests). */
  exporter?: Exporter;
  /** Days the local ledger keeps events; 0 keeps them forever. Default: 30. */
  ledgerRetentionDays?: number;
  /** The environment to read (default `process.env`): for tests. */
  env?: NodeJS.ProcessEnv;
  /** The working directory the project policy is searched from (default `process.cwd()`). */
  cwd?: string;
}

/** A configured tool, not started. */
export class TelemetryConfig {
  readonly tool: string;
  readonly version: string;
  readonly asking: Asking;
  readonly epoch: Epoch;
  readonly envObj: NodeJS.ProcessEnv;
  readonly prefix: string;

  constructor(readonly options: TelemetryOptions) {
    this.tool = options.tool;
    this.version = options.version;
    this.asking = options.asking ?? 'silent';
    this.epoch = options.pseudonymEpoch ?? 'monthly';
    this.envObj = options.env ?? process.env;
    this.prefix = envPrefix(this.tool);
  }

  env(name: string): string | undefined {
    return this.envObj[name];
  }

  /** Resolves consent without asking, writing or starting anything. */
  resolve(): Resolution {
    let cwd: string | undefined;
    try {
      cwd = this.options.cwd ?? process.cwd();
    } catch {
      cwd = undefined;
    }
    return resolveConsent({
      env: (k) => this.env(k),
      tool: this.tool,
      cwd,
      configDir: this.configDir(),
      default: this.asking === 'opt-in' ? 'off' : this.asking === 'notice' ? 'on' : (this.options.defaultConsent ?? 'off'),
    });
  }

  configDir(): string | undefined {
    return this.options.configDir ?? platformConfigDir(this.envObj);
  }

  userConfigFile(): string | undefined {
    const c = this.configDir();
    return c === undefined ? undefined : userConfigPath(c, this.tool);
  }

  dataDir(): string | undefined {
    return this.options.dataDir ?? defaultDataDir(this.tool, this.envObj);
  }

  ledger(dataDir: string): JsonlFileExporter {
    return new JsonlFileExporter(childPath(dataDir, 'ledger'), this.options.ledgerRetentionDays ?? DEFAULT_RETENTION_DAYS);
  }

  /** The endpoint after `<TOOL>_TELEMETRY_ENDPOINT`. */
  endpoint(): string | undefined {
    return this.env(`${this.prefix}_TELEMETRY_ENDPOINT`) || this.options.endpoint;
  }

  ingestKey(): string | undefined {
    return this.env(`${this.prefix}_TELEMETRY_KEY`) || this.options.ingestKey;
  }

  userAgent(): string {
    return `optel-js/${SDK_VERSION} (${this.tool}/${this.version})`;
  }

  /** Whether delivery has somewhere to send: an exporter given in code, or an endpoint. */
  delivers(): boolean {
    return this.options.exporter !== undefined || Boolean(this.endpoint());
  }

  policy(): Policy {
    return {
      requestTimeoutMs: this.options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      dailyRequestCap: this.options.dailyRequestCap ?? DEFAULT_DAILY_REQUEST_CAP,
    };
  }

  /** The exit budget: the variable, else the CI flush timeout under `CI`, else `exitTimeoutMs`. */
  exitBudgetMs(): number {
    const ci = this.env('CI');
    const inCi = ci !== undefined && !['', '0', 'false'].includes(ci.trim());
    const budget = inCi ? (this.options.ciFlushTimeoutMs ?? DEFAULT_CI_FLUSH_TIMEOUT_MS) : (this.options.exitTimeoutMs ?? DEFAULT_EXIT_TIMEOUT_MS);
    const v = this.env(`${this.prefix}_TELEMETRY_EXIT_TIMEOUT_MS`);
    if (v !== undefined && /^\s*\d+\s*$/.test(v)) return Math.min(Number(v.trim()), MAX_EXIT_TIMEOUT_MS);
    return Math.min(budget, MAX_EXIT_TIMEOUT_MS);
  }

  /** How many queued events make a run send at its natural end (see {@link TelemetryOptions.batchEvents}). */
  batchEvents(): number {
    const v = this.env(`${this.prefix}_TELEMETRY_BATCH_EVENTS`);
    if (v !== undefined && /^\s*\d+\s*$/.test(v)) return Math.max(1, Number(v.trim()));
    if (this.options.batchEvents !== undefined) return Math.max(1, Math.floor(this.options.batchEvents));
    return this.exitBudgetMs() >= LONG_EXIT_BUDGET_MS ? 1 : DEFAULT_BATCH_EVENTS;
  }

  /** An example of what one run sends (the prompt's "show me the data", and `preview`). */
  samplePayload(): string {
    const b: Batch = newBatch(this.tool, this.version, '5f1d3c2b9a8e7d6c5f1d3c2b9a8e7d6c', rustOs(), rustArch());
    b.events.push({
      event_id: '0b6c8a4e-2f1d-4c3b-9a8e-7d6c5f1d3c2b',
      event_type: 'command',
      name: 'build',
      timestamp: new Date().toISOString(),
      session_id: '7e2d4c1a-0b9f-4e8d-8c7b-6a5f4e3d2c1b',
      duration_ms: 412,
      success: false,
      error_code: 'E_NO_MANIFEST',
    });
    return JSON.stringify(b, null, 2);
  }
}

/** The URL of the `/v1/events` route for an endpoint given as a base URL or as the route. */
export function eventsUrl(endpoint: string): string {
  const t = endpoint.replace(/\/+$/, '');
  return t.endsWith('/v1/events') ? t : `${t}/v1/events`;
}
