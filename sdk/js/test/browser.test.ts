// The React page of examples/react-components in headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core, as tests/browser does): what it sends, and that it sends nothing
// under Global Privacy Control, Do Not Track, or before consent. The part against a real
// collector needs its browser ingest keys; it is skipped with a message while the collector has
// none. Env: CHROMIUM (default /usr/bin/chromium), OPTEL_BIN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { HAVE_OPTEL, OPTEL_BIN, ROOT } from './paths.js';
import { type Collector, type Fake, recorder, sleep, startCollector } from './helpers.js';
import { validateBatch, type Batch } from '../src/wire.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const EXAMPLE = join(ROOT, 'examples', 'react-components');
const DIST = join(EXAMPLE, 'dist');
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}: set CHROMIUM`;

/** Builds the example page with its one command (npm ci when needed, then vite build). */
function buildExample(): void {
  if (!existsSync(join(EXAMPLE, 'node_modules', 'vite'))) {
    const ci = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: EXAMPLE, stdio: 'inherit' });
    if (ci.status !== 0) throw new Error('npm ci in examples/react-components failed');
  }
  const b = spawnSync('npm', ['run', 'build'], { cwd: EXAMPLE, stdio: 'inherit' });
  if (b.status !== 0) throw new Error('npm run build in examples/react-components failed');
}

let site: Server;
let origin = '';
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let browser: any;

before(async () => {
  if (skip) return;
  buildExample();
  // The page's own origin: a static server for dist/.
  site = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(DIST, path === '/' ? 'index.html' : path);
    if (!file.startsWith(DIST) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const type = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' }[extname(file)] ?? 'application/octet-stream';
    res.writeHead(200, { 'Content-Type': type }).end(readFileSync(file));
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(site.address() as { port: number }).port}`;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  // Bounded: a browser that does not close must not hold the test run.
  await Promise.race([browser?.close(), sleep(10_000)]);
  site?.closeAllConnections();
  await new Promise((r) => (site ? site.close(r) : r(undefined)));
});

/** Opens the page against `endpoint`, optionally with GPC or DNT, clicks Allow when asked, leaves. */
async function visit(endpoint: string, key: string, opts: { gpc?: boolean; dnt?: boolean; consent?: boolean } = {}) {
  const context = await browser.newContext();
  if (opts.gpc) await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
  if (opts.dnt) await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' }));
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e: Error) => errors.push(e.message));
  await page.goto(`${origin}/?endpoint=${encodeURIComponent(endpoint)}&key=${encodeURIComponent(key)}`);
  await page.getByRole('heading', { name: 'acme-ui' }).waitFor();
  const allow = page.getByRole('button', { name: 'Allow anonymous usage statistics' });
  if (opts.consent !== false && (await allow.count()) > 0) await allow.click();
  const storage = await page.evaluate(async () => ({
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
    idb: 'databases' in indexedDB ? (await indexedDB.databases()).length : 0,
    state: document.getElementById('consent-state')?.textContent ?? '',
  }));
  await page.click('#leave');
  await page.waitForURL('about:blank');
  await context.close();
  assert.deepEqual(errors, []);
  return storage;
}

async function waitFor(fake: Fake, n: number, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (fake.requests.length < n && Date.now() < end) await sleep(50);
}

test('one batch per page view on pagehide: sendBeacon, text/plain, ?key=, a per-page-view pseudonym, first mounts counted', { skip, timeout: 120_000 }, async () => {
  const fake = await recorder();
  try {
    const storage = await visit(fake.url, 'optel_bk_test');
    await waitFor(fake, 1);
    assert.equal(fake.requests.length, 1);
    const r = fake.requests[0]!;
    assert.equal(r.method, 'POST');
    assert.equal(r.url, '/v1/events?key=optel_bk_test');
    assert.equal(r.headers['content-type'], 'text/plain;charset=UTF-8');
    assert.equal(r.headers.origin, origin);
    assert.equal(r.headers.cookie, undefined);
    const batch = JSON.parse(r.body) as Batch;
    validateBatch(batch);
    assert.equal(batch.service_name, 'react-components');
    assert.match(batch.pseudonym, /^pv:[0-9a-f]{32}$/);
    const counted = batch.events.map((e) => `${e.event_type}:${e.name}:${JSON.stringify(e.metadata ?? {})}`).sort();
    // Three Buttons (two variants), a Card, an Alert; React StrictMode mounts twice in development: counted once.
    assert.deepEqual(counted, ['feature:Alert:{"severity":"warning"}', 'feature:Button:{"variant":"primary"}', 'feature:Button:{"variant":"secondary"}', 'feature:Card:{}']);
    assert.deepEqual(storage, { cookie: '', local: 0, session: 0, idb: 0, state: 'Thank you: anonymous component counts of this page view are sent when you leave.' });
    // A second page view: a new pseudonym, nothing carried over.
    await visit(fake.url, 'optel_bk_test');
    await waitFor(fake, 2);
    assert.notEqual(JSON.parse(fake.requests[1]!.body).pseudonym, batch.pseudonym);
  } finally {
    await fake.close();
  }
});

for (const [name, opts] of [
  ['Global Privacy Control', { gpc: true }],
  ['Do Not Track', { dnt: true }],
  ['no consent given', { consent: false }],
] as const) {
  test(`nothing is sent with ${name}`, { skip, timeout: 120_000 }, async () => {
    const fake = await recorder();
    try {
      const storage = await visit(fake.url, 'optel_bk_test', opts);
      if ('gpc' in opts || 'dnt' in opts) assert.match(storage.state, /^Usage statistics are off \(your browser asks not to be tracked\)\.$/);
      await sleep(1500);
      assert.equal(fake.requests.length, 0);
    } finally {
      await fake.close();
    }
  });
}

/** Creates a browser ingest key (the contract in sdk/js/README.md); `undefined` when the collector has none. */
function browserKey(c: Collector, project: string): string | undefined {
  try {
    const out = execFileSync(OPTEL_BIN, ['keys', 'create', project, '--browser', '--origin', origin, '--data-dir', c.dataDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.trim().split('\n').pop()?.trim();
  } catch {
    return undefined;
  }
}

test('the component counts reach a real collector through a browser key', { skip: skip || (HAVE_OPTEL ? false : `no optel binary at ${OPTEL_BIN}`), timeout: 120_000 }, async (t) => {
  // Keys are created while the collector is stopped (`optel keys` writes the database).
  const c = await startCollector(['react-components']);
  try {
    await c.stopOnly();
    const key = browserKey(c, 'react-components');
    await c.restart();
    if (!key) {
      t.skip('this collector does not support browser keys yet (`optel keys create PROJECT --browser --origin ORIGIN` failed): see the browser contract in sdk/js/README.md');
      return;
    }
    // The collector must accept the contract's request shape before the browser is involved.
    const probe = await fetch(`${c.url}/v1/events?key=${encodeURIComponent(key)}`, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST' } });
    if (probe.status === 404 || probe.status === 405) {
      t.skip(`this collector answers the CORS preflight with HTTP ${probe.status}: browser keys are unsupported`);
      return;
    }
    await visit(c.url, key);
    let s = c.stats('react-components');
    for (let i = 0; i < 50 && s.features.length === 0; i++) {
      await sleep(100);
      s = c.stats('react-components');
    }
    const counts = Object.fromEntries(s.features.map((f) => [f.name, f.count]));
    assert.deepEqual(counts, { Button: 2, Card: 1, Alert: 1 });
  } finally {
    await c.stop();
  }
});
