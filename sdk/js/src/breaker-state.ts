import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { childPath } from './fsutil.js';

/** The circuit breaker's persisted record (the Rust SDK's `delivery_state` file): read by `status` without loading delivery. */
/** The breaker state file, in the data directory. */
export const STATE_FILE = 'delivery_state';
export const DAY_MS = 86_400_000;

/** Whether the circuit breaker of `dataDir` holds every process back now (read without loading delivery). */
export function breakerOpen(dataDir: string, now: number = Date.now()): boolean {
  try {
    return parseState(readSmallFile(childPath(dataDir, STATE_FILE))).openUntilMs > now;
  } catch {
    return false;
  }
}

/**
 * The first 256 bytes of a small record file, `''` when it does not exist. No exception on a
 * missing file (they cost more than the read): most runs have no drop counter, for one.
 */
export function readSmallFile(path: string): string {
  let fd: number;
  try {
    if (!statSync(path, { throwIfNoEntry: false })) return '';
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const buf = Buffer.alloc(256);
    return buf.toString('utf8', 0, readSync(fd, buf, 0, 256, 0));
  } finally {
    closeSync(fd);
  }
}

/** The persisted breaker state (the Rust SDK's record). */
export interface BreakerState {
  failures: number;
  openUntilMs: number;
  day: number;
  requests: number;
}

export function parseState(text: string): BreakerState {
  const f = text.split(/\s+/).filter((x) => x.length > 0).map(Number);
  if (f.length === 4 && f.every((n) => Number.isInteger(n))) {
    return { failures: Math.max(0, f[0]!), openUntilMs: f[1]!, day: f[2]!, requests: Math.max(0, f[3]!) };
  }
  return { failures: 0, openUntilMs: 0, day: 0, requests: 0 };
}

export function formatState(s: BreakerState): string {
  const pad = (n: number, w: number) => String(n).padStart(w, '0');
  return `${pad(s.failures, 10)} ${pad(s.openUntilMs, 20)} ${pad(s.day, 10)} ${pad(s.requests, 10)}\n`;
}
