// How a process ends: `process.exit()` persists this run's events synchronously (delivered by
// the next run, or at once by a bounded flush child when the budget is long, as in CI);
// unfinished commands and uncaught exceptions are recorded as failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { PKG } from './paths.js';
import { dataDirOf, installEnv, recorder, runProcess, tempDir } from './helpers.js';
import { Queue } from '../src/queue.js';

const TOOL = join(PKG, 'build', 'test', 'support', 'exit-tool.js');
const run = (how: string, env: NodeJS.ProcessEnv) => runProcess(process.execPath, [TOOL, how], env);
const queued = (home: string) => new Queue(join(dataDirOf(home, 'exit-tool'), 'queue')).batches();

test('process.exit() right after recording: the event is persisted, not lost, and the next run sends it', async () => {
  const fake = await recorder();
  try {
    const home = tempDir();
    const env = installEnv(home, { EXIT_TOOL_TELEMETRY_ENDPOINT: fake.url });
    // A short budget and process.exit(): no waiting at all.
    const r = await run('exit', env);
    assert.equal(r.code, 0);
    assert.deepEqual(queued(home).flatMap((b) => b.events.map((e) => e.name)), ['exit']);
    // The next run delivers it (and its own, at its natural end).
    const next = await run('natural', { ...env, EXIT_TOOL_TELEMETRY_EXIT_TIMEOUT_MS: '5000' });
    assert.equal(next.code, 0);
    const sent = fake.requests.flatMap((q) => JSON.parse(q.body).events.map((e: { name: string }) => e.name)).sort();
    assert.deepEqual(sent, ['exit', 'natural']);
    assert.deepEqual(queued(home), []);
  } finally {
    await fake.close();
  }
});

test('a run that lasts sends, while it works, what earlier runs left when it makes a batch; otherwise it waits', async () => {
  const fake = await recorder();
  try {
    const home = tempDir();
    const env = installEnv(home, { EXIT_TOOL_TELEMETRY_ENDPOINT: fake.url, EXIT_TOOL_QUEUE_DIR: join(dataDirOf(home, 'exit-tool'), 'queue') });
    assert.equal((await run('exit', env)).code, 0);
    // One queued event is less than a batch (16): a long run leaves it queued while it works.
    const waits = await run('long', env);
    assert.equal(waits.code, 0, waits.stderr);
    assert.match(waits.stdout, /queued mid-run: 1\n/);
    // With a batch of one event the queue is due at start: it is sent during the run, not at its end.
    // (It works until its queue is empty, at most 30 s: a deadline for a loaded machine.)
    const sends = await run('long', { ...env, EXIT_TOOL_TELEMETRY_BATCH_EVENTS: '1', EXIT_TOOL_TELEMETRY_EXIT_TIMEOUT_MS: '5000', EXIT_TOOL_WORK_MS: '30000' });
    assert.equal(sends.code, 0, sends.stderr);
    assert.match(sends.stdout, /queued mid-run: 0\n/);
    const sent = fake.requests.flatMap((q) => JSON.parse(q.body).events.map((e: { name: string }) => e.name)).sort();
    assert.deepEqual(sent, ['exit', 'long', 'long']);
  } finally {
    await fake.close();
  }
});

test('in CI, process.exit() flushes through a bounded child process: delivered before the tool ends', async () => {
  const fake = await recorder();
  try {
    const home = tempDir();
    const r = await run('exit', installEnv(home, { CI: 'true', EXIT_TOOL_TELEMETRY_ENDPOINT: fake.url }));
    assert.equal(r.code, 0);
    assert.equal(fake.requests.length, 1, 'sent before exit');
    const batch = JSON.parse(fake.requests[0]!.body);
    assert.equal(batch.pseudonym, 'ci:unknown', 'CI runs share the vendor pseudonym');
    assert.deepEqual(queued(home), []);
  } finally {
    await fake.close();
  }
});

test('an uncaught exception and an unfinished command at process.exit(3) are recorded as failures', async () => {
  const home = tempDir();
  const env = installEnv(home, { EXIT_TOOL_TELEMETRY: 'local' });
  assert.equal((await run('throw', env)).code, 1);
  assert.equal((await run('unfinished-exit', env)).code, 3);
  const dir = join(dataDirOf(home, 'exit-tool'), 'ledger');
  const { JsonlFileExporter } = await import('../src/ledger.js');
  const events = new JsonlFileExporter(dir).readLines().flatMap((l) => JSON.parse(l).events);
  assert.deepEqual(events.map((e: { name: string; success: boolean; error_code?: string }) => [e.name, e.success, e.error_code]), [
    ['throw', false, 'uncaught_exception'],
    ['unfinished-exit', false, 'exit_3'],
  ]);
});

test('runs send only once a batch is queued: earlier runs just write their segment', async () => {
  const fake = await recorder();
  try {
    const home = tempDir();
    // A batch of 3 (default 16), and a long budget so that a loaded machine still delivers at exit.
    const env = installEnv(home, { EXIT_TOOL_TELEMETRY_ENDPOINT: fake.url, EXIT_TOOL_TELEMETRY_BATCH_EVENTS: '3', EXIT_TOOL_TELEMETRY_EXIT_TIMEOUT_MS: '5000' });
    for (let i = 0; i < 2; i++) assert.equal((await run('natural', env)).code, 0);
    assert.equal(fake.requests.length, 0, 'two events: less than a batch, nothing sent');
    assert.equal(queued(home).length, 2);
    assert.equal((await run('natural', env)).code, 0);
    assert.equal(fake.requests.length, 1, 'the third run sends the batch in one request');
    assert.equal(JSON.parse(fake.requests[0]!.body).events.length, 3);
    assert.deepEqual(queued(home), []);
  } finally {
    await fake.close();
  }
});

test('a segment queued more than an hour ago is sent by the next run, whatever the batch size', async () => {
  const fake = await recorder();
  try {
    const home = tempDir();
    const env = installEnv(home, { EXIT_TOOL_TELEMETRY_ENDPOINT: fake.url, EXIT_TOOL_TELEMETRY_BATCH_EVENTS: '100', EXIT_TOOL_TELEMETRY_EXIT_TIMEOUT_MS: '5000' });
    assert.equal((await run('natural', env)).code, 0);
    assert.equal(fake.requests.length, 0);
    // Age the segment: its name starts with the time it was written, in ns.
    const dir = join(dataDirOf(home, 'exit-tool'), 'queue');
    const [name] = readdirSync(dir).filter((n) => n.endsWith('b.json'));
    const old = (BigInt(Date.now() - 2 * 3_600_000) * 1_000_000n).toString().padStart(20, '0');
    renameSync(join(dir, name!), join(dir, old + name!.slice(20)));
    assert.equal((await run('natural', env)).code, 0);
    // The old segment goes from the run's start, the run's own event at its end (one request, or
    // two when the first had ended): both delivered, nothing left.
    assert.ok(fake.requests.length >= 1 && fake.requests.length <= 2, `${fake.requests.length} requests`);
    assert.equal(fake.requests.reduce((n, q) => n + JSON.parse(q.body).events.length, 0), 2);
    assert.deepEqual(queued(home), []);
  } finally {
    await fake.close();
  }
});
