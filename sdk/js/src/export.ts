/**
 * Exporters: where delivered batches go. Transport is separate from batching (as the Rust
 * SDK's `export` module): the queue and delivery decide what to send and when; an
 * {@link Exporter} only moves one batch somewhere.
 *
 * Contract: `export` is never called concurrently by one process; it settles within the
 * timeout it is given (it enforces it itself); it does not retry, it says whether a retry can
 * help (`retryable`, with an optional `Retry-After`); it never throws and never keeps the
 * process alive (sockets and timers are `unref`ed).
 */
import type { Batch } from './wire.js';

/** The outcome of one export. */
export type ExportResult =
  | { ok: true }
  | { ok: false; retryable: true; reason: string; retryAfterMs?: number }
  | { ok: false; retryable: false; reason: string };

/** Moves batches to a destination. */
export interface Exporter {
  /** Exports one batch within `timeoutMs`; never rejects. */
  export(batch: Batch, timeoutMs: number): Promise<ExportResult>;
  /** Aborts a request in flight (the process is ending); optional. */
  abort?(): void;
}

/** Accepts every batch and sends it nowhere. */
export class NoopExporter implements Exporter {
  async export(): Promise<ExportResult> {
    return { ok: true };
  }
}

/** Keeps every exported batch in memory, for authors' own tests. */
export class MemoryExporter implements Exporter {
  readonly batches: Batch[] = [];
  async export(batch: Batch): Promise<ExportResult> {
    this.batches.push(structuredClone(batch));
    return { ok: true };
  }
  /** Every event exported so far. */
  events(): Batch['events'] {
    return this.batches.flatMap((b) => b.events);
  }
}

/** Maps a collector status to an outcome: 2xx delivered; 400/413/422 never will be; else retry. */
export function classify(status: number, retryAfterMs: number | undefined): ExportResult {
  if (status >= 200 && status <= 299) return { ok: true };
  if (status === 400 || status === 413 || status === 422) return { ok: false, retryable: false, reason: `collector answered HTTP ${status}` };
  const r: ExportResult = { ok: false, retryable: true, reason: `collector answered HTTP ${status}` };
  if (retryAfterMs !== undefined) r.retryAfterMs = retryAfterMs;
  return r;
}

/** `Retry-After` in delay-seconds form; the HTTP-date form is ignored (the backoff applies). */
export function parseRetryAfter(v: string | undefined): number | undefined {
  if (v === undefined || !/^\s*\d+\s*$/.test(v)) return undefined;
  return Number(v.trim()) * 1000;
}
