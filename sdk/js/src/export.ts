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
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createPrivateDir, errCode } from './fsutil.js';
import { type Batch, batchToJson } from './wire.js';

const require = createRequire(import.meta.url);

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

/**
 * optel JSON batches to a collector's `POST /v1/events` with `Authorization: Bearer <key>`,
 * gzip-compressed, through `node:http`/`node:https` (loaded on first use: importing optel stays
 * cheap). Every socket is `unref`ed: a request in flight never keeps the process alive.
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
      const done = (r: ExportResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.current = undefined;
        resolve(r);
      };
      const timer = setTimeout(() => {
        req?.destroy();
        done({ ok: false, retryable: true, reason: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      timer.unref();
      let req: import('node:http').ClientRequest | undefined;
      try {
        const target = new URL(this.url);
        let body: Buffer = Buffer.from(batchToJson(batch));
        const headers: Record<string, string> = {
          'Content-Type': 'application/json',
          'User-Agent': this.userAgent,
        };
        if (this.gzip) {
          const zlib = require('node:zlib') as typeof import('node:zlib');
          body = zlib.gzipSync(body, { level: 1 });
          headers['Content-Encoding'] = 'gzip';
        }
        if (this.ingestKey) headers.Authorization = `Bearer ${this.ingestKey}`;
        headers['Content-Length'] = String(body.length);
        const proxy = proxyFor(target, this.env);
        const https = target.protocol === 'https:';
        const mod = require(https ? 'node:https' : 'node:http') as typeof import('node:https');
        let options: import('node:https').RequestOptions;
        if (proxy && !https) {
          // Plain HTTP through a proxy: the absolute URL goes to the proxy.
          options = { method: 'POST', host: proxy.hostname, port: proxy.port || 80, path: target.href, headers: { ...headers, Host: target.host } };
        } else {
          options = { method: 'POST', host: target.hostname, port: target.port || (https ? 443 : 80), path: target.pathname + target.search, headers, agent: false };
          if (proxy && https) {
            options.createConnection = tunnel(proxy, target, timeoutMs) as never;
          }
        }
        const r = (proxy && !https ? (require('node:http') as typeof import('node:http')) : mod).request(options, (res) => {
          res.resume();
          res.on('end', () => done(classify(res.statusCode ?? 0, parseRetryAfter(header(res.headers['retry-after'])))));
          res.on('error', (e) => done({ ok: false, retryable: true, reason: e.message }));
        });
        req = r;
        this.current = r;
        r.on('socket', (s) => {
          s.unref();
          if (!s.connecting) return;
          const ct = setTimeout(() => r.destroy(new Error(`connect timed out after ${CONNECT_TIMEOUT_MS} ms`)), Math.min(CONNECT_TIMEOUT_MS, timeoutMs));
          ct.unref();
          s.once('connect', () => clearTimeout(ct));
          s.once('close', () => clearTimeout(ct));
        });
        r.on('error', (e) => done({ ok: false, retryable: true, reason: e.message }));
        r.end(body);
      } catch (e) {
        done({ ok: false, retryable: true, reason: (e as Error).message });
      }
    });
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** An HTTPS connection through an HTTP proxy (CONNECT), with unref'd sockets. */
function tunnel(proxy: URL, target: URL, timeoutMs: number) {
  return (_opts: unknown, cb: (err: Error | null, socket?: import('node:net').Socket) => void) => {
    const http = require('node:http') as typeof import('node:http');
    const tls = require('node:tls') as typeof import('node:tls');
    const port = target.port || '443';
    const req = http.request({ host: proxy.hostname, port: proxy.port || 80, method: 'CONNECT', path: `${target.hostname}:${port}`, agent: false, timeout: timeoutMs });
    req.on('socket', (s) => s.unref());
    req.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        cb(new Error(`proxy answered CONNECT with HTTP ${res.statusCode}`));
        return;
      }
      const t = tls.connect({ socket, servername: target.hostname });
      t.unref();
      cb(null, t);
    });
    req.on('error', (e) => cb(e));
    req.end();
    return undefined;
  };
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
