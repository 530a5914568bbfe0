/**
 * The optel wire format (mirror of `crates/optel-wire`): the batch envelope sent to
 * `POST /v1/events`, its limits and validation rules, and the forget proof. No I/O here except
 * what the browser also has; the golden files in `crates/optel-wire/tests/golden/` pin the JSON.
 */

/** The version of the batch envelope. */
export const SCHEMA_VERSION = 1;

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
});

/** What an event records. */
export type EventType = 'command' | 'feature' | 'method' | 'custom';

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
  events: WireEvent[];
}

/** The collector's answer to an accepted batch. */
export interface IngestResponse {
  accepted: number;
  duplicates: number;
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
  return out;
}

/** A batch in canonical field order (see {@link canonicalEvent}). */
export function canonicalBatch(b: Batch): Batch {
  return {
    schema_version: b.schema_version,
    service_name: b.service_name,
    service_version: b.service_version,
    pseudonym: b.pseudonym,
    os: b.os,
    arch: b.arch,
    dropped_events: b.dropped_events,
    events: b.events.map(canonicalEvent),
  };
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
}

/** Checks every field of a batch against {@link limits} and the charsets. Throws {@link Invalid}. */
export function validateBatch(b: Batch): void {
  if (b.schema_version !== SCHEMA_VERSION) {
    throw new Invalid('schema_version', `schema version ${b.schema_version} is not supported: this collector speaks version ${SCHEMA_VERSION}`);
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

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const v of bytes) s += HEX[v >> 4]! + HEX[v & 15]!;
  return s;
}
