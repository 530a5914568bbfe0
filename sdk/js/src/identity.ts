/**
 * Identity: the per-install secret, the rotating pseudonym derived from it, and the CI
 * pseudonym. A port of `crates/optel/src/identity.rs`; `sdk/fixtures/pseudonym-vectors.json`
 * pins both SDKs, and both use the same file, so a Rust tool and a Node.js tool of the same name
 * on one machine report the same pseudonym.
 *
 * The secret is 32 random bytes kept as 64 hex digits in `<data dir>/install_secret` (0600); it
 * never leaves the machine. The pseudonym is the first 16 bytes of
 * `HMAC-SHA-256(secret, "optel pseudonym v1|<tool>|<epoch>")`, hex-encoded.
 */
import { crypto } from './lazy.js';
import { linkSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { childPath, errCode, writeNewPrivate, writePrivateAtomic } from './fsutil.js';
import { isoUtc } from './wire.js';

const SECRET_FILE = 'install_secret';

/** How often the pseudonym changes. */
export type Epoch = 'monthly' | 'weekly' | 'never';

function readSecret(path: string): Buffer | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  }
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  // A damaged secret is replaced: the install counts as a new one (the privacy-safe failure).
  unlinkSync(path);
  return undefined;
}

/**
 * Reads the install secret, creating it on first use. Two processes racing to create it end up
 * with the same secret: it is written whole under a temporary name and hard-linked into place,
 * which fails if the other process won (the Rust SDK does the same).
 */
export function loadOrCreateSecret(dir: string): Buffer {
  const path = childPath(dir, SECRET_FILE);
  const existing = readSecret(path);
  if (existing) return existing;
  const secret = crypto().randomBytes(32);
  const tmp = childPath(dir, `.${SECRET_FILE}.${crypto().randomBytes(8).toString('hex')}`);
  writeNewPrivate(tmp, secret.toString('hex'));
  try {
    linkSync(tmp, path);
    return secret;
  } catch (e) {
    if (errCode(e) !== 'EEXIST') throw e;
    const won = readSecret(path);
    if (!won) throw new Error('install secret vanished while being created');
    return won;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** The install secret of `dir` if there is one; never creates it. */
export function existingSecret(dir: string): Buffer | undefined {
  return readSecret(childPath(dir, SECRET_FILE));
}

/** Deletes the install secret (`telemetry reset`); returns whether one existed. */
export function rotateSecret(dir: string): boolean {
  try {
    unlinkSync(childPath(dir, SECRET_FILE));
    return true;
  } catch (e) {
    if (errCode(e) === 'ENOENT') return false;
    throw e;
  }
}

/** The pseudonym of an install for one tool and epoch: 32 lowercase hex digits. */
export function pseudonym(secret: Uint8Array, tool: string, epoch: string): string {
  return crypto().createHmac('sha256', secret).update(`optel pseudonym v1|${tool}|${epoch}`).digest().subarray(0, 16).toString('hex');
}

const CACHE_FILE = 'pseudonym_cache';

/**
 * The pseudonym of this install for `tool` and epoch `label`, creating the secret on first use.
 * The last derivation is cached in `<data dir>/pseudonym_cache` (0600) with the identity of the
 * secret file (inode, mtime, size), so a run does not load `node:crypto` to recompute it; a new
 * secret (after `telemetry reset` by either SDK, or `purge`) is a new file and invalidates the
 * cache. The cache holds only what every queued batch holds anyway: the current pseudonym.
 */
export function cachedPseudonym(dir: string, tool: string, label: string): string {
  const secretPath = childPath(dir, SECRET_FILE);
  const cachePath = childPath(dir, CACHE_FILE);
  const id = () => {
    const s = statSync(secretPath);
    return `${s.ino} ${Math.round(s.mtimeMs)} ${s.size}`;
  };
  try {
    const key = `v1 ${id()} ${tool} ${label} `;
    const cached = readFileSync(cachePath, 'utf8');
    if (cached.startsWith(key)) {
      const p = cached.slice(key.length).trim();
      if (/^[0-9a-f]{32}$/.test(p)) return p;
    }
  } catch {
    // no secret or no cache yet
  }
  const p = pseudonym(loadOrCreateSecret(dir), tool, label);
  try {
    writePrivateAtomic(cachePath, `v1 ${id()} ${tool} ${label} ${p}\n`);
  } catch {
    // computed again next time
  }
  return p;
}

/** The pseudonym of every CI run of one vendor: `ci:<vendor>`. */
export function ciPseudonym(vendorSlug: string): string {
  return `ci:${vendorSlug}`;
}

const DAY_MS = 86_400_000;

/** The epoch label containing `nowMs`: `2026-11`, `week-2026-11-16` or `all`. */
export function epochLabel(epoch: Epoch, nowMs: number = Date.now()): string {
  switch (epoch) {
    case 'monthly':
      return isoUtc(nowMs).slice(0, 7);
    case 'weekly': {
      const days = Math.floor(nowMs / DAY_MS);
      // 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays.
      const monday = days - ((days + 3) % 7);
      return `week-${isoUtc(monday * DAY_MS).slice(0, 10)}`;
    }
    case 'never':
      return 'all';
  }
}

/** The labels of the epochs an install may have sent under, newest first, up to `max`. */
export function recentEpochLabels(epoch: Epoch, nowMs: number, max: number): string[] {
  const labels: string[] = [];
  let t = nowMs;
  while (labels.length < max) {
    const label = epochLabel(epoch, t);
    if (labels[labels.length - 1] !== label) labels.push(label);
    if (epoch === 'never') break;
    const prev = t - DAY_MS;
    if (prev <= 0) break;
    t = prev;
  }
  return labels;
}

/** The proof of one pseudonym in a deletion request (`optel_wire::forget_proof`). */
export function forgetProof(pseudonymValue: string, tool: string, timestamp: string): string {
  return crypto().createHmac('sha256', Buffer.from(pseudonymValue, 'utf8')).update(`optel forget v1|${tool}|${timestamp}`).digest('hex');
}

/**
 * A stable per-machine identifier for authors who need one (`optel::MachineId::derive`):
 * SHA-256 of `"optel machine id v1|<salt>|os|<machine id>"`, or of a random value where the OS
 * has no machine id. optel itself never sends it.
 */
export function deriveMachineId(salt: string): { id: string; stable: boolean } {
  let machine: string | undefined;
  for (const p of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const t = readFileSync(p, 'utf8').trim();
      if (t.length > 0 && t.length <= 128) {
        machine = t;
        break;
      }
    } catch {
      // next
    }
  }
  const h = crypto().createHash('sha256').update(`optel machine id v1|${salt}|`);
  if (machine !== undefined) h.update(`os|${machine}`);
  else h.update('random|').update(crypto().randomBytes(32));
  return { id: h.digest('hex'), stable: machine !== undefined };
}
