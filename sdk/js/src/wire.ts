/**
 * The optel wire format (mirror of `crates/optel-wire`): the batch envelope sent to
 * `POST /v1/events`, its limits and validation rules, and the forget proof. No I/O here except
 * what the browser also has; the golden files in `crates/optel-wire/tests/golden/` pin the JSON.
 */

/**
 * The version of the batch envelope this SDK writes. Version 2 (`docs/adr/010-event-catalog.md`)
 * adds the event catalog, phases and measurement events; this SDK reads and validates it (a queue
 * shared with a Rust tool may hold version 2 segments) but does not record catalogs yet.
 */
export const SCHEMA_VERSION = 1;

/** Every envelope version read and validated here (`optel_wire::SUPPORTED_SCHEMA_VERSIONS`). */
export const SUPPORTED_SCHEMA_VERSIONS: readonly number[] = Object.freeze([1, 2]);

/** Bounds on every field, as `optel_wire::limits`. Lengths are bytes of UTF-8. */
export const limits = Object.freeze({
  MAX_BATCH_EVENTS: 1_000,
  MAX_BODY_BYTES: 4 * 1024 * 1024,
  MAX_NAME_BYTES: 64,
  MAX_VERSION_BYTES: 64,
  MAX_PSEUDONYM_BYTES: 64,
  MAX_PLATFORM_BYTES: 32,
  MAX_ATTRIBUTES: 32,
  MAX_STRING_VALUE_BYTES: 256,
  MAX_DURATION_MS: 7 * 24 * 3_600_000,
  /** Most phases on one command event (version 2). */
  MAX_PHASES: 64,
  /** Length of a catalog hash: 64 lowercase hex digits of a SHA-256. */
  CATALOG_HASH_LEN: 64,
});

/** Bounds on a catalog (`optel_wire::catalog::limits`). */
export const catalogLimits = Object.freeze({
  MAX_ENTRIES: 1_024,
  MAX_ENUM_VALUES: 256,
  MAX_BUCKETS: 32,
  MAX_PURPOSE_BYTES: 200,
});

/** What an event records (`measurement`: schema version 2 only). */
export type EventType = 'command' | 'feature' | 'method' | 'custom' | 'measurement';

/** A typed attribute value: the bare JSON value on the wire. */
export type AttributeValue = boolean | number | string;

/** One recorded event, field for field as `optel_wire::Event`. */
export interface WireEvent {
  event_id: string;
  event_type: EventType;
  name: string;
  /** RFC 3339 UTC with milliseconds, e.g. `2026-11-21T22:40:00.123Z`. */
  timestamp: string;
  session_id: string;
  duration_ms?: number;
  success?: boolean;
  error_code?: string;
  metadata?: Record<string, AttributeValue>;
  /** The value of a `measurement` event, finite, in its catalog unit (version 2). */
  value?: number;
  /** Timed phases of a `command` event, at most 64 (version 2). */
  phases?: Phase[];
}

/** One timed phase of a command (`optel_wire::Phase`, version 2). */
export interface Phase {
  name: string;
  /** Index in the event's `phases` of the enclosing phase: always an earlier one. */
  parent?: number;
  /** Microseconds after the command started. */
  start_us: number;
  /** Microseconds, at most 7 days. */
  duration_us: number;
  success: boolean;
}

/** A declared attribute (`optel_wire::catalog::AttributeSpec`): its kind is flattened in, tagged by `type`. */
export type AttributeSpec = { name: string; purpose: string } & ({ type: 'enum'; values: string[] } | { type: 'bool' } | { type: 'int'; buckets: number[] } | { type: 'text' });

/** A declared command, feature, method or custom event (`optel_wire::catalog::EventSpec`). */
export interface EventSpec {
  name: string;
  purpose: string;
  attributes?: AttributeSpec[];
  phases?: { name: string; purpose: string }[];
}

/** A declared measurement (`optel_wire::catalog::MeasurementSpec`). */
export interface MeasurementSpec {
  name: string;
  purpose: string;
  unit: 'ms' | 'bytes' | 'count';
}

/** What a tool declares it records (`optel_wire::Catalog`, version 2). */
export interface Catalog {
  commands?: EventSpec[];
  features?: EventSpec[];
  methods?: EventSpec[];
  events?: EventSpec[];
  measurements?: MeasurementSpec[];
}

/** The body of `POST /v1/events`, field for field as `optel_wire::Batch`. */
export interface Batch {
  schema_version: number;
  service_name: string;
  service_version: string;
  pseudonym: string;
  os: string;
  arch: string;
  dropped_events: number;
  /** SHA-256 of the catalog's JSON, 64 lowercase hex digits (version 2). */
  catalog_hash?: string;
  /** The catalog, until the collector knows `catalog_hash` (version 2). */
  catalog?: Catalog;
  events: WireEvent[];
}

/** The collector's answer to an accepted batch. */
export interface IngestResponse {
  accepted: number;
  duplicates: number;
  /** Whether the collector knows the batch's `catalog_hash` (version 2; absent without one). */
  catalog_known?: boolean;
}

/** The body of every error answer of the collector. */
export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

/** An empty batch of the current schema version. */
export function newBatch(serviceName: string, serviceVersion: string, pseudonym: string, os: string, arch: string): Batch {
  return {
    schema_version: SCHEMA_VERSION,
    service_name: serviceName,
    service_version: serviceVersion,
    pseudonym,
    os,
    arch,
    dropped_events: 0,
    events: [],
  };
}

/**
 * An event in the canonical field order of the Rust serializer (optional fields left out when
 * absent, metadata keys sorted as a `BTreeMap`), so the JSON of both SDKs is byte-identical.
 */
export function canonicalEvent(e: WireEvent): WireEvent {
  const out: WireEvent = {
    event_id: e.event_id,
    event_type: e.event_type,
    name: e.name,
    timestamp: e.timestamp,
    session_id: e.session_id,
  };
  if (e.duration_ms !== undefined) out.duration_ms = e.duration_ms;
  if (e.success !== undefined) out.success = e.success;
  if (e.error_code !== undefined) out.error_code = e.error_code;
  if (e.metadata !== undefined) {
    const keys = Object.keys(e.metadata);
    if (keys.length > 0) {
      const m: Record<string, AttributeValue> = {};
      for (const k of keys.sort()) m[k] = e.metadata[k] as AttributeValue;
      out.metadata = m;
    }
  }
  if (e.value !== undefined) out.value = e.value;
  if (e.phases !== undefined && e.phases.length > 0) {
    out.phases = e.phases.map((p) => {
      const c: Phase = { name: p.name } as Phase;
      if (p.parent !== undefined && p.parent !== null) c.parent = p.parent;
      c.start_us = p.start_us;
      c.duration_us = p.duration_us;
      c.success = p.success;
      return c;
    });
  }
  return out;
}

function canonicalEntry(e: EventSpec): EventSpec {
  const out: EventSpec = { name: e.name, purpose: e.purpose };
  if (e.attributes && e.attributes.length > 0) {
    out.attributes = e.attributes.map((a) => {
      switch (a.type) {
        case 'enum':
          return { name: a.name, purpose: a.purpose, type: a.type, values: a.values };
        case 'int':
          return { name: a.name, purpose: a.purpose, type: a.type, buckets: a.buckets };
        default:
          return { name: a.name, purpose: a.purpose, type: a.type };
      }
    });
  }
  if (e.phases && e.phases.length > 0) out.phases = e.phases.map((p) => ({ name: p.name, purpose: p.purpose }));
  return out;
}

/** A catalog in the Rust serializer's field order: what {@link catalogJson} hashes. */
export function canonicalCatalog(c: Catalog): Required<Catalog> {
  return {
    commands: (c.commands ?? []).map(canonicalEntry),
    features: (c.features ?? []).map(canonicalEntry),
    methods: (c.methods ?? []).map(canonicalEntry),
    events: (c.events ?? []).map(canonicalEntry),
    measurements: (c.measurements ?? []).map((m) => ({ name: m.name, purpose: m.purpose, unit: m.unit })),
  };
}

/** The compact JSON of a catalog, byte for byte as the Rust SDK's: its SHA-256 is the `catalog_hash`. */
export function catalogJson(c: Catalog): string {
  return JSON.stringify(canonicalCatalog(c));
}

/**
 * A batch in canonical field order (see {@link canonicalEvent}). Version 2 fields are kept: a
 * queue shared with a Rust tool may hold version 2 segments, which a Node.js sender must send
 * whole.
 */
export function canonicalBatch(b: Batch): Batch {
  const out: Batch = {
    schema_version: b.schema_version,
    service_name: b.service_name,
    service_version: b.service_version,
    pseudonym: b.pseudonym,
    os: b.os,
    arch: b.arch,
    dropped_events: b.dropped_events,
  } as Batch;
  if (b.catalog_hash !== undefined && b.catalog_hash !== null) out.catalog_hash = b.catalog_hash;
  if (b.catalog !== undefined && b.catalog !== null) out.catalog = canonicalCatalog(b.catalog);
  out.events = b.events.map(canonicalEvent);
  return out;
}

/** The compact JSON of a batch, as the Rust SDK writes it (queue segments, ledger, request body). */
export function batchToJson(b: Batch): string {
  return JSON.stringify(canonicalBatch(b));
}

/** Why a batch was refused: the JSON path of the field and the reason. */
export class Invalid extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'Invalid';
  }
}

/** UTF-8 length of a string, without allocating. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

const NAME_RE = /^[A-Za-z0-9_.:-]+$/;
const VERSION_RE = /^[A-Za-z0-9_.+-]+$/;
const PSEUDONYM_RE = /^[a-z0-9:_-]+$/;
const PLATFORM_RE = /^[a-z0-9_]+$/;
const UUID_RE = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/;

/** Whether `s` is a valid name: 1 to 64 bytes of `[A-Za-z0-9_.:-]`. */
export function isValidName(s: string): boolean {
  return s.length > 0 && s.length <= limits.MAX_NAME_BYTES && NAME_RE.test(s);
}

/** Whether `s` is a UUID in its hyphenated text form (any version, either case). */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

function clip(s: string): string {
  return Array.from(s).slice(0, 40).join('');
}

function checkText(field: string, s: string, max: number, re: RegExp): void {
  if (s.length === 0) throw new Invalid(field, 'must not be empty');
  const len = utf8Length(s);
  if (len > max) throw new Invalid(field, `${JSON.stringify(clip(s))} is ${len} bytes long: at most ${max} bytes`);
  if (!re.test(s)) {
    const bad = Array.from(s).find((c) => !re.test(c)) ?? '?';
    throw new Invalid(field, `${JSON.stringify(clip(s))} contains '${bad}', which is not allowed here`);
  }
}

/** Checks one event (paths relative to the event). Throws {@link Invalid}. */
export function validateEvent(e: WireEvent): void {
  if (!isUuid(e.event_id)) throw new Invalid('event_id', `event id ${JSON.stringify(clip(e.event_id))} is not a UUID (8-4-4-4-12 hex digits)`);
  if (!isUuid(e.session_id)) throw new Invalid('session_id', `session id ${JSON.stringify(clip(e.session_id))} is not a UUID (8-4-4-4-12 hex digits)`);
  checkText('name', e.name, limits.MAX_NAME_BYTES, NAME_RE);
  if (e.duration_ms !== undefined) {
    if (!Number.isInteger(e.duration_ms) || e.duration_ms < 0) throw new Invalid('duration_ms', `duration ${e.duration_ms} is not a whole number of milliseconds`);
    if (e.duration_ms > limits.MAX_DURATION_MS) throw new Invalid('duration_ms', `duration ${e.duration_ms} ms is longer than the limit of ${limits.MAX_DURATION_MS} ms (7 days)`);
  }
  if (e.error_code !== undefined) checkText('error_code', e.error_code, limits.MAX_NAME_BYTES, NAME_RE);
  const md = e.metadata ?? {};
  const keys = Object.keys(md);
  if (keys.length > limits.MAX_ATTRIBUTES) throw new Invalid('metadata', `${keys.length} attributes is too many: at most ${limits.MAX_ATTRIBUTES} per event`);
  for (const k of keys) {
    checkText('metadata', k, limits.MAX_NAME_BYTES, NAME_RE);
    const v = md[k];
    if (typeof v === 'string' && utf8Length(v) > limits.MAX_STRING_VALUE_BYTES) {
      throw new Invalid(`metadata.${k}`, `value of ${utf8Length(v)} bytes is too long: at most ${limits.MAX_STRING_VALUE_BYTES} bytes`);
    }
    if (typeof v === 'number' && !Number.isFinite(v)) throw new Invalid(`metadata.${k}`, 'float values must be finite');
  }
  if (e.event_type === 'measurement') {
    if (e.value === undefined || e.value === null) throw new Invalid('value', 'a measurement event needs a value');
    if (typeof e.value !== 'number' || !Number.isFinite(e.value)) throw new Invalid('value', 'must be a finite number');
  } else if (e.value !== undefined && e.value !== null) {
    throw new Invalid('value', 'only measurement events carry a value');
  }
  const phases = e.phases ?? [];
  if (phases.length > 0 && e.event_type !== 'command') throw new Invalid('phases', 'only command events carry phases');
  if (phases.length > limits.MAX_PHASES) throw new Invalid('phases', `${phases.length} phases is too many: at most ${limits.MAX_PHASES} per command`);
  const maxUs = limits.MAX_DURATION_MS * 1_000;
  phases.forEach((p, i) => {
    try {
      checkText('name', p.name, limits.MAX_NAME_BYTES, NAME_RE);
      if (p.parent !== undefined && p.parent !== null && !(Number.isInteger(p.parent) && p.parent >= 0 && p.parent < i)) {
        throw new Invalid('parent', `${p.parent} does not name an earlier phase of this command`);
      }
      if (p.duration_us > maxUs || p.start_us > maxUs) throw new Invalid('duration_us', `phase times are at most ${maxUs} µs (7 days)`);
    } catch (err) {
      if (err instanceof Invalid) throw new Invalid(`phases[${i}].${err.field}`, err.reason);
      throw err;
    }
  });
}

function checkPurpose(purpose: string): void {
  if (purpose.trim().length === 0) throw new Invalid('purpose', 'say in one line why this is recorded');
  if (utf8Length(purpose) > catalogLimits.MAX_PURPOSE_BYTES || purpose.includes('\n')) throw new Invalid('purpose', `one line of at most ${catalogLimits.MAX_PURPOSE_BYTES} bytes`);
}

/** Prefixes the field path of an {@link Invalid} thrown by `f`. */
function within(prefix: string, f: () => void): void {
  try {
    f();
  } catch (err) {
    if (err instanceof Invalid) throw new Invalid(`${prefix}.${err.field}`, err.reason);
    throw err;
  }
}

function validateAttributeKind(a: AttributeSpec): void {
  if (a.type === 'enum') {
    const values = a.values ?? [];
    if (values.length === 0 || values.length > catalogLimits.MAX_ENUM_VALUES) throw new Invalid('values', `an enum needs 1 to ${catalogLimits.MAX_ENUM_VALUES} values, not ${values.length}`);
    const seen = new Set<string>();
    for (const v of values) {
      if (v.length === 0 || utf8Length(v) > limits.MAX_NAME_BYTES) throw new Invalid('values', `${JSON.stringify(clip(v))}: enum values are 1 to ${limits.MAX_NAME_BYTES} bytes`);
      if (seen.has(v)) throw new Invalid('values', `${JSON.stringify(clip(v))} is listed twice`);
      seen.add(v);
    }
  } else if (a.type === 'int') {
    const b = a.buckets ?? [];
    if (b.length > catalogLimits.MAX_BUCKETS) throw new Invalid('buckets', `at most ${catalogLimits.MAX_BUCKETS} bucket bounds`);
    for (let i = 1; i < b.length; i++) if (b[i - 1]! >= b[i]!) throw new Invalid('buckets', 'bucket bounds must be strictly ascending');
  } else if (a.type !== 'bool' && a.type !== 'text') {
    throw new Invalid('type', `${JSON.stringify((a as { type: unknown }).type)} is not an attribute type: enum, bool, int or text`);
  }
}

function validateEntry(e: EventSpec): void {
  checkText('name', e.name, limits.MAX_NAME_BYTES, NAME_RE);
  checkPurpose(e.purpose);
  const attributes = e.attributes ?? [];
  const phases = e.phases ?? [];
  if (attributes.length > limits.MAX_ATTRIBUTES) throw new Invalid('attributes', `at most ${limits.MAX_ATTRIBUTES} attributes per entry`);
  if (phases.length > limits.MAX_PHASES) throw new Invalid('phases', `at most ${limits.MAX_PHASES} phases per command`);
  const seen = new Set<string>();
  attributes.forEach((a, i) =>
    within(`attributes[${i}]`, () => {
      checkText('name', a.name, limits.MAX_NAME_BYTES, NAME_RE);
      checkPurpose(a.purpose);
      if (seen.has(a.name)) throw new Invalid('name', `${JSON.stringify(clip(a.name))} is declared twice`);
      seen.add(a.name);
      validateAttributeKind(a);
    }),
  );
  const seenPhases = new Set<string>();
  phases.forEach((p, i) =>
    within(`phases[${i}]`, () => {
      checkText('name', p.name, limits.MAX_NAME_BYTES, NAME_RE);
      checkPurpose(p.purpose);
      if (seenPhases.has(p.name)) throw new Invalid('name', `${JSON.stringify(clip(p.name))} is declared twice`);
      seenPhases.add(p.name);
    }),
  );
}

/** Checks a catalog as `optel_wire::Catalog::validate` (paths relative to the catalog). Throws {@link Invalid}. */
export function validateCatalog(c: Catalog): void {
  const lists = [
    ['commands', c.commands ?? []],
    ['features', c.features ?? []],
    ['methods', c.methods ?? []],
    ['events', c.events ?? []],
  ] as const;
  const entries = lists.reduce((n, [, l]) => n + l.length, 0) + (c.measurements ?? []).length;
  if (entries > catalogLimits.MAX_ENTRIES) throw new Invalid('commands', `${entries} entries is too many: at most ${catalogLimits.MAX_ENTRIES}`);
  for (const [field, list] of lists) {
    const seen = new Set<string>();
    list.forEach((entry, i) => {
      const path = `${field}[${i}]`;
      if (seen.has(entry.name)) throw new Invalid(`${path}.name`, `${JSON.stringify(clip(entry.name))} is declared twice`);
      seen.add(entry.name);
      within(path, () => validateEntry(entry));
    });
  }
  const seen = new Set<string>();
  (c.measurements ?? []).forEach((m, i) =>
    within(`measurements[${i}]`, () => {
      checkText('name', m.name, limits.MAX_NAME_BYTES, NAME_RE);
      checkPurpose(m.purpose);
      if (seen.has(m.name)) throw new Invalid('name', `${JSON.stringify(clip(m.name))} is declared twice`);
      seen.add(m.name);
      if (!['ms', 'bytes', 'count'].includes(m.unit)) throw new Invalid('unit', `${JSON.stringify(m.unit)} is not a unit: ms, bytes or count`);
    }),
  );
}

/**
 * Checks every field of a batch against {@link limits} and the charsets, in the order of
 * `optel_wire::Batch::validate` (so both name the same first bad field), for schema versions 1
 * and 2. A catalog sent with the batch must hash to its `catalog_hash`: that check runs when
 * `sha256Hex` is given (the browser build has no synchronous SHA-256; Node.js callers pass
 * `node:crypto`'s). Throws {@link Invalid}.
 */
export function validateBatch(b: Batch, sha256Hex?: (text: string) => string): void {
  if (!SUPPORTED_SCHEMA_VERSIONS.includes(b.schema_version)) {
    throw new Invalid('schema_version', `schema version ${b.schema_version} is not supported: this collector speaks versions 1 and 2`);
  }
  const hasHash = b.catalog_hash !== undefined && b.catalog_hash !== null;
  const hasCatalog = b.catalog !== undefined && b.catalog !== null;
  if (b.schema_version < 2 && (hasHash || hasCatalog)) {
    throw new Invalid(hasHash ? 'catalog_hash' : 'catalog', 'needs schema_version 2: version 1 batches carry no catalog');
  }
  if (hasHash && !(typeof b.catalog_hash === 'string' && b.catalog_hash.length === limits.CATALOG_HASH_LEN && /^[0-9a-f]+$/.test(b.catalog_hash))) {
    throw new Invalid('catalog_hash', `${JSON.stringify(clip(String(b.catalog_hash)))} is not a SHA-256 in 64 lowercase hex digits`);
  }
  if (hasCatalog) {
    within('catalog', () => validateCatalog(b.catalog!));
    if (!hasHash || (sha256Hex && b.catalog_hash !== sha256Hex(catalogJson(b.catalog!)))) {
      throw new Invalid('catalog_hash', 'must be present and equal to the SHA-256 of the catalog sent with it');
    }
  }
  checkText('service_name', b.service_name, limits.MAX_NAME_BYTES, NAME_RE);
  checkText('service_version', b.service_version, limits.MAX_VERSION_BYTES, VERSION_RE);
  checkText('pseudonym', b.pseudonym, limits.MAX_PSEUDONYM_BYTES, PSEUDONYM_RE);
  checkText('os', b.os, limits.MAX_PLATFORM_BYTES, PLATFORM_RE);
  checkText('arch', b.arch, limits.MAX_PLATFORM_BYTES, PLATFORM_RE);
  if (b.events.length === 0) throw new Invalid('events', 'a batch needs at least one event');
  if (b.events.length > limits.MAX_BATCH_EVENTS) {
    throw new Invalid('events', `${b.events.length} events in one batch is too many: send at most ${limits.MAX_BATCH_EVENTS} per request`);
  }
  b.events.forEach((e, i) => {
    try {
      validateEvent(e);
      if (b.schema_version < 2 && e.event_type === 'measurement') throw new Invalid('event_type', 'measurement events need schema_version 2');
      if (b.schema_version < 2 && (e.phases ?? []).length > 0) throw new Invalid('phases', 'phases need schema_version 2');
    } catch (err) {
      if (err instanceof Invalid) throw new Invalid(`events[${i}].${err.field}`, err.reason);
      throw err;
    }
  });
}

const HEX = '0123456789abcdef';

/** Formats 16 bytes as a UUID version 4, setting the version and variant bits (`optel_wire::format_uuid_v4`). */
export function formatUuidV4(bytes: Uint8Array): string {
  const b = Uint8Array.from(bytes);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  let s = '';
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += '-';
    const v = b[i] ?? 0;
    s += HEX[v >> 4]! + HEX[v & 15]!;
  }
  return s;
}

/**
 * `ms` (since the Unix epoch, UTC) as RFC 3339 with milliseconds, `2026-11-21T22:40:00.123Z`:
 * what `new Date(ms).toISOString()` returns for years 0 to 9999, by arithmetic (days to civil
 * date, H. Hinnant's algorithm). Why: the first `toISOString()` of a process initialises V8's
 * date cache, which loads the host's time zone through ICU (`/etc/localtime`), a cost every
 * run with telemetry on would pay for a UTC string.
 */
export function isoUtc(ms: number): string {
  const t = Math.floor(ms);
  const days = Math.floor(t / 86_400_000);
  const inDay = t - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const p2 = (n: number) => (n < 10 ? '0' : '') + n;
  const msPart = inDay % 1000;
  return `${String(year).padStart(4, '0')}-${p2(month)}-${p2(day)}T${p2(Math.floor(inDay / 3_600_000))}:${p2(Math.floor(inDay / 60_000) % 60)}:${p2(Math.floor(inDay / 1000) % 60)}.${msPart < 100 ? (msPart < 10 ? '00' : '0') : ''}${msPart}Z`;
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const v of bytes) s += HEX[v >> 4]! + HEX[v & 15]!;
  return s;
}
