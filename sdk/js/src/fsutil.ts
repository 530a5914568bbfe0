/** File helpers that keep telemetry data private: directories 0700, files 0600 (as `fsutil.rs`). */
import { closeSync, fstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync, constants } from 'node:fs';
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

/**
 * Reads one of optel's own files whole, as `fsutil.rs` `read_private`: no symbolic link
 * followed (`O_NOFOLLOW`), regular files only (the open is non-blocking, so a FIFO cannot hang
 * the tool), at most `limit` bytes, counted while reading and never trusted from the reported
 * size (0 for `/proc` files).
 *
 * @throws a system error when the file cannot be opened (`ENOENT` when missing, `ELOOP` for a
 *   link), an `Error` when it is not a regular file or is larger than `limit` bytes.
 */
export function readPrivate(path: string, limit: number): Buffer {
  // O_NOFOLLOW and O_NONBLOCK are undefined on Windows: there only the kind check applies.
  const fd = openSync(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${path} is not a regular file, so optel does not use it`);
    const buf = Buffer.alloc(limit + 1);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n > limit) throw new Error(`${path} is larger than the limit of ${limit} bytes`);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The error code of a Node.js system error. */
export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}
