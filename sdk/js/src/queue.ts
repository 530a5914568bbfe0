/**
 * The durable local queue: one segment file per process run, each a whole batch, in the same
 * directory and format as the Rust SDK (`crates/optel/src/queue.rs`), so a tool's
 * `telemetry status` and `preview` read the queue whichever SDK wrote it.
 *
 * - Segment names: `<unix ns, 20 digits>-<12 hex>-<events>e-<bytes>b.json`; the content is the
 *   compact JSON of one batch. Written under a hidden `.tmp` name and renamed into place
 *   (synchronously: this runs in the process's `exit` handler), so a segment is absent or whole.
 * - Drop counters: `queue/dropped`, `"<unreported:020> <total:020>\n"`.
 * - Bounds: 1,000 segments, 100,000 events, 16 MiB; the oldest segments go first, counted.
 *
 * One difference, documented in `docs/adr-delivery.md`: Node.js has no `flock`, so a Node.js
 * sender claims a segment by renaming it to a hidden `.<name>.<pid>-<random>.sending` file
 * (atomic on one file system) instead of locking it. The Rust SDK ignores hidden files, so it
 * never sends a segment a Node.js process has claimed; a Rust sender holding a lock does not
 * stop a Node.js rename, in which case both may send the same segment, and the collector's
 * idempotency on event ids stores it once. Claims of killed processes go back after 2 minutes.
 */
import { closeSync, constants, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, unlinkSync, writeSync, ftruncateSync, fstatSync } from 'node:fs';
import { randomHex } from './lazy.js';
import { readSmallFile } from './breaker-state.js';
import { childPath, createPrivateDir, errCode, writeNewPrivate } from './fsutil.js';
import { type Batch, batchToJson } from './wire.js';

export const MAX_SEGMENTS = 1_000;
export const MAX_QUEUE_EVENTS = 100_000;
export const MAX_QUEUE_BYTES = 16 * 1024 * 1024;
const MAX_SEGMENT_BYTES = 8 * 1024 * 1024;
const STALE_TMP_MS = 600_000;
/** A claim older than this belonged to a process that died mid-send: it goes back to the queue. */
export const STALE_CLAIM_MS = 120_000;
const DROPPED_FILE = 'dropped';

/** A segment file as listed. */
export interface Segment {
  path: string;
  name: string;
  events: number;
  bytes: number;
}

/** A segment this process claimed (renamed) for sending. */
export interface Claim {
  /** Where the segment goes back to if it is not delivered. */
  path: string;
  /** Where it is while claimed. */
  claimedPath: string;
  batch: Batch;
  bytes: number;
}

/** Counts of events dropped because the queue was full. */
export interface Dropped {
  unreported: number;
  total: number;
}

let seq = 0;
const DIGITS = /^\d+$/;
const byName = (a: Segment, b: Segment) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** When a segment was written, in ms since the Unix epoch (from its name). */
export function segmentTimeMs(s: Segment): number {
  return Number(s.name.slice(0, 20)) / 1e6;
}

/**
 * Whether queued segments (oldest first) are due for delivery: at least `batchEvents` events, or
 * the oldest older than `maxDelayMs`.
 */
export function dueForDelivery(segments: Segment[], batchEvents: number, maxDelayMs: number, now: number = Date.now()): boolean {
  if (segments.length === 0) return false;
  let events = 0;
  for (const s of segments) events += s.events;
  return events >= batchEvents || now - segmentTimeMs(segments[0]!) >= maxDelayMs;
}

/** The segment a file name denotes, if it is one: `<ns>-<random>-<events>e-<bytes>b.json`, not hidden. */
export function segmentOf(dir: string, name: string): Segment | undefined {
  if (name.startsWith('.') || !name.endsWith('b.json')) return undefined;
  const stem = name.slice(0, -'b.json'.length);
  const dash = stem.lastIndexOf('-');
  const dash2 = stem.lastIndexOf('-', dash - 1);
  if (dash2 < 0) return undefined;
  const events = stem.slice(dash2 + 1, dash);
  const bytes = stem.slice(dash + 1);
  if (!events.endsWith('e') || !DIGITS.test(events.slice(0, -1)) || !DIGITS.test(bytes)) return undefined;
  return { path: childPath(dir, name), name, events: Number(events.slice(0, -1)), bytes: Number(bytes) };
}

/** The queue directory of one tool: `<data dir>/queue`. */
export class Queue {
  bounds = { segments: MAX_SEGMENTS, events: MAX_QUEUE_EVENTS, bytes: MAX_QUEUE_BYTES };
  /** The segments after this process's last {@link append}, oldest first (one listing serves the bounds and the decision to send). */
  lastListing: Segment[] | undefined;

  constructor(readonly dir: string) {}

  /** Opens the queue, creating its directory (0700). */
  static open(dir: string): Queue {
    createPrivateDir(dir);
    return new Queue(dir);
  }

  /** Appends a batch as a new segment (synchronously), then enforces the bounds. */
  append(batch: Batch): string {
    const json = batchToJson(batch);
    const ns = (BigInt(Date.now()) * 1_000_000n + BigInt(seq++ % 1_000_000)).toString().padStart(20, '0');
    const name = `${ns}-${randomHex(6)}-${batch.events.length}e-${Buffer.byteLength(json)}b.json`;
    const tmp = childPath(this.dir, `.${name}.tmp`);
    const path = childPath(this.dir, name);
    try {
      writeNewPrivate(tmp, json);
      renameSync(tmp, path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        // gone
      }
      throw e;
    }
    this.enforceBounds();
    return path;
  }

  /** Segments, oldest first. Throws ENOENT when the directory does not exist. */
  segments(): Segment[] {
    const out: Segment[] = [];
    for (const name of readdirSync(this.dir)) {
      const s = segmentOf(this.dir, name);
      if (s) out.push(s);
    }
    return out.sort(byName);
  }

  /** Segments, or none when the directory is missing. */
  segmentsOrEmpty(): Segment[] {
    try {
      return this.segments();
    } catch {
      return [];
    }
  }

  /** Events waiting in segments. */
  pendingEvents(): number {
    return this.segmentsOrEmpty().reduce((n, s) => n + s.events, 0);
  }

  /** Every readable queued batch, oldest first (for `preview` and `status`). */
  batches(): Batch[] {
    const out: Batch[] = [];
    for (const s of this.segmentsOrEmpty()) {
      const b = readBatch(s.path);
      if (b) out.push(b.batch);
    }
    return out;
  }

  /**
   * Claims a segment for sending by renaming it to a hidden name: `undefined` when another
   * process claimed or delivered it first. A segment that cannot be parsed is deleted.
   */
  claim(segment: Segment): Claim | undefined {
    const claimedPath = childPath(this.dir, `.${segment.name}.${process.pid}-${randomHex(4)}.sending`);
    try {
      renameSync(segment.path, claimedPath);
    } catch {
      return undefined;
    }
    const read = readBatch(claimedPath);
    if (!read) {
      try {
        unlinkSync(claimedPath);
      } catch {
        // gone
      }
      return undefined;
    }
    return { path: segment.path, claimedPath, batch: read.batch, bytes: read.bytes };
  }

  /** Puts a claimed segment back (not delivered). Synchronous: also runs at exit. */
  release(claim: Claim): void {
    try {
      renameSync(claim.claimedPath, claim.path);
    } catch {
      // already gone
    }
  }

  /** Deletes a delivered segment. */
  complete(claim: Claim): void {
    try {
      unlinkSync(claim.claimedPath);
    } catch {
      // already gone
    }
  }

  /** Returns claims left by processes that died while sending to the queue. */
  recoverStaleClaims(now: number = Date.now()): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const m = /^\.(.+\.json)\.\d+-[0-9a-f]+\.sending$/.exec(name);
      if (!m) continue;
      const p = childPath(this.dir, name);
      try {
        if (now - statSync(p).mtimeMs > STALE_CLAIM_MS) renameSync(p, childPath(this.dir, m[1]!));
      } catch {
        // raced with its owner
      }
    }
  }

  /** The drop counters. */
  dropped(): Dropped {
    try {
      return parseDropped(readSmallFile(childPath(this.dir, DROPPED_FILE)));
    } catch {
      return { unreported: 0, total: 0 };
    }
  }

  /** Returns the unreported drop count and resets it (the caller puts it in a batch). */
  takeUnreportedDrops(): number {
    // Read first: almost always there is nothing to take, and then nothing is written.
    if (this.dropped().unreported === 0) return 0;
    let taken = 0;
    this.updateDropped((d) => {
      taken = d.unreported;
      d.unreported = 0;
    });
    return taken;
  }

  private countDrops(n: number): void {
    this.updateDropped((d) => {
      d.unreported += n;
      d.total += n;
    });
  }

  /**
   * Read-modify-write of the drop counters, rewritten in place with one fixed-width write (the
   * Rust SDK's record), under the record's lock file (see {@link rewriteRecord}).
   */
  private updateDropped(change: (d: Dropped) => void): void {
    try {
      rewriteRecord(childPath(this.dir, DROPPED_FILE), (text) => {
        const d = parseDropped(text);
        change(d);
        return `${String(d.unreported).padStart(20, '0')} ${String(d.total).padStart(20, '0')}\n`;
      });
    } catch {
      // counters are best effort
    }
  }

  /**
   * Removes stale temporary files and drops the oldest segments beyond the bounds, from one
   * listing of the directory, which it keeps in {@link lastListing}.
   */
  private enforceBounds(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const now = Date.now();
    const segments: Segment[] = [];
    for (const name of names) {
      if (name.startsWith('.') && name.endsWith('.tmp')) {
        const p = childPath(this.dir, name);
        try {
          if (now - statSync(p).mtimeMs > STALE_TMP_MS) unlinkSync(p);
        } catch {
          // gone
        }
        continue;
      }
      const s = segmentOf(this.dir, name);
      if (s) segments.push(s);
    }
    segments.sort(byName);
    let bytes = segments.reduce((n, s) => n + s.bytes, 0);
    let events = segments.reduce((n, s) => n + s.events, 0);
    let count = segments.length;
    let dropped = 0;
    while (segments.length > 0 && (count > this.bounds.segments || bytes > this.bounds.bytes || events > this.bounds.events)) {
      const s = segments.shift()!;
      try {
        unlinkSync(s.path);
        dropped += s.events;
      } catch {
        // another process dropped it and counts it
      }
      count -= 1;
      bytes -= s.bytes;
      events -= s.events;
    }
    this.lastListing = segments;
    if (dropped > 0) this.countDrops(dropped);
  }
}

/** A lock file older than this belonged to a process killed mid-update: it is broken. */
export const STALE_LOCK_MS = 10_000;
/**
 * Tries to take a record's lock, 1 ms apart, before updating without it: a holder may be
 * descheduled on a loaded machine, but the host is never held longer.
 */
const LOCK_ATTEMPTS = 100;
let sleeper: Int32Array | undefined;

/**
 * Takes the lock of a record file: `<path>.lock`, created exclusively (`O_EXCL`, atomic on one
 * file system, as the queue's claims are renames). Node.js has no `flock`; this excludes other
 * Node.js processes (a Rust process takes `flock` on the record itself). A lock older than
 * {@link STALE_LOCK_MS} is broken. False when it could not be taken within 100 attempts.
 */
function lockRecord(lock: string): boolean {
  for (let i = 0; i < LOCK_ATTEMPTS; i++) {
    try {
      closeSync(openSync(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
      return true;
    } catch (e) {
      if (errCode(e) !== 'EEXIST') return false;
    }
    try {
      if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) {
        unlinkSync(lock);
        continue;
      }
    } catch {
      continue; // released meanwhile
    }
    // The holder's update takes microseconds: wait 1 ms, synchronously (this also runs at exit).
    Atomics.wait((sleeper ??= new Int32Array(new SharedArrayBuffer(4))), 0, 0, 1);
  }
  return false;
}

/**
 * Reads a fixed-size record file and rewrites it in place with one write (0600 if created),
 * under the record's lock file so that concurrent Node.js processes of one install do not lose
 * each other's counts. When the lock cannot be had (100 attempts, 1 ms apart), it updates
 * anyway: the counters are best effort and never hold the host longer.
 */
export function rewriteRecord(path: string, change: (text: string) => string): void {
  const lock = `${path}.lock`;
  const locked = lockRecord(lock);
  try {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      const size = Math.min(fstatSync(fd).size, 256);
      const buf = Buffer.alloc(size);
      if (size > 0) readSync(fd, buf, 0, size, 0);
      const record = change(buf.toString('utf8'));
      const out = Buffer.from(record);
      writeSync(fd, out, 0, out.length, 0);
      ftruncateSync(fd, out.length);
    } finally {
      closeSync(fd);
    }
  } finally {
    if (locked) {
      try {
        unlinkSync(lock);
      } catch {
        // broken as stale by another process
      }
    }
  }
}

function parseDropped(text: string): Dropped {
  const f = text.split(/\s+/).filter((x) => x.length > 0);
  if (f.length >= 2 && /^\d+$/.test(f[0]!) && /^\d+$/.test(f[1]!)) return { unreported: Number(f[0]), total: Number(f[1]) };
  return { unreported: 0, total: 0 };
}

function readBatch(path: string): { batch: Batch; bytes: number } | undefined {
  try {
    const buf = readFileSync(path);
    if (buf.length > MAX_SEGMENT_BYTES) return undefined;
    const batch = JSON.parse(buf.toString('utf8')) as Batch;
    if (typeof batch !== 'object' || batch === null || !Array.isArray(batch.events)) return undefined;
    batch.dropped_events ??= 0;
    return { batch, bytes: buf.length };
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    return undefined;
  }
}
