// Real processes for the tests: a collector (`optel serve`), fake endpoints (refusing,
// blackhole, stalled, recording), and the example CLI acme-node run as simulated installs.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ACME_NODE, OPTEL_BIN, ROOT } from './paths.js';

export function tempDir(prefix = 'optel-js-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A running `optel serve` on 127.0.0.1 with its own data directory. */
export interface Collector {
  url: string;
  token: string;
  dataDir: string;
  keys: Record<string, string>;
  stats(project: string): Stats;
  stop(): Promise<void>;
  /** Stops the collector and keeps its data (see restart). */
  stopOnly(): Promise<void>;
  /** Starts it again on the same address and data. */
  restart(): Promise<void>;
}

/** The parts of `optel stats --format json` the tests read. */
export interface Stats {
  active_installs: number;
  events: number;
  invocations: number;
  failures: number;
  commands: { name: string; count: number; failures: number; installs: number }[];
  error_codes: { command: string; error_code: string; count: number }[];
  features: { name: string; count: number; installs?: number }[];
}

function optel(args: string[]): string {
  return execFileSync(OPTEL_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startCollector(projects: string[], port = 0, extraArgs: string[] = []): Promise<Collector> {
  const dir = tempDir('optel-collector-');
  const dataDir = join(dir, 'data');
  const token = 'js-test-token-0123456789abcdef';
  const keys: Record<string, string> = {};
  for (const p of projects) keys[p] = optel(['projects', 'create', p, '--data-dir', dataDir]).trim().split('\n').pop()!.trim();
  let child: ReturnType<typeof spawn>;
  let url = '';
  const launch = async (listen: string) => {
    child = spawn(OPTEL_BIN, ['serve', '--listen', listen, '--data-dir', dataDir, '--admin-token', token, ...extraArgs], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '', OPTEL_LOG: 'warn' },
    });
    url = await new Promise<string>((ok, fail) => {
      let buf = '';
      const timer = setTimeout(() => fail(new Error(`the collector did not start within 20 s:\n${buf}`)), 20_000);
      child.stderr!.on('data', (d) => {
        buf += d;
        const m = /listening on (http:\/\/\S+)\s/.exec(buf); // whole line: a pipe may split it
        if (m) {
          clearTimeout(timer);
          ok(m[1]!);
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`the collector exited (${code}):\n${buf}`));
      });
    });
    child.stderr!.resume();
  };
  await launch(`127.0.0.1:${port}`);
  const stop = async () => {
    // A child killed by a signal has exitCode null and signalCode set: it has exited too.
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    }
  };
  return {
    get url() {
      return url;
    },
    token,
    dataDir,
    keys,
    stats(project: string): Stats {
      return JSON.parse(optel(['stats', '--project', project, '--data-dir', dataDir, '--format', 'json', '--since', '7d']));
    },
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async stopOnly() {
      await stop();
    },
    async restart() {
      await stop();
      await launch(url.replace('http://', ''));
    },
  } as Collector;
}

/** Makes sure examples/acme-node can resolve `optel` and `smol-toml` (npm ci there, once). */
export function ensureAcmeNode(): void {
  const dir = join(ROOT, 'examples', 'acme-node');
  if (existsSync(join(dir, 'node_modules', 'optel')) && existsSync(join(dir, 'node_modules', 'smol-toml'))) return;
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('npm ci in examples/acme-node failed');
}

/** A clean environment for a simulated install: no CI variables, its own HOME. */
export function installEnv(home: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', HOME: home };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs acme-node with `args` as a real process, timing it. */
export function acmeNode(args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<RunResult> {
  return runProcess(process.execPath, [ACME_NODE, ...args], env, cwd);
}

export function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** An address where nothing listens (connections are refused). */
export async function refusingAddr(): Promise<string> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return `http://127.0.0.1:${port}`;
}

/** Fake endpoints; `close()` stops them. */
export interface Fake {
  url: string;
  requests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
  close(): Promise<void>;
}

/**
 * Starts `s` on 127.0.0.1 (any free port) and tracks its connections, so that `close()` ends
 * the open ones (a keep-alive or never-answered socket would otherwise hold `server.close`).
 */
async function listenLocal(s: Server): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  s.on('connection', (c: Socket) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const c of sockets) c.destroy();
      await new Promise((r) => s.close(r));
    },
  };
}

/** A request as a fake endpoint saw it, the body decompressed; `then` gets the raw body. */
function recordRequest(req: IncomingMessage, requests: Fake['requests'], then: (raw: Buffer) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: body.toString('utf8') });
    then(raw);
  });
}

/** Accepts connections and never answers. */
export async function blackhole(): Promise<Fake> {
  const s = createNetServer((c) => {
    c.on('error', () => {});
    c.resume();
  });
  return { ...(await listenLocal(s)), requests: [] };
}

/** An HTTP server that records every request and answers `status` after `delayMs`. */
export async function recorder(status = 200, delayMs = 0): Promise<Fake> {
  const requests: Fake['requests'] = [];
  const s = createHttpServer((req, res) => {
    recordRequest(req, requests, () => {
      setTimeout(() => {
        res.writeHead(status, { 'Content-Type': 'application/json', 'Access-Control-Allow-Origin': '*' });
        res.end('{"accepted":0,"duplicates":0}');
      }, delayMs).unref();
    });
  });
  return { ...(await listenLocal(s)), requests };
}

/** A {@link Fake} in front of a real endpoint: also the endpoint's answers, in request order. */
export interface Tap extends Fake {
  answers: { status: number; body: string }[];
}

/**
 * A proxy in front of `target` (e.g. a real collector): forwards every request unchanged,
 * answers what `target` answered, and records both (bodies decompressed), so that a test can
 * read exactly what the collector received even where no query view shows it.
 */
export async function tap(target: string): Promise<Tap> {
  const requests: Fake['requests'] = [];
  const answers: Tap['answers'] = [];
  const s = createHttpServer((req, res) => {
    recordRequest(req, requests, (body) => {
      const upstream = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (up) => {
        const back: Buffer[] = [];
        up.on('data', (c) => back.push(c));
        up.on('end', () => {
          const answer = Buffer.concat(back);
          const text = (up.headers['content-encoding'] === 'gzip' ? gunzipSync(answer) : answer).toString('utf8');
          answers.push({ status: up.statusCode ?? 0, body: text });
          res.writeHead(up.statusCode ?? 502, up.headers);
          res.end(answer);
        });
      });
      upstream.on('error', (e) => {
        answers.push({ status: 502, body: e.message });
        res.writeHead(502);
        res.end();
      });
      upstream.end(body);
    });
  });
  return { ...(await listenLocal(s)), requests, answers };
}

/** The data directory of `tool` under a simulated install's HOME (Linux layout). */
export function dataDirOf(home: string, tool: string): string {
  return join(home, '.local', 'share', 'optel', tool);
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(Math.max(rank - 1, 0), s.length - 1)] ?? 0;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
