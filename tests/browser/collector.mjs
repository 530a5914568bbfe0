// Starts a real collector (`optel serve`) on 127.0.0.1 with a temporary data directory and an
// admin token, and loads fixture data through the real ingest route (POST /v1/events).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const OPTEL = process.env.OPTEL_BIN || join(root, 'target', 'debug', 'optel');

function optel(args) {
  return execFileSync(OPTEL, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A running collector: `{ url, token, dataDir, createProject(name), setPublic(name, on), stop() }`. */
export async function startCollector({ extraArgs = [] } = {}) {
  if (!existsSync(OPTEL)) {
    throw new Error(`no optel binary at ${OPTEL}: run \`cargo build -p optel-cli\` first or set OPTEL_BIN`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'optel-browser-'));
  const dataDir = join(dir, 'data');
  const token = 'browser-test-' + randomBytes(16).toString('hex');
  const keys = {};
  const createProject = (name) => {
    const out = optel(['projects', 'create', name, '--data-dir', dataDir]);
    keys[name] = out.trim().split('\n').pop().trim();
    return keys[name];
  };
  // Projects are created before the collector starts: `optel projects` writes the database file.
  createProject('acme');
  createProject('zeta');
  const child = spawn(OPTEL, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--admin-token', token, ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, OPTEL_LOG: 'warn' },
  });
  const url = await new Promise((ok, fail) => {
    let buf = '';
    const timer = setTimeout(() => fail(new Error('the collector did not start within 20 s:\n' + buf)), 20000);
    child.stderr.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`the collector exited (${code}):\n${buf}`)); });
  });
  child.stderr.resume();
  return {
    url,
    token,
    dataDir,
    keys,
    setPublic(name, on) { optel(['projects', 'public', name, on ? 'on' : 'off', '--data-dir', dataDir]); },
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** GET a query route with the admin token; throws on a non-2xx answer. */
export async function query(c, path) {
  const res = await fetch(c.url + path, { headers: { Authorization: 'Bearer ' + c.token } });
  if (!res.ok) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

async function ingest(c, project, batch) {
  const res = await fetch(c.url + '/v1/events', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + c.keys[project], 'Content-Type': 'application/json' },
    body: JSON.stringify(batch),
  });
  if (!res.ok) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
}

const HOUR = 3600000;
const DAY = 24 * HOUR;

function event(type, name, ageMs, extra = {}) {
  return {
    event_id: randomUUID(),
    event_type: type,
    name,
    timestamp: new Date(Date.now() - ageMs).toISOString(),
    session_id: randomUUID(),
    ...extra,
  };
}
const cmd = (name, ageMs, ok, code, ms) =>
  event('command', name, ageMs, ok ? { success: true, duration_ms: ms } : { success: false, duration_ms: ms, error_code: code });

/**
 * Fixture data. acme: 7 installs over 3 versions and 3 platforms; `build` by all, `test` by 5
 * (2 failing), `deploy` by 1 install 20 days ago (outside 7d, inside 30d; below k in public).
 * zeta: 2 installs running `sync` on 1.0.0; on 1.1.0 (schema version 2, with the catalog of the
 * wire's golden batch) three `build`s, two `debug` (x, y) and one `release` (x), each with the
 * phases `resolve` and `compile` (with `codegen` nested in it) and a `files` measurement, and
 * the feature `strict`.
 */
export async function loadFixtures(c) {
  const installs = [
    { id: 'a', version: '0.1.0', os: 'linux', arch: 'x86_64' },
    { id: 'b', version: '0.1.0', os: 'macos', arch: 'aarch64' },
    { id: 'c', version: '0.2.0', os: 'linux', arch: 'x86_64' },
    { id: 'd', version: '0.2.0', os: 'linux', arch: 'x86_64' },
    { id: 'e', version: '0.2.0', os: 'linux', arch: 'aarch64' },
    { id: 'f', version: '0.3.0', os: 'macos', arch: 'aarch64' },
    { id: 'g', version: '0.3.0', os: 'windows', arch: 'x86_64' },
  ];
  for (const [i, inst] of installs.entries()) {
    const events = [
      cmd('build', 1 * HOUR, true, null, 800 + 40 * i),
      cmd('build', 2 * DAY + HOUR, true, null, 900 + 30 * i),
      cmd('build', 3 * DAY, i % 3 !== 0, 'E_NO_MANIFEST', 120),
      event('feature', 'cache', 2 * HOUR),
    ];
    if (i < 5) events.push(cmd('test', 4 * HOUR, i >= 2 ? i !== 3 : true, 'E_TEST_FAILED', 2500 + 100 * i));
    if (i === 3) events.push(cmd('test', 5 * DAY, false, 'E_TEST_FAILED', 3100));
    if (i < 2) events.push(event('method', 'Db::connect', 3 * HOUR));
    if (i === 6) events.push(cmd('deploy', 20 * DAY, false, 'E_AUTH', 4000));
    if (i < 4) events.push(cmd('init', 12 * DAY, true, null, 15));
    await ingest(c, 'acme', {
      schema_version: 1,
      service_name: 'acme',
      service_version: inst.version,
      pseudonym: 'fixture-install-' + inst.id,
      os: inst.os,
      arch: inst.arch,
      events,
    });
  }
  for (const id of ['x', 'y']) {
    await ingest(c, 'zeta', {
      schema_version: 1,
      service_name: 'zeta',
      service_version: '1.0.0',
      pseudonym: 'fixture-install-' + id,
      os: 'linux',
      arch: 'x86_64',
      events: [cmd('sync', HOUR, true, null, 50), cmd('sync', DAY + HOUR, id === 'x', 'E_NET', 70)],
    });
  }
  const golden = JSON.parse(readFileSync(join(root, 'crates/optel-wire/tests/golden/batch_v2.json'), 'utf8'));
  const build = (profile, ageMs, files) => [
    event('command', 'build', ageMs, {
      success: true, duration_ms: 1250, metadata: { profile, jobs: '2..8' },
      phases: [
        { name: 'resolve', start_us: 150, duration_us: 20400, success: true },
        { name: 'compile', start_us: 20600, duration_us: 1228900, success: true },
        { name: 'codegen', parent: 1, start_us: 400000, duration_us: 800000, success: true },
      ],
    }),
    event('measurement', 'files', ageMs - 1000, { value: files }),
  ];
  for (const [id, events] of [['x', [...build('debug', HOUR, 12), ...build('release', 2 * HOUR, 40), event('feature', 'strict', HOUR)]],
    ['y', [...build('debug', 3 * HOUR, 10)]]]) {
    await ingest(c, 'zeta', {
      schema_version: 2,
      service_name: 'zeta',
      service_version: '1.1.0',
      pseudonym: 'fixture-install-' + id,
      os: 'linux',
      arch: 'x86_64',
      catalog_hash: golden.catalog_hash,
      catalog: golden.catalog,
      events,
    });
  }
}
