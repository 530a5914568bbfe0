/** `queueStatus`: what the local queue and delivery state of a data directory hold (as the Rust SDK's `queue_status`). Creates nothing. */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { STATE_FILE, parseState } from './breaker-state.js';
import { Queue } from './queue.js';

/** The queue and delivery state of a data directory. */
export interface QueueStatus {
  pendingEvents: number;
  pendingBytes: number;
  segments: number;
  droppedEventsTotal: number;
  droppedEventsUnreported: number;
  /** Unix ms until which the circuit breaker holds every process back, if it is open. */
  breakerOpenUntilMs?: number;
  requestsToday: number;
}

/** Reads the queue and breaker state of `dataDir`; a missing directory reads as empty. */
export function queueStatus(dataDir: string): QueueStatus {
  const q = new Queue(join(dataDir, 'queue'));
  const segs = q.segmentsOrEmpty();
  const d = q.dropped();
  let b = parseState('');
  try {
    b = parseState(readFileSync(join(dataDir, STATE_FILE), 'utf8').slice(0, 256));
  } catch {
    // no state yet
  }
  const now = Date.now();
  const s: QueueStatus = {
    pendingEvents: segs.reduce((n, x) => n + x.events, 0),
    pendingBytes: segs.reduce((n, x) => n + x.bytes, 0),
    segments: segs.length,
    droppedEventsTotal: d.total,
    droppedEventsUnreported: d.unreported,
    requestsToday: b.day === Math.floor(now / 86_400_000) ? b.requests : 0,
  };
  if (b.openUntilMs > now) s.breakerOpenUntilMs = b.openUntilMs;
  return s;
}
