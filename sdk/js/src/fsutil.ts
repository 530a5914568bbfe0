/** File helpers that keep telemetry data private: directories 0700, files 0600 (as `fsutil.rs`). */
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync, constants } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';
import { randomHex } from './lazy.js';

/**
 * `dir/name` for a file name `name` (no separator, not `.` or `..`) in a directory path that is
 * already normalised (it came from `path.join`): a concatenation. `path.join` normalises the
 * whole path on every call; on the recording path (the queue listing names every segment) those
 * calls were enough to make V8 optimise Node's `normalizeString` with TurboFan in every run with
 * telemetry on, which alone cost milliseconds of CPU (sdk/js/BENCHMARKS.md, "Quiet machine").
 */
export function childPath(dir: string, name: string): string {
  return dir.endsWith(sep) ? dir + name : dir + sep + name;
}

/** Creates `dir` and its missing parents, private (0700). */
export function createPrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Creates a new file (0600) and writes `data`; fails if it exists. */
export function writeNewPrivate(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    if (typeof data === 'string') writeSync(fd, data);
    else writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to `path` (0600), replacing it whole: a temporary file, then a rename. */
export function writePrivateAtomic(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomHex(6)}.tmp`);
  try {
    writeNewPrivate(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** The error code of a Node.js system error. */
export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}
