// A Rust tool and a Node.js tool of the same name on one machine: same pseudonym (same secret
// file, same derivation), one consent file (`telemetry disable` in one silences the other), and
// one queue that either tool's `telemetry status` and `preview` read. Needs the Rust example
// binary `acme` (ACME_BIN, default ../../target/debug/acme relative to sdk/js); skipped without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HAVE_OPTEL, OPTEL_BIN, PKG } from './paths.js';
import { dataDirOf, installEnv, recorder, refusingAddr, runProcess, startCollector, tempDir } from './helpers.js';

const ACME_BIN = process.env.ACME_BIN || resolve(PKG, '..', '..', 'target', 'debug', 'acme');
const skip = existsSync(ACME_BIN) ? false : `no Rust acme binary at ${ACME_BIN}: build it (cargo build -p acme) or set ACME_BIN`;
const NODE_ACME = join(PKG, 'build', 'test', 'support', 'node-acme.js');
const rust = (args: string[], env: NodeJS.ProcessEnv) => runProcess(ACME_BIN, args, env);
const node = (args: string[], env: NodeJS.ProcessEnv) => runProcess(process.execPath, [NODE_ACME, ...args], env);

function ledger(home: string): { pseudonym: string; service_version: string }[] {
  const dir = join(dataDirOf(home, 'acme'), 'ledger');
  return readdirSync(dir).flatMap((f) => readFileSync(join(dir, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l)));
}

test('a Rust tool and a Node.js tool of the same name report the same pseudonym (either creates the secret)', { skip }, async () => {
  for (const order of [['rust', 'node'], ['node', 'rust']] as const) {
    const home = tempDir('optel-interop-');
    const app = join(home, 'app');
    await rust(['init', app], installEnv(home, { ACME_TELEMETRY: 'off' }));
    for (const who of order) {
      const r = who === 'rust' ? await rust(['check', app], installEnv(home, { ACME_TELEMETRY: 'local' })) : await node(['check'], installEnv(home, { ACME_TELEMETRY: 'local' }));
      assert.equal(r.code, 0, r.stderr);
    }
    const lines = ledger(home);
    assert.equal(lines.length, 2);
    assert.deepEqual(lines.map((l) => l.service_version).sort(), ['0.1.0', '0.1.0-node']);
    assert.match(lines[0]!.pseudonym, /^[0-9a-f]{32}$/);
    assert.equal(lines[0]!.pseudonym, lines[1]!.pseudonym, `order ${order.join(' then ')}`);
  }
});

test('telemetry disable in one silences the other, and enable in the other is seen by the first', { skip }, async () => {
  const home = tempDir('optel-interop-');
  const r = await rust(['telemetry', 'disable'], installEnv(home));
  assert.equal(r.code, 0, r.stderr);
  const status = await node(['telemetry', 'status'], installEnv(home));
  assert.match(status.stdout, /^telemetry: off \(decided by user config file .*\/\.config\/optel\/acme\.toml\)/);
  await node(['check'], installEnv(home));
  assert.equal(existsSync(dataDirOf(home, 'acme')), false, 'the Node.js tool recorded nothing');
  const enable = await node(['telemetry', 'enable'], installEnv(home));
  assert.equal(enable.code, 0);
  const rustStatus = await rust(['telemetry', 'status'], installEnv(home));
  assert.match(rustStatus.stdout, /^telemetry: on \(decided by user config file .*\/\.config\/optel\/acme\.toml\)/);
});

// (Regression: the Node.js tool's `telemetry enable` rewrote the shared file from scratch, so
// the Rust tool's next run used the tool's endpoint instead of the user's file exporter.)
test('telemetry enable in the Node.js tool keeps the exporter and [upload] the Rust tool reads', { skip }, async () => {
  const home = tempDir('optel-interop-');
  const app = join(home, 'app');
  const endpoint = await recorder();
  try {
    await rust(['init', app], installEnv(home, { ACME_TELEMETRY: 'off' }));
    mkdirSync(join(home, '.config', 'optel'), { recursive: true, mode: 0o700 });
    const file = join(home, '.config', 'optel', 'acme.toml');
    writeFileSync(file, `# mine\ntelemetry = "off"\nexporter = "file"\n\n[upload]\nendpoint = "${endpoint.url}"\ncompression = "none"\n`, { mode: 0o600 });
    const enable = await node(['telemetry', 'enable'], installEnv(home));
    assert.equal(enable.code, 0, enable.stderr);
    assert.equal(readFileSync(file, 'utf8'), `# mine\nexporter = "file"\ntelemetry = "on"\n\n[upload]\nendpoint = "${endpoint.url}"\ncompression = "none"\n`);
    const status = await rust(['telemetry', 'status'], installEnv(home));
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^telemetry: on \(decided by user config file .*\/\.config\/optel\/acme\.toml\)\n/);
    assert.match(status.stdout, /\nexporter: file \(chosen in the user config file\)\n/);
    assert.ok(status.stdout.includes(`\nendpoint: ${endpoint.url}\n`), status.stdout);
    // The Rust tool's run goes to the user's file exporter, not to the network.
    assert.equal((await rust(['check', app], installEnv(home))).code, 0);
    const flush = await rust(['telemetry', 'flush'], installEnv(home));
    assert.equal(flush.code, 0, flush.stderr);
    assert.deepEqual(endpoint.requests, []);
    assert.ok(existsSync(join(dataDirOf(home, 'acme'), 'exported')), flush.stdout);
  } finally {
    await endpoint.close();
  }
});

test('one queue: each tool\'s status and preview read what the other queued', { skip }, async () => {
  const home = tempDir('optel-interop-');
  const app = join(home, 'app');
  const dead = await refusingAddr();
  await rust(['init', app], installEnv(home, { ACME_TELEMETRY: 'off' }));
  const env = installEnv(home, { ACME_TELEMETRY: 'on', ACME_TELEMETRY_ENDPOINT: dead });
  assert.equal((await rust(['check', app], env)).code, 0);
  assert.match((await node(['telemetry', 'status'], env)).stdout, /queued events: 1\n/);
  // (a batch of one: this run tries to send, and so writes the breaker record checked below)
  assert.equal((await node(['build'], { ...env, ACME_TELEMETRY_BATCH_EVENTS: '1' })).code, 0);
  assert.match((await rust(['telemetry', 'status'], env)).stdout, /queued events: 2\n/);
  const preview = (await rust(['telemetry', 'preview'], env)).stdout;
  assert.ok(preview.includes('"0.1.0-node"'), 'the Rust tool parses the Node.js segment');
  const nodePreview = (await node(['telemetry', 'preview'], env)).stdout;
  assert.ok(nodePreview.includes('"service_version": "0.1.0"'), 'the Node.js tool parses the Rust segment');
  // Both wrote the breaker record in one format: the Rust tool's status still reads it.
  const state = readFileSync(join(dataDirOf(home, 'acme'), 'delivery_state'), 'utf8');
  assert.match(state, /^\d{10} \d{20} \d{10} \d{10}\n$/);
});

test('a Node.js sender delivers a Rust tool\'s schema version 2 segment whole (catalog, phases, measurement)', { skip: skip || (HAVE_OPTEL ? false : `no optel binary at ${OPTEL_BIN}`) }, async () => {
  const collector = await startCollector(['acme']);
  try {
    const home = tempDir('optel-interop-');
    const app = join(home, 'app');
    await rust(['init', app], installEnv(home, { ACME_TELEMETRY: 'off' }));
    // The Rust tool queues a version 2 batch (its build has phases and a measurement) while the
    // endpoint is down...
    const down = installEnv(home, { ACME_TELEMETRY: 'on', ACME_TELEMETRY_ENDPOINT: await refusingAddr() });
    assert.equal((await rust(['build', app, '--release'], down)).code, 0);
    const queue = join(dataDirOf(home, 'acme'), 'queue');
    const [segment] = readdirSync(queue).filter((n) => n.endsWith('b.json'));
    const queued = JSON.parse(readFileSync(join(queue, segment!), 'utf8'));
    assert.equal(queued.schema_version, 2);
    assert.ok(queued.catalog && queued.catalog_hash, 'the Rust SDK sends its catalog');
    // ...and the Node.js tool of the same name sends it: the collector takes it only whole.
    // (Regression: the SDK before wire version 2 support rewrote the segment without its value
    // and catalog fields, the collector refused it (400, not retried), `flush` said "sent 2 of 2
    // queued events" and 0 were stored.)
    const up = installEnv(home, { ACME_TELEMETRY: 'on', ACME_TELEMETRY_ENDPOINT: collector.url, ACME_TELEMETRY_KEY: collector.keys.acme! });
    const flush = await node(['telemetry', 'flush'], up);
    assert.equal(flush.code, 0, flush.stderr);
    assert.deepEqual(readdirSync(queue).filter((n) => n.endsWith('b.json')), []);
    const s = collector.stats('acme');
    assert.equal(s.events, queued.events.length, 'every event stored, the measurement included');
    assert.equal(s.invocations, 1);
  } finally {
    await collector.stop();
  }
});
