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
import { appendFileSync, readdirSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateDir, errCode } from './fsutil.js';
import { net, tls, zlib } from './lazy.js';
import { type Batch, batchToJson } from './wire.js';

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

/** Timeout of the TCP connect of a request: 1 s (as the Rust SDK). */
export const CONNECT_TIMEOUT_MS = 1_000;

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

/** The proxy for `url` from `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` (the first set), unless `NO_PROXY` lists the host. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const pick = (n: string) => env[n] || env[n.toLowerCase()];
  const p = pick('ALL_PROXY') || pick('HTTPS_PROXY') || pick('HTTP_PROXY');
  if (!p) return undefined;
  const noProxy = (pick('NO_PROXY') ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const host = url.hostname.toLowerCase();
  if (noProxy.some((n) => n === '*' || host === n.replace(/^\./, '') || host.endsWith(n.startsWith('.') ? n : `.${n}`))) return undefined;
  try {
    return new URL(p.includes('://') ? p : `http://${p}`);
  } catch {
    return undefined;
  }
}

/** Bodies smaller than this are sent uncompressed: gzip saves little on them and `zlib` costs a load. */
export const GZIP_MIN_BYTES = 2048;

/**
 * optel JSON batches to a collector's `POST /v1/events` with `Authorization: Bearer <key>`.
 *
 * A minimal HTTP/1.1 client over `node:net`/`node:tls` (loaded on first use) rather than
 * `node:http` or `fetch`: loading those costs more than the whole exit budget on a small
 * machine, and all a delivery needs is one request and the status line of its answer. Bodies of
 * 2 KiB or more are gzip-compressed. `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` are
 * honoured (absolute-form requests for `http://` endpoints, `CONNECT` tunnels for `https://`).
 * Every socket is `unref`ed and every timer too: a request in flight never keeps the process alive.
 */
export class HttpExporter implements Exporter {
  private current: { destroy(): void } | undefined;

  constructor(
    readonly url: string,
    readonly ingestKey: string | undefined,
    readonly userAgent: string,
    readonly gzip = true,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  abort(): void {
    this.current?.destroy();
  }

  export(batch: Batch, timeoutMs: number): Promise<ExportResult> {
    return new Promise((resolve) => {
      let settled = false;
      let socket: import('node:net').Socket | undefined;
      const done = (r: ExportResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(connectTimer);
        this.current = undefined;
        socket?.destroy();
        resolve(r);
      };
      const fail = (reason: string) => done({ ok: false, retryable: true, reason });
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
      timer.unref();
      const connectTimer = setTimeout(() => fail(`connect timed out after ${CONNECT_TIMEOUT_MS} ms`), Math.min(CONNECT_TIMEOUT_MS, timeoutMs));
      connectTimer.unref();
      this.current = { destroy: () => fail('aborted: the process is ending') };
      try {
        const target = new URL(this.url);
        const https = target.protocol === 'https:';
        const port = Number(target.port || (https ? 443 : 80));
        let body = Buffer.from(batchToJson(batch));
        let head = `Host: ${target.host}\r\nUser-Agent: ${this.userAgent}\r\nContent-Type: application/json\r\nConnection: close\r\n`;
        if (this.gzip && body.length >= GZIP_MIN_BYTES) {
          body = zlib().gzipSync(body, { level: 1 });
          head += 'Content-Encoding: gzip\r\n';
        }
        if (this.ingestKey) head += `Authorization: Bearer ${this.ingestKey}\r\n`;
        head += `Content-Length: ${body.length}\r\n\r\n`;
        const proxy = proxyFor(target, this.env);
        const path = target.pathname + target.search;
        const send = (s: import('node:net').Socket, requestTarget: string) => {
          socket = s;
          s.write(`POST ${requestTarget} HTTP/1.1\r\n${head}`);
          s.write(body);
          readStatus(s, (status, retryAfter) => done(classify(status, parseRetryAfter(retryAfter))), fail);
        };
        const connected = (s: import('node:net').Socket, secure: boolean, then: () => void) => {
          s.unref();
          s.setNoDelay(true);
          s.on('error', (e) => fail(e.message));
          s.once(secure ? 'secureConnect' : 'connect', () => {
            clearTimeout(connectTimer);
            then();
          });
        };
        if (!proxy) {
          const s = https ? tls().connect({ host: target.hostname, port, servername: target.hostname }) : net().connect({ host: target.hostname, port });
          socket = s;
          // The request is written at once (queued until the connection is up): one wake-up
          // of the event loop less, which on a busy machine is most of the cost.
          connected(s, https, () => {});
          send(s, path);
        } else {
          const p = net().connect({ host: proxy.hostname, port: Number(proxy.port || 80) });
          socket = p;
          connected(p, false, () => {
            if (!https) {
              send(p, target.href);
              return;
            }
            p.write(`CONNECT ${target.hostname}:${port} HTTP/1.1\r\nHost: ${target.hostname}:${port}\r\n\r\n`);
            readStatus(
              p,
              (status) => {
                if (status !== 200) return fail(`proxy answered CONNECT with HTTP ${status}`);
                const t = tls().connect({ socket: p, servername: target.hostname });
                t.unref();
                t.on('error', (e) => fail(e.message));
                t.once('secureConnect', () => send(t, path));
              },
              fail,
            );
          });
        }
      } catch (e) {
        fail((e as Error).message);
      }
    });
  }
}

/** Reads an HTTP response head: calls `ok(status, retryAfter)` once the status line and headers are in. */
function readStatus(s: import('node:net').Socket, ok: (status: number, retryAfter: string | undefined) => void, fail: (reason: string) => void): void {
  let buf = '';
  const onData = (d: Buffer) => {
    buf += d.toString('latin1');
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (buf.length > 64 * 1024) fail('the answer head is too long');
      return;
    }
    s.off('data', onData);
    s.off('end', onEnd);
    const lines = buf.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) return fail(`not an HTTP answer: ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`);
    const ra = lines.find((l) => /^retry-after:/i.test(l));
    ok(Number(m[1]), ra === undefined ? undefined : ra.slice(ra.indexOf(':') + 1).trim());
  };
  const onEnd = () => fail('the connection closed before an answer');
  s.on('data', onData);
  s.once('end', onEnd);
}

/** The default ledger retention: 30 days. */
export const DEFAULT_RETENTION_DAYS = 30;

/**
 * Writes each batch as one JSON line to `<dir>/YYYY-MM-DD.jsonl` (UTC), 0600: the local ledger
 * of `local` consent and what `telemetry log` prints. The same files as the Rust SDK.
 */
export class JsonlFileExporter implements Exporter {
  constructor(readonly dir: string, readonly retentionDays: number = DEFAULT_RETENTION_DAYS) {}

  /** Appends synchronously (runs at exit). */
  appendSync(batch: Batch, now: number = Date.now()): void {
    createPrivateDir(this.dir);
    const name = new Date(now).toISOString().slice(0, 10);
    appendFileSync(join(this.dir, `${name}.jsonl`), batchToJson(batch) + '\n', { mode: 0o600 });
    this.purgeExpired(now);
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
        .map((n) => join(this.dir, n));
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
