/**
 * Node.js built-ins loaded on first use. Importing optel must stay cheap (≤ 5 ms, see
 * BENCHMARKS.md) and telemetry that is off must load nothing it does not need: `crypto`, `tty`,
 * `net`, `tls`, `zlib` and `child_process` each cost milliseconds to load, so they are required
 * synchronously at the point of use instead of imported at the top.
 */
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

/** `n` random bytes as hex, from the OS's random source. */
export function randomHex(bytes: number): string {
  return crypto().randomBytes(bytes).toString('hex');
}
