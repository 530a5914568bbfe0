/**
 * The HTTP exporter: optel batches to a collector's `POST /v1/events`. Loaded only when
 * telemetry is on and there is an endpoint (a separate chunk of the bundle: importing optel does
 * not pay for it).
 */
import { net, tls, zlib } from './lazy.js';
import { type ExportResult, type Exporter, classify, parseRetryAfter } from './export.js';
import { type Batch, batchToJson } from './wire.js';

/** Timeout of the TCP connect of a request: 1 s (as the Rust SDK). */
export const CONNECT_TIMEOUT_MS = 1_000;

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
