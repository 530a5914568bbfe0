// Telemetry off: no file, no socket, no timer, no process hook (own process: touches globals).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Telemetry, global, trackCommand, library } from '../src/index.js';
import { tempDir } from './helpers.js';

test('with DO_NOT_TRACK nothing runs: no file, no socket, no timer, no hook, no-op recording', () => {
  const home = tempDir('optel-off-');
  const resources = process.getActiveResourcesInfo().sort();
  const hooks = ['exit', 'beforeExit', 'uncaughtExceptionMonitor'].map((e) => process.listenerCount(e));
  const t = Telemetry.init({
    tool: 'acme',
    version: '1.0.0',
    endpoint: 'http://127.0.0.1:9',
    defaultConsent: 'on',
    dataDir: join(home, 'data'),
    configDir: join(home, 'config'),
    env: { DO_NOT_TRACK: '1', ACME_TELEMETRY: 'on' },
  });
  assert.equal(t.isEnabled, false);
  assert.equal(t.status().decidedBy.layer, 'do_not_track');
  const cmd = trackCommand('build');
  cmd.fail('E_X');
  t.feature('cache', { hits: 3 });
  library('mylib', '1.0.0').method('Db.connect');
  assert.equal(global().isEnabled, false);
  assert.deepEqual(readdirSync(home), [], 'no file or directory was created');
  assert.equal(existsSync(join(home, 'data')), false);
  assert.deepEqual(process.getActiveResourcesInfo().sort(), resources, 'no socket, timer or handle was created');
  assert.deepEqual(['exit', 'beforeExit', 'uncaughtExceptionMonitor'].map((e) => process.listenerCount(e)), hooks, 'no process hook');
});
