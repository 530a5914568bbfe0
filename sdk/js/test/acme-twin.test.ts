// acme-node is the twin of the Rust example acme (issue #13: "same manifest, same error codes"):
// for the same fixture projects, `build --release` and `check --strict` give the same stdout,
// the same `error[CODE]: ...` line, the same exit status and the same output file; the help texts
// and usage errors of the flags are acme's; both tools record the flags the same way (attribute
// `profile`, feature `strict`); and a real collector receives them from acme-node. Needs the Rust
// binary `acme` (ACME_BIN) for the comparisons and `optel` (OPTEL_BIN) for the collector.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HAVE_OPTEL, OPTEL_BIN, PKG } from './paths.js';
import { type RunResult, acmeNode, dataDirOf, ensureAcmeNode, installEnv, runProcess, startCollector, tap, tempDir } from './helpers.js';
import type { Batch } from '../src/wire.js';

const ACME_BIN = process.env.ACME_BIN || resolve(PKG, '..', '..', 'target', 'debug', 'acme');
const noRust = existsSync(ACME_BIN) ? false : `no Rust acme binary at ${ACME_BIN}: build it (cargo build -p acme) or set ACME_BIN`;
const noOptel = HAVE_OPTEL ? false : `no optel binary at ${OPTEL_BIN}: build it (cargo build -p optel-cli) or set OPTEL_BIN`;

const scratch = tempDir('optel-twin-');
const quiet = installEnv(scratch, { ACME_TELEMETRY: 'off', ACME_NODE_TELEMETRY: 'off' });
const rust = (args: string[], env = quiet) => runProcess(ACME_BIN, args, env);

/** Fixture projects: name → files (path → content). */
const FIXTURES: Record<string, Record<string, string>> = {
  good: {
    'acme.toml': '[package]\nname = "good"\nversion = "1.2.3"\n\n[build]\nsources = ["src/a.txt", "src/b.txt"]\n',
    'src/a.txt': 'alpha\n',
    'src/b.txt': 'beta\n',
  },
  'empty-source': {
    'acme.toml': '[package]\nname = "hollow"\nversion = "0.1.0"\n\n[build]\nsources = ["src/main.txt", "src/empty.txt"]\n',
    'src/main.txt': 'hello\n',
    'src/empty.txt': '',
  },
  'no-sources': {
    'acme.toml': '[package]\nname = "bare"\nversion = "0.1.0"\n',
  },
};
const dir = (name: string) => join(scratch, name);

before(() => {
  ensureAcmeNode();
  for (const [name, files] of Object.entries(FIXTURES)) {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(dir(name), path, '..'), { recursive: true });
      writeFileSync(join(dir(name), path), text);
    }
  }
});

/** What a run shows, with the tool's own name spelt as acme's (`acme-node init DIR` → `acme init DIR`). */
const shown = (r: RunResult) => ({ code: r.code, stdout: r.stdout.replaceAll('acme-node', 'acme'), stderr: r.stderr.replaceAll('acme-node', 'acme') });

/** Every file under `DIR/target` with its content; the directory is removed afterwards. */
function takeTarget(project: string): Record<string, string> {
  const target = join(project, 'target');
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else out[`${prefix}${e.name}`] = readFileSync(join(d, e.name), 'utf8');
    }
  };
  if (existsSync(target)) walk(target, '');
  rmSync(target, { recursive: true, force: true });
  return out;
}

/** Runs `args` with both tools on the same project; returns what each showed and built. */
async function both(args: string[], project: string) {
  const r = await rust(args);
  const rustBuilt = takeTarget(project);
  const n = await acmeNode(args, quiet);
  const nodeBuilt = takeTarget(project);
  return { rust: { ...shown(r), built: rustBuilt }, node: { ...shown(n), built: nodeBuilt } };
}

test('build --release and check --strict: the same stdout, error line, exit status and output file as acme', { skip: noRust }, async () => {
  // What acme itself does (pinned, so that "the same" cannot mean "both wrong").
  const good = dir('good');
  const expected: [string[], string, { code: number; stdout: string; stderr: string; built: Record<string, string> }][] = [
    [['build', good, '--release'], good, { code: 0, stdout: `built good 1.2.3 into ${good}/target/release/good.out\n`, stderr: '', built: { 'release/good.out': 'alpha\nbeta\n' } }],
    [['build', '--release', good], good, { code: 0, stdout: `built good 1.2.3 into ${good}/target/release/good.out\n`, stderr: '', built: { 'release/good.out': 'alpha\nbeta\n' } }],
    [['build', good], good, { code: 0, stdout: `built good 1.2.3 into ${good}/target/good.out\n`, stderr: '', built: { 'good.out': 'alpha\nbeta\n' } }],
    [['check', good, '--strict'], good, { code: 0, stdout: 'good 1.2.3: manifest ok\n', stderr: '', built: {} }],
    [['check', dir('empty-source'), '--strict'], dir('empty-source'), { code: 1, stdout: '', stderr: 'error[E_STRICT]: source "src/empty.txt" is empty (--strict)\n', built: {} }],
    [['check', '--strict', dir('no-sources')], dir('no-sources'), { code: 1, stdout: '', stderr: 'error[E_STRICT]: build.sources is empty (--strict)\n', built: {} }],
    // Without --strict both projects are fine; a release build of an empty source is too.
    [['check', dir('empty-source')], dir('empty-source'), { code: 0, stdout: 'hollow 0.1.0: manifest ok\n', stderr: '', built: {} }],
    [['build', dir('empty-source'), '--release'], dir('empty-source'), { code: 0, stdout: `built hollow 0.1.0 into ${dir('empty-source')}/target/release/hollow.out\n`, stderr: '', built: { 'release/hollow.out': 'hello\n' } }],
    [['check', join(scratch, 'missing'), '--strict'], scratch, { code: 1, stdout: '', stderr: `error[E_NO_MANIFEST]: no acme.toml in ${join(scratch, 'missing')}: create a project with \`acme init DIR\`\n`, built: {} }],
  ];
  for (const [args, project, want] of expected) {
    const got = await both(args, project);
    assert.deepEqual(got.rust, want, `acme ${args.join(' ')}`);
    assert.deepEqual(got.node, got.rust, `acme-node ${args.join(' ')}`);
  }
});

test('a relative DIR is shown as given, as acme shows it (no path normalisation)', { skip: noRust }, async () => {
  const args = ['build', './good/', '--release'];
  const r = await runProcess(ACME_BIN, args, quiet, scratch);
  takeTarget(dir('good'));
  const n = await acmeNode(args, quiet, scratch);
  takeTarget(dir('good'));
  assert.equal(r.stdout, 'built good 1.2.3 into ./good/target/release/good.out\n');
  assert.deepEqual(shown(n), shown(r));
});

test('the help texts and usage errors of the flags are acme\'s (exit status 0 and 2)', { skip: noRust }, async () => {
  const good = dir('good');
  const cases = [
    ['build', '--help'],
    ['check', '-h'],
    ['help', 'build'],
    ['init', '--help'],
    ['check', good, '--release'],
    ['build', good, '--strict'],
    ['test', good, '--release'],
    ['build', '--release'],
    ['check', good, '--strict', '--strict'],
    ['build', good, '--release=true'],
    ['build', good, 'other'],
    ['check', '-s', good],
    ['frob'],
  ];
  for (const args of cases) {
    const [r, n] = [await rust(args), await acmeNode(args, quiet)];
    assert.deepEqual(shown(n), shown(r), `acme-node ${args.join(' ')}`);
    assert.equal(r.code, args.some((a) => a === '--help' || a === '-h' || a === 'help') ? 0 : 2, `acme ${args.join(' ')}`);
  }
  assert.deepEqual(takeTarget(good), {}, 'nothing was built');
  // The top-level help: acme-node says it is the Node.js one, and lists the same commands.
  const [r, n] = [await rust(['--help']), await acmeNode(['--help'], quiet)];
  assert.equal(n.code, 0);
  assert.equal(shown(n).stdout.replace(', in Node.js)', ')'), r.stdout);
});

/** The command and feature events of a tool's local ledger, as [type, name, metadata, error code]. */
function recorded(home: string, tool: string): unknown[][] {
  const ledger = join(dataDirOf(home, tool), 'ledger');
  return readdirSync(ledger)
    .sort()
    .flatMap((f) => readFileSync(join(ledger, f), 'utf8').trim().split('\n'))
    .flatMap((line) => (JSON.parse(line) as Batch).events)
    .filter((e) => e.event_type === 'command' || e.event_type === 'feature')
    .map((e) => [e.event_type, e.name, e.metadata ?? null, e.error_code ?? null]);
}

test('both tools record the flags alike: profile debug|release on build, the feature strict, never an argument', { skip: noRust }, async () => {
  const home = tempDir('optel-twin-home-');
  const runs = [
    ['build', dir('good'), '--release'],
    ['build', dir('good')],
    ['check', dir('good'), '--strict'],
    ['check', dir('empty-source'), '--strict'],
    ['check', dir('empty-source')],
  ];
  for (const args of runs) {
    const r = await rust(args, installEnv(home, { ACME_TELEMETRY: 'local' }));
    const n = await acmeNode(args, installEnv(home, { ACME_NODE_TELEMETRY: 'local' }));
    assert.equal(n.code, r.code, args.join(' '));
  }
  takeTarget(dir('good'));
  const expected = [
    ['command', 'build', { profile: 'release' }, null],
    ['command', 'build', { profile: 'debug' }, null],
    ['feature', 'strict', null, null],
    ['command', 'check', null, null],
    ['feature', 'strict', null, null],
    ['command', 'check', null, 'E_STRICT'],
    ['command', 'check', null, null],
  ];
  assert.deepEqual(recorded(home, 'acme'), expected, 'acme');
  assert.deepEqual(recorded(home, 'acme-node'), expected, 'acme-node');
  const ledger = join(dataDirOf(home, 'acme-node'), 'ledger');
  for (const f of readdirSync(ledger)) assert.ok(!readFileSync(join(ledger, f), 'utf8').includes(scratch), 'no path is recorded');
});

test('a real collector receives profile on build and the feature strict from acme-node', { skip: noOptel }, async () => {
  const collector = await startCollector(['acme-node']);
  // The collector keeps `profile` but breaks attributes down only for batches with an event
  // catalog, which this SDK does not send yet: a proxy shows what the collector received.
  const proxy = await tap(collector.url);
  try {
    const home = tempDir('optel-twin-home-');
    // A long exit budget: every run delivers at its exit, even on a loaded machine.
    const env = installEnv(home, { ACME_NODE_TELEMETRY: 'on', ACME_NODE_TELEMETRY_ENDPOINT: proxy.url, ACME_NODE_TELEMETRY_KEY: collector.keys['acme-node']!, ACME_NODE_TELEMETRY_EXIT_TIMEOUT_MS: '10000' });
    const runs = [
      await acmeNode(['build', dir('good'), '--release'], env),
      await acmeNode(['build', dir('good')], env),
      await acmeNode(['check', dir('good'), '--strict'], env),
      await acmeNode(['check', dir('empty-source'), '--strict'], env),
    ];
    takeTarget(dir('good'));
    assert.deepEqual(runs.map((r) => r.code), [0, 0, 0, 1]);

    const events = proxy.requests.filter((r) => r.url.startsWith('/v1/events')).flatMap((r) => (JSON.parse(r.body) as Batch).events);
    const seen = events.map((e) => [e.event_type, e.name, e.metadata ?? null, e.error_code ?? null]);
    assert.deepEqual(seen, [
      ['command', 'build', { profile: 'release' }, null],
      ['command', 'build', { profile: 'debug' }, null],
      ['feature', 'strict', null, null],
      ['command', 'check', null, null],
      ['feature', 'strict', null, null],
      ['command', 'check', null, 'E_STRICT'],
    ]);
    // ...and the collector took every one of them.
    assert.ok(proxy.answers.length > 0 && proxy.answers.every((a) => a.status === 200), JSON.stringify(proxy.answers));
    assert.equal(proxy.answers.reduce((n, a) => n + (JSON.parse(a.body) as { accepted: number }).accepted, 0), events.length);
    for (const r of proxy.requests) assert.ok(!r.body.includes(scratch), 'no path is sent');

    const s = collector.stats('acme-node');
    assert.equal(s.events, 6);
    assert.equal(s.invocations, 4);
    assert.deepEqual(s.features.map((f) => [f.name, f.count, f.installs]), [['strict', 2, 1]]);
    assert.deepEqual(s.error_codes.map((e) => [e.command, e.error_code, e.count]), [['check', 'E_STRICT', 1]]);
    const byName = Object.fromEntries(s.commands.map((c) => [c.name, c]));
    assert.equal(byName.build?.count, 2);
    assert.equal(byName.check?.count, 2);
    assert.equal(byName.check?.failures, 1);
  } finally {
    await proxy.close();
    await collector.stop();
  }
});
