// CPU time of each step of a run with telemetry on that does not send (the common case since
// batched delivery): the steps of `Telemetry.init` and of the exit handler, in their order,
// through the SDK's modules, each timed with process.cpuUsage() (µs). First-run costs (the
// install secret, node:crypto) are excluded by a first run that is not printed.
//
//   node build/test/bench/on-path-steps.js [runs=5]
//
// Each run is a fresh process (cold code, as in a CLI); the table gives the median per step.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, percentile } from '../helpers.js';

if (process.argv[2] === '--child') {
  const { TelemetryConfig } = await import('../../src/config.js');
  const { ciVendor } = await import('../../src/consent.js');
  const { createPrivateDir } = await import('../../src/fsutil.js');
  const { cachedPseudonym, epochLabel } = await import('../../src/identity.js');
  const { Queue } = await import('../../src/queue.js');
  const { newBatch, formatUuidV4, isoUtc, validateEvent } = await import('../../src/wire.js');
  const { randomBytes } = await import('../../src/lazy.js');
  const { rustOs, rustArch } = await import('../../src/dirs.js');
  const cpu = () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  };
  const laps: [string, number][] = [];
  let t = cpu();
  const lap = (name: string) => {
    const now = cpu();
    laps.push([name, now - t]);
    t = cpu();
  };
  const config = new TelemetryConfig({ tool: 'steps-tool', version: '0.1.0', endpoint: 'http://127.0.0.1:9' });
  lap('config');
  config.resolve();
  lap('consent resolution (variable)');
  const dataDir = config.dataDir()!;
  createPrivateDir(dataDir);
  lap('data directory');
  const label = epochLabel(config.epoch);
  ciVendor(config.envObj);
  lap('epoch label, CI check');
  const pseudonym = cachedPseudonym(dataDir, config.tool, label);
  lap('pseudonym (cache)');
  const queue = Queue.open(join(dataDir, 'queue'));
  const envelope = newBatch(config.tool, config.version, pseudonym, rustOs(), rustArch());
  lap('queue open, envelope');
  const session = formatUuidV4(randomBytes(16));
  lap('session id (/dev/urandom)');
  const ledger = config.ledger(dataDir);
  config.exitBudgetMs();
  config.batchEvents();
  process.on('exit', () => {});
  process.on('beforeExit', () => {});
  setTimeout(() => {}, 1000).unref();
  lap('settings, hooks, timer');
  const event = { event_id: formatUuidV4(randomBytes(16)), event_type: 'command' as const, name: 'check', timestamp: isoUtc(Date.now()), session_id: session, duration_ms: 3, success: true };
  validateEvent(event);
  lap('event, validation');
  const batch = { ...envelope, events: [event], dropped_events: queue.takeUnreportedDrops() };
  lap('drop counter');
  ledger.appendSync(batch);
  lap('ledger line');
  queue.append(batch);
  lap('segment, queue listing');
  process.stdout.write(JSON.stringify(laps));
} else {
  const runs = Number(process.argv[2] ?? 5);
  const home = tempDir('optel-steps-');
  const self = fileURLToPath(import.meta.url);
  const env = { PATH: process.env.PATH ?? '', HOME: home, STEPS_TOOL_TELEMETRY: 'on' };
  spawnSync(process.execPath, [self, '--child'], { env }); // creates the secret and the cache
  const by = new Map<string, number[]>();
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(process.execPath, [self, '--child'], { env, encoding: 'utf8' });
    for (const [name, ms] of JSON.parse(r.stdout) as [string, number][]) by.set(name, [...(by.get(name) ?? []), ms]);
  }
  let total = 0;
  console.log('| step | CPU, median |\n|---|---|');
  for (const [name, xs] of by) {
    const m = percentile(xs, 50);
    total += m;
    console.log(`| ${name} | ${m.toFixed(2)} ms |`);
  }
  console.log(`| **sum of the medians** | **${total.toFixed(2)} ms** |`);
}
