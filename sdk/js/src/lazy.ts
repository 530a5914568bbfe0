/**
 * Node.js built-ins loaded on first use. Importing optel must stay cheap (≤ 5 ms, see
 * BENCHMARKS.md) and telemetry that is off must load nothing it does not need: `crypto`, `tty`,
 * `net`, `tls`, `zlib` and `child_process` each cost milliseconds to load, so they are required
 * synchronously at the point of use instead of imported at the top.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';

/** `require` relative to this package (also used for the CommonJS builds of dependencies). */
export const require = createRequire(import.meta.url);

let c: typeof import('node:crypto') | undefined;
export const crypto = (): typeof import('node:crypto') => (c ??= require('node:crypto') as typeof import('node:crypto'));
let t: typeof import('node:tty') | undefined;
export const tty = (): typeof import('node:tty') => (t ??= require('node:tty') as typeof import('node:tty'));
let n: typeof import('node:net') | undefined;
export const net = (): typeof import('node:net') => (n ??= require('node:net') as typeof import('node:net'));
let s: typeof import('node:tls') | undefined;
export const tls = (): typeof import('node:tls') => (s ??= require('node:tls') as typeof import('node:tls'));
let z: typeof import('node:zlib') | undefined;
export const zlib = (): typeof import('node:zlib') => (z ??= require('node:zlib') as typeof import('node:zlib'));
let p: typeof import('node:child_process') | undefined;
export const childProcess = (): typeof import('node:child_process') => (p ??= require('node:child_process') as typeof import('node:child_process'));

let pool: Buffer | undefined;
let used = 0;

/**
 * `n` bytes from the operating system's random source. Read from `/dev/urandom` (a CSPRNG) in
 * blocks of 256 bytes where it exists, because loading `node:crypto` costs more than the rest of
 * a run's telemetry work; elsewhere from `crypto.randomBytes`.
 */
export function randomBytes(n: number): Buffer {
  if (n > 256) return crypto().randomBytes(n);
  if (!pool || used + n > pool.length) {
    pool = undefined;
    if (process.platform !== 'win32') {
      try {
        const fd = openSync('/dev/urandom', 'r');
        try {
          const b = Buffer.alloc(256);
          if (readSync(fd, b, 0, 256, null) === 256) pool = b;
        } finally {
          closeSync(fd);
        }
      } catch {
        pool = undefined;
      }
    }
    pool ??= crypto().randomBytes(256);
    used = 0;
  }
  const out = Buffer.from(pool.subarray(used, used + n));
  used += n;
  return out;
}

/** `n` random bytes as hex. */
export function randomHex(n: number): string {
  return randomBytes(n).toString('hex');
}
