// Unit tests of the queue, breaker, backoff, prompt and subcommand (no process globals).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, segmentOf } from '../src/queue.js';
import { Backoff, Breaker, BREAKER_FAILURES, Sender, parseState } from '../src/delivery.js';
import { ask, canAsk, question } from '../src/consent.js';
import { type ExportResult, type Exporter, classify, parseRetryAfter } from '../src/export.js';
import { proxyFor } from '../src/http.js';
import { runTelemetryCommand } from '../src/cli.js';
import { isoUtc, newBatch, type Batch } from '../src/wire.js';
import { runProcess, tempDir } from './helpers.js';
import { PKG } from './paths.js';

function batch(n: number): Batch {
  const b = newBatch('acme', '1.0.0', 'p', 'linux', 'x86_64');
  for (let i = 0; i < n; i++) {
    b.events.push({ event_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, event_type: 'command', name: 'build', timestamp: '1970-01-01T00:00:00.000Z', session_id: '00000000-0000-4000-8000-000000000000' });
  }
  return b;
}

test('queue: append, claim, release, complete; a claimed segment is invisible to other claimers', () => {
  const q = Queue.open(join(tempDir(), 'queue'));
  q.append(batch(2));
  q.append(batch(3));
  assert.equal(q.pendingEvents(), 5);
  const [first] = q.segments();
  assert.equal(statSync(first!.path).size, first!.bytes);
  assert.equal(statSync(first!.path).mode & 0o777, 0o600);
  const claim = q.claim(first!)!;
  assert.equal(claim.batch.events.length, 2, 'oldest first');
  assert.equal(q.claim(first!), undefined, 'a second claim fails');
  assert.equal(q.pendingEvents(), 3);
  q.release(claim);
  assert.equal(q.pendingEvents(), 5);
  q.complete(q.claim(q.segments()[0]!)!);
  assert.equal(q.pendingEvents(), 3);
});

test('queue: segment names, corrupt segments, stale claims, full queue drops oldest and counts', () => {
  assert.equal(segmentOf('/q', 'notes.json'), undefined);
  assert.equal(segmentOf('/q', '.1-a-1e-2b.json.tmp'), undefined);
  assert.equal(segmentOf('/q', '1-a-xe-2b.json'), undefined);
  assert.deepEqual([segmentOf('/q', '1-ab-3e-40b.json')?.events, segmentOf('/q', '1-ab-3e-40b.json')?.bytes], [3, 40]);
  const dir = tempDir();
  const q = Queue.open(dir);
  writeFileSync(join(dir, '0000000000001-bad-3e-10b.json'), '{"schema_version":1, trunc');
  assert.equal(q.claim(q.segments()[0]!), undefined);
  assert.deepEqual(readdirSync(dir), [], 'the corrupt segment is gone');
  // A claim left by a killed sender goes back after 2 minutes.
  q.append(batch(1));
  const c = q.claim(q.segments()[0]!)!;
  const old = new Date(Date.now() - 300_000);
  utimesSync(c.claimedPath, old, old);
  q.recoverStaleClaims();
  assert.equal(q.pendingEvents(), 1);
  // Bounds.
  q.bounds = { segments: 3, events: 100, bytes: 1e9 };
  for (let i = 0; i < 4; i++) q.append(batch(10));
  assert.equal(q.segments().length, 3);
  assert.deepEqual(q.dropped(), { unreported: 11, total: 11 });
  assert.equal(readFileSync(join(dir, 'dropped'), 'utf8'), '00000000000000000011 00000000000000000011\n');
  assert.equal(q.takeUnreportedDrops(), 11);
  assert.deepEqual(q.dropped(), { unreported: 0, total: 11 });
});

test('breaker: opens after 5 failures for everybody, the probe closes it; daily cap; Retry-After', () => {
  const dir = tempDir();
  const b = new Breaker(dir);
  for (let i = 0; i < BREAKER_FAILURES - 1; i++) assert.ok(b.acquire(1000));
  assert.ok(b.maySend());
  assert.ok(b.acquire(1000), 'the fifth attempt is granted and opens the breaker');
  assert.ok(!b.maySend());
  assert.ok(!new Breaker(dir).maySend(), 'another process sees it open');
  b.success();
  assert.ok(b.maySend());
  assert.match(readFileSync(b.path, 'utf8'), /^0000000000 00000000000000000000 \d{10} 0000000005\n$/);
  const c = new Breaker(tempDir());
  for (let i = 0; i < 3; i++) {
    assert.ok(c.acquire(3));
    c.success();
  }
  assert.ok(!c.acquire(3));
  const d = new Breaker(tempDir());
  d.acquire(10);
  d.failure(60_000);
  assert.ok(!d.maySend());
  assert.deepEqual(parseState('garbage'), { failures: 0, openUntilMs: 0, day: 0, requests: 0 });
});

test('backoff grows by half with jitter and caps at 2 s', () => {
  const b = new Backoff();
  for (const ceiling of [100, 150, 225, 337.5, 506.25, 759.375, 1139.0625, 1708.59375, 2000, 2000]) {
    const d = b.nextDelay();
    assert.ok(d <= ceiling + 0.001 && d >= ceiling / 2 - 0.001, `${d} vs ${ceiling}`);
  }
});

test('status classes, Retry-After and proxies', () => {
  assert.ok(classify(200, undefined).ok && classify(202, undefined).ok);
  for (const s of [400, 413, 422]) assert.deepEqual(classify(s, undefined), { ok: false, retryable: false, reason: `collector answered HTTP ${s}` });
  assert.deepEqual(classify(429, 3000), { ok: false, retryable: true, reason: 'collector answered HTTP 429', retryAfterMs: 3000 });
  assert.equal(parseRetryAfter(' 7 '), 7000);
  assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT'), undefined);
  const u = new URL('http://collector.example:4318/v1/events');
  assert.equal(proxyFor(u, { HTTPS_PROXY: 'http://proxy:3128' })?.host, 'proxy:3128');
  assert.equal(proxyFor(u, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'example' }), undefined);
  assert.equal(proxyFor(u, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: '.example' }), undefined);
  assert.equal(proxyFor(u, {}), undefined);
});

class Scripted implements Exporter {
  calls: number[] = [];
  constructor(private readonly answers: ExportResult[]) {}
  async export(b: Batch): Promise<ExportResult> {
    this.calls.push(b.events.length);
    return this.answers.shift() ?? { ok: true };
  }
}

function setup(sizes: number[]) {
  const dir = tempDir();
  const q = Queue.open(join(dir, 'queue'));
  for (const n of sizes) q.append(batch(n));
  return { q, breaker: new Breaker(dir) };
}

test('delivery: segments merged up to 500 events; retried with backoff; Retry-After ends the round; rejected dropped', async () => {
  const policy = { requestTimeoutMs: 1000, dailyRequestCap: 100 };
  // The SDK's timers are unref'd (they never hold a process): hold this one while it waits.
  const hold = setInterval(() => {}, 1000);
  const deadline = () => Date.now() + 5000;
  let s = setup([200, 200, 200]);
  let e = new Scripted([]);
  await new Sender(s.q, s.breaker, policy, e).round(deadline());
  assert.deepEqual(e.calls, [400, 200]);
  assert.equal(s.q.pendingEvents(), 0);
  s = setup([3]);
  e = new Scripted([{ ok: false, retryable: true, reason: 't' }, { ok: false, retryable: true, reason: 't' }, { ok: true }]);
  await new Sender(s.q, s.breaker, policy, e).round(deadline());
  assert.deepEqual(e.calls, [3, 3, 3]);
  assert.equal(s.q.pendingEvents(), 0);
  assert.equal(s.breaker.state().failures, 0);
  s = setup([3]);
  e = new Scripted([{ ok: false, retryable: true, reason: 't', retryAfterMs: 60_000 }]);
  await new Sender(s.q, s.breaker, policy, e).round(deadline());
  assert.deepEqual(e.calls, [3]);
  assert.equal(s.q.pendingEvents(), 3, 'kept for later');
  assert.ok(!s.breaker.maySend());
  s = setup([3]);
  e = new Scripted([{ ok: false, retryable: false, reason: '400' }]);
  await new Sender(s.q, s.breaker, policy, e).round(deadline());
  assert.equal(s.q.pendingEvents(), 0);
  clearInterval(hold);
});

test('the opt-in prompt: show me the data, then yes; end of input means no; never without two terminals or in CI', () => {
  const written: string[] = [];
  const answers = ['s', 'y'];
  const got = ask('acme', '{"sample":true}', () => answers.shift(), (s) => written.push(s));
  assert.equal(got, 'on');
  const text = written.join('');
  assert.ok(text.startsWith(question('acme')));
  assert.ok(text.includes('This is what one run sends (an example):\n{"sample":true}'));
  assert.ok(text.includes('[y] yes, help improve acme  [n] no thanks  [s] show me the data: '));
  assert.equal(ask('acme', '', () => undefined, () => {}), 'off');
  assert.equal(ask('acme', '', () => '', () => {}), 'off');
  assert.ok(canAsk(true, true, false));
  assert.ok(!canAsk(true, true, true));
  assert.ok(!canAsk(false, true, false));
  assert.ok(!canAsk(true, false, false));
});

test('the telemetry subcommand: enable/local/disable write the user file; purge; reset; unknown commands fail', async () => {
  const home = tempDir();
  const options = { tool: 'acme', version: '1.0.0', configDir: join(home, 'config'), dataDir: join(home, 'data'), env: {} };
  let out = '';
  let err = '';
  const io = { out: (s: string) => (out += s), err: (s: string) => (err += s) };
  assert.equal(await runTelemetryCommand(options, ['local'], io), 0);
  assert.equal(out, `telemetry is now local (saved in ${join(home, 'config', 'optel', 'acme.toml')})\n`);
  out = '';
  assert.equal(await runTelemetryCommand({ ...options, env: { ACME_TELEMETRY: 'off' } }, ['enable'], io), 0);
  assert.match(out, /note: environment variable ACME_TELEMETRY takes precedence, so telemetry stays off for now\n$/);
  out = '';
  assert.equal(await runTelemetryCommand(options, ['status'], io), 0);
  assert.match(out, /^telemetry: on \(decided by user config file .*acme\.toml\)\ndeciding file: .*\npseudonym: rotates monthly \(current epoch \d{4}-\d{2}\)\nqueued events: 0\ndropped events: 0\n$/);
  mkdirSync(join(home, 'data'), { recursive: true });
  writeFileSync(join(home, 'data', 'install_secret'), 'ab'.repeat(32));
  out = '';
  await runTelemetryCommand(options, ['reset'], io);
  assert.match(out, /^the install secret was deleted/);
  out = '';
  await runTelemetryCommand(options, ['purge'], io);
  assert.equal(out, `deleted all local telemetry data of acme (${join(home, 'data')})\n`);
  assert.equal(await runTelemetryCommand(options, ['frobnicate'], io), 1);
  assert.match(err, /^error: unknown telemetry command "frobnicate"/);
  out = '';
  await runTelemetryCommand(options, ['preview'], io);
  assert.match(out, /^no events are queued\. One run of acme would send, for example:\n\{\n  "schema_version": 1,/);
});

test('the CI variable list (src/ci-env.ts) matches the installed ci-info', async () => {
  const { CI_ENV_NAMES } = await import('../src/ci-env.js');
  // @ts-expect-error: a plain .mjs script without types
  const { ciEnvNames } = await import('../../scripts/ci-env-names.mjs');
  assert.deepEqual([...CI_ENV_NAMES], ciEnvNames(), 'run node scripts/ci-env.mjs');
});

test('counter records: concurrent processes of one install lose no count (the lock file), and a stale lock is broken', async () => {
  const dir = tempDir('optel-race-');
  const script = join(PKG, 'build', 'test', 'support', 'count-race.js');
  const runs = [0, 1, 2, 3].map(() => runProcess(process.execPath, [script, dir, '150'], { PATH: process.env.PATH ?? '' }));
  for (const r of await Promise.all(runs)) assert.equal(r.code, 0, r.stderr);
  assert.equal(new Breaker(dir).state().requests, 600);
  assert.deepEqual(readdirSync(dir).sort(), ['delivery_state'], 'every lock was released');
  // A lock left by a process killed mid-update (older than 10 s) does not stop the next update.
  const lock = join(dir, 'delivery_state.lock');
  writeFileSync(lock, '');
  const old = new Date(Date.now() - 60_000);
  utimesSync(lock, old, old);
  new Breaker(dir).update((s) => {
    s.requests += 1;
  });
  assert.equal(new Breaker(dir).state().requests, 601);
  assert.deepEqual(readdirSync(dir).sort(), ['delivery_state']);
});

test('isoUtc is toISOString without the time zone: leap days, century years, day edges, before 1970', () => {
  const cases = [0, -1, 1, 86_399_999, 86_400_000, Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(2100, 2, 1), Date.UTC(1900, 1, 28, 12), Date.UTC(2024, 11, 31, 23, 59, 59, 5), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(1, 0, 1), 1_796_022_320_878.9];
  // and a deterministic spread over 0001..9999
  for (let i = 0, x = 12345; i < 5000; i++) {
    x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
    cases.push(Date.UTC(1, 0, 1) + Math.floor((x / 2_147_483_648) * (Date.UTC(9999, 11, 31) - Date.UTC(1, 0, 1))));
  }
  for (const ms of cases) assert.equal(isoUtc(ms), new Date(Math.floor(ms)).toISOString(), String(ms));
});
