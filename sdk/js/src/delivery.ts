/**
 * Delivery: sends queued segments to the collector, off the host's critical path. A port of
 * `crates/optel/src/delivery.rs` on Node's event loop instead of a thread (see
 * `docs/adr-delivery.md`):
 *
 * - Batching: segments with the same envelope are merged into requests of at most 500 events
 *   and 1 MiB of JSON.
 * - Retries: exponential backoff with jitter (100 ms, ×1.5, capped at 2 s, at most 10 s per
 *   round, never past the round's deadline), or the server's `Retry-After` (clamped to 1 h).
 * - Circuit breaker and daily cap, shared with every process of the tool — Rust or Node.js —
 *   through the same `delivery_state` file and record: after 5 consecutive failures nobody
 *   sends for 30 s; an attempt counts as a failure before it is sent and is cleared on success.
 * - Every timer and socket is `unref`ed: a round never keeps the process alive.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Exporter } from './export.js';
import { type Claim, Queue, rewriteRecord } from './queue.js';
import type { Batch } from './wire.js';

export const MAX_REQUEST_EVENTS = 500;
export const MAX_REQUEST_BYTES = 1024 * 1024;
const INITIAL_BACKOFF_MS = 100;
const BACKOFF_MULTIPLIER = 1.5;
const MAX_BACKOFF_MS = 2_000;
export const MAX_RETRY_TIME_MS = 10_000;
export const BREAKER_FAILURES = 5;
export const BREAKER_OPEN_MS = 30_000;
const MAX_RETRY_AFTER_MS = 3_600_000;
import { type BreakerState, DAY_MS, STATE_FILE, formatState, parseState } from './breaker-state.js';
export { type BreakerState, STATE_FILE, formatState, parseState } from './breaker-state.js';

/**
 * The circuit breaker and daily request counter in `<data dir>/delivery_state`. The Rust SDK
 * updates it under `flock`; Node.js has none, so a Node.js process rewrites the record in place
 * with one write under a lock file (`delivery_state.lock`, see `rewriteRecord`), which excludes
 * other Node.js processes.
 */
export class Breaker {
  readonly path: string;
  constructor(dataDir: string) {
    this.path = join(dataDir, STATE_FILE);
  }

  state(): BreakerState {
    try {
      return parseState(readFileSync(this.path, 'utf8').slice(0, 256));
    } catch {
      return parseState('');
    }
  }

  /** Whether requests may go now. */
  maySend(now: number = Date.now()): boolean {
    return this.state().openUntilMs <= now;
  }

  /** Claims one request: false when open or the daily cap is reached. The attempt counts as a failure until `success`. */
  acquire(dailyCap: number, now: number = Date.now()): boolean {
    let granted = false;
    this.update((s) => {
      const today = Math.floor(now / DAY_MS);
      if (s.day !== today) {
        s.day = today;
        s.requests = 0;
      }
      if (s.openUntilMs > now || s.requests >= dailyCap) return;
      granted = true;
      s.requests += 1;
      s.failures += 1;
      if (s.failures >= BREAKER_FAILURES) s.openUntilMs = now + BREAKER_OPEN_MS;
    });
    return granted;
  }

  /** Lets the next request through now (a flush the user asked for). */
  allowProbe(): void {
    this.update((s) => {
      s.openUntilMs = 0;
    });
  }

  /** The endpoint answered: close the breaker. */
  success(): void {
    this.update((s) => {
      s.failures = 0;
      s.openUntilMs = 0;
    });
  }

  /** The attempt failed (already counted); honour `Retry-After` for everybody. */
  failure(retryAfterMs: number | undefined, now: number = Date.now()): void {
    if (retryAfterMs === undefined) return;
    this.update((s) => {
      s.openUntilMs = Math.max(s.openUntilMs, now + retryAfterMs);
    });
  }

  update(change: (s: BreakerState) => void): void {
    try {
      rewriteRecord(this.path, (text) => {
        const s = parseState(text);
        change(s);
        return formatState(s);
      });
    } catch {
      // the breaker is best effort
    }
  }
}

/** Exponential backoff with jitter: the n-th delay is uniform in [d/2, d], d = min(100 ms × 1.5^n, 2 s). */
export class Backoff {
  private next = INITIAL_BACKOFF_MS;
  nextDelay(): number {
    const ceiling = this.next;
    this.next = Math.min(ceiling * BACKOFF_MULTIPLIER, MAX_BACKOFF_MS);
    // Jitter needs no cryptographic randomness (and node:crypto costs a load).
    return ceiling * (0.5 + 0.5 * Math.random());
  }
}

/** Settings of delivery. */
export interface Policy {
  requestTimeoutMs: number;
  dailyRequestCap: number;
}

/** Whether two segments may go in one request: the same envelope, schema version and catalog (a queue shared with a Rust tool may hold version 2 segments). */
function sameEnvelope(a: Batch, b: Batch): boolean {
  return (
    a.schema_version === b.schema_version &&
    (a.catalog_hash ?? undefined) === (b.catalog_hash ?? undefined) &&
    a.service_name === b.service_name &&
    a.service_version === b.service_version &&
    a.pseudonym === b.pseudonym &&
    a.os === b.os &&
    a.arch === b.arch
  );
}

const sleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms).unref();
  });

/**
 * Sends what the queue holds, in rounds. Claims in flight are tracked so that the process's
 * `exit` handler can put them back synchronously ({@link releaseAll}).
 */
export class Sender {
  private readonly claims = new Set<Claim>();
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    readonly queue: Queue,
    readonly breaker: Breaker,
    readonly policy: Policy,
    readonly exporter: Exporter,
  ) {}

  /** Whether a request or round is in progress. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Runs a round until `deadline` (ms since epoch); joins the running one, then runs another. */
  round(deadline: number): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = async () => {
      do {
        this.again = false;
        await this.deliverAll(deadline);
      } while (this.again && Date.now() < deadline);
    };
    this.running = run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Puts every claim in flight back into the queue and aborts the request (synchronous). */
  releaseAll(): void {
    this.exporter.abort?.();
    for (const c of this.claims) this.queue.release(c);
    this.claims.clear();
  }

  private async deliverAll(deadline: number): Promise<void> {
    this.queue.recoverStaleClaims();
    const segments = this.queue.segmentsOrEmpty();
    let group: Claim[] = [];
    let events = 0;
    let bytes = 0;
    for (const segment of segments) {
      if (Date.now() >= deadline || !this.breaker.maySend()) break;
      const claim = this.queue.claim(segment);
      if (!claim) continue;
      this.claims.add(claim);
      const first = group[0];
      const fits = (!first || sameEnvelope(first.batch, claim.batch)) && events + claim.batch.events.length <= MAX_REQUEST_EVENTS && bytes + claim.bytes <= MAX_REQUEST_BYTES;
      if (!fits && group.length > 0) {
        const ok = await this.sendGroup(group, deadline);
        group = [];
        events = 0;
        bytes = 0;
        if (!ok) {
          this.releaseClaim(claim);
          break;
        }
      }
      events += claim.batch.events.length;
      bytes += claim.bytes;
      group.push(claim);
    }
    if (group.length > 0) await this.sendGroup(group, deadline);
    // Whatever was claimed and not sent goes back.
    for (const c of this.claims) this.releaseClaim(c);
  }

  private releaseClaim(c: Claim): void {
    this.queue.release(c);
    this.claims.delete(c);
  }

  private async sendGroup(group: Claim[], deadline: number): Promise<boolean> {
    const first = group[0]!;
    const batch: Batch = { ...first.batch, dropped_events: 0, events: [] };
    for (const c of group) {
      batch.events.push(...c.batch.events);
      batch.dropped_events += c.batch.dropped_events ?? 0;
      // One catalog of the hash is enough, whichever segment carried it.
      if (!batch.catalog && c.batch.catalog) batch.catalog = c.batch.catalog;
    }
    const backoff = new Backoff();
    const roundEnd = Math.min(deadline, Date.now() + MAX_RETRY_TIME_MS);
    for (;;) {
      const now = Date.now();
      if (now >= roundEnd || !this.breaker.acquire(this.policy.dailyRequestCap)) {
        for (const c of group) this.releaseClaim(c);
        return false;
      }
      const r = await this.exporter.export(batch, Math.max(1, Math.min(this.policy.requestTimeoutMs, roundEnd - now)));
      if (r.ok || !r.retryable) {
        this.breaker.success();
        for (const c of group) {
          this.queue.complete(c);
          this.claims.delete(c);
        }
        return true;
      }
      const retryAfter = r.retryAfterMs === undefined ? undefined : Math.min(r.retryAfterMs, MAX_RETRY_AFTER_MS);
      this.breaker.failure(retryAfter);
      const delay = retryAfter ?? backoff.nextDelay();
      if (Date.now() + delay >= roundEnd) {
        for (const c of group) this.releaseClaim(c);
        return false;
      }
      await sleep(delay);
    }
  }
}
