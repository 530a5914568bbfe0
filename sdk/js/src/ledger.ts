/** The local ledger: what `telemetry log` prints (the Rust SDK's `JsonlFileExporter` files). */
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync, rmSync, rmdirSync, writeSync } from 'node:fs';
import { childPath, createPrivateDir, errCode } from './fsutil.js';
import type { ExportResult, Exporter } from './export.js';
import { type Batch, batchToJson, isoUtc } from './wire.js';

/** The default ledger retention: 30 days. */
export const DEFAULT_RETENTION_DAYS = 30;

/**
 * Writes each batch as one JSON line to `<dir>/YYYY-MM-DD.jsonl` (UTC), 0600: the local ledger
 * of `local` consent and what `telemetry log` prints. The same files as the Rust SDK.
 */
export class JsonlFileExporter implements Exporter {
  constructor(readonly dir: string, readonly retentionDays: number = DEFAULT_RETENTION_DAYS) {}

  /**
   * Appends synchronously (runs at exit). Expired files are purged when a day's file is
   * created, so that the other runs of the day do not list the directory.
   */
  appendSync(batch: Batch, now: number = Date.now()): void {
    const path = childPath(this.dir, `${isoUtc(now).slice(0, 10)}.jsonl`);
    const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT;
    let fd: number;
    try {
      fd = openSync(path, flags, 0o600);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e;
      createPrivateDir(this.dir);
      fd = openSync(path, flags, 0o600);
    }
    let created: boolean;
    try {
      created = fstatSync(fd).size === 0;
      writeSync(fd, batchToJson(batch) + '\n');
    } finally {
      closeSync(fd);
    }
    if (created) this.purgeExpired(now);
  }

  async export(batch: Batch): Promise<ExportResult> {
    try {
      this.appendSync(batch);
      return { ok: true };
    } catch (e) {
      return { ok: false, retryable: true, reason: (e as Error).message };
    }
  }

  /** Ledger files, oldest first. */
  files(): string[] {
    try {
      return readdirSync(this.dir)
        .filter((n) => /^\d{4}-\d{2}-\d{2}\.jsonl$/.test(n))
        .sort()
        .map((n) => childPath(this.dir, n));
    } catch (e) {
      if (errCode(e) === 'ENOENT') return [];
      throw e;
    }
  }

  /** Every line of every ledger file. */
  readLines(): string[] {
    return this.files().flatMap((p) => readFileSync(p, 'utf8').split('\n').filter((l) => l.length > 0));
  }

  /** Deletes files older than the retention; returns how many. */
  purgeExpired(now: number = Date.now()): number {
    if (this.retentionDays === 0) return 0;
    const today = Math.floor(now / 86_400_000);
    let n = 0;
    for (const p of this.files()) {
      const day = Math.floor(Date.parse(`${p.slice(-16, -6)}T00:00:00Z`) / 86_400_000);
      if (day + this.retentionDays <= today) {
        rmSync(p, { force: true });
        n++;
      }
    }
    return n;
  }

  /** Deletes every file and the directory. */
  purgeAll(): number {
    const files = this.files();
    for (const p of files) rmSync(p, { force: true });
    try {
      rmdirSync(this.dir);
    } catch {
      // not empty or gone
    }
    return files.length;
  }
}
