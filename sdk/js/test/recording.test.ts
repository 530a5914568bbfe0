// Recording with consent on, in process (own process: init is once per process): events go
// to the exporter at shutdown with the right shape; library mode records through the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryExporter, Telemetry, library, trackCommand } from '../src/index.js';
import { validateBatch } from '../src/wire.js';
import { tempDir } from './helpers.js';

test('events are recorded, redacted, validated, queued 0600 and delivered at shutdown', async () => {
  const home = tempDir('optel-rec-');
  const memory = new MemoryExporter();
  const lib = library('mylib', '2.1.0');
  lib.method('Db.connect'); // before init: nothing
  const t = Telemetry.init({ tool: 'acme', version: '1.2.0', exporter: memory, dataDir: join(home, 'data'), configDir: join(home, 'config'), env: { ACME_TELEMETRY: 'on' }, exitTimeoutMs: 5000 });
  assert.equal(t.isEnabled, true);
  assert.equal(t.status().decidedBy.layer, 'tool_env');
  const ok = trackCommand('build');
  ok.attr('format', 'json').end();
  ok.end(); // idempotent
  trackCommand('check').fail('E_NO_MANIFEST');
  t.feature('cache', { enabled: true, entries: 42, hit_ratio: 0.75, note: 'for jane@example.com in /home/jane', bad: Number.NaN });
  t.event('bad name'); // dropped and counted: not a valid name
  lib.method('Db.connect');
  const unfinished = trackCommand('deploy');
  void unfinished;
  await t.shutdown();
  assert.equal(t.isEnabled, false);
  assert.equal(memory.batches.length, 1);
  const b = memory.batches[0]!;
  validateBatch(b);
  assert.equal(b.dropped_events, 1);
  assert.match(b.pseudonym, /^[0-9a-f]{32}$/);
  assert.deepEqual(b.events.map((e) => [e.event_type, e.name]), [
    ['command', 'build'],
    ['command', 'check'],
    ['feature', 'cache'],
    ['method', 'Db.connect'],
    ['command', 'deploy'],
  ]);
  assert.equal(new Set(b.events.map((e) => e.session_id)).size, 1);
  assert.equal(new Set(b.events.map((e) => e.event_id)).size, 5);
  assert.deepEqual([b.events[0]!.success, b.events[0]!.metadata], [true, { format: 'json' }]);
  assert.deepEqual([b.events[1]!.success, b.events[1]!.error_code], [false, 'E_NO_MANIFEST']);
  assert.deepEqual(b.events[2]!.metadata, { enabled: true, entries: 42, hit_ratio: 0.75, note: 'for <email> in <path>' });
  assert.deepEqual(b.events[3]!.metadata, { library: 'mylib', library_version: '2.1.0' });
  assert.equal(b.events[4]!.success, true, 'an unfinished command is ended at exit');
  // Delivered: the queue is empty; the ledger (0600) keeps the batch.
  const data = join(home, 'data');
  assert.deepEqual(readdirSync(join(data, 'queue')).filter((n) => n.endsWith('.json')), []);
  const ledgerDir = join(data, 'ledger');
  const [file] = readdirSync(ledgerDir);
  assert.equal(statSync(join(ledgerDir, file!)).mode & 0o777, 0o600);
  assert.equal(statSync(join(data, 'install_secret')).mode & 0o777, 0o600);
  assert.match(readFileSync(join(data, 'install_secret'), 'utf8'), /^[0-9a-f]{64}$/);
  // A second init is refused with a note.
  const again = Telemetry.init({ tool: 'acme', version: '1.2.0', env: { ACME_TELEMETRY: 'on' } });
  assert.equal(again.isEnabled, false);
  assert.match(again.status().note ?? '', /already initialised/);
});
