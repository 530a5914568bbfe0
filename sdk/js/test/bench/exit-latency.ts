// Exit-latency and delivery harness of the Node.js SDK, the twin of the Rust SDK's
// `crates/optel-cli/examples/exit_latency.rs`:
//
//   npm run build && OPTEL_BIN=... [ACME_BIN=...] node build/test/bench/exit-latency.js [--runs 200] [--flap-runs 200] [--import-runs 200] [--only-import] [--rust]
//
// 1. Runs `acme-node check APP` as a real process --runs times in each mode, interleaved: telemetry
//    off; on with a healthy collector; refusing connections; a blackhole (accepts, never answers);
//    a listener that answers after 10 s; HTTPS_PROXY at a dead port. Prints median and p99 wall
//    time and what each adds to the off case. Then drains every queue and checks the collector
//    holds exactly one event per run with telemetry on.
// 2. Flapping: --flap-runs runs over 2 installs, two processes at a time, the collector stopped
//    and restarted every 25 runs; after a drain every event must be stored exactly once.
// 3. Import time: --import-runs fresh processes each timing `await import('optel')`.
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { acmeNode, blackhole, dataDirOf, ensureAcmeNode, installEnv, percentile, recorder, refusingAddr, runProcess, sleep, startCollector, tempDir, type Collector } from '../helpers.js';
import { ACME_NODE, OPTEL_BIN, PKG } from '../paths.js';

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
import { queueStatus } from '../../src/status.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const ONLY_IMPORT = process.argv.includes('--only-import');
const RUNS = ONLY_IMPORT ? 0 : arg('--runs', 200);
const FLAP_RUNS = ONLY_IMPORT ? 0 : arg('--flap-runs', 200);
const IMPORT_RUNS = arg('--import-runs', 200);
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const signed = (ms: number) => `${ms >= 0 ? '+' : ''}${ms.toFixed(1)} ms`;

if (!existsSync(OPTEL_BIN)) {
  console.error(`no optel binary at ${OPTEL_BIN}: set OPTEL_BIN`);
  process.exit(2);
}
ensureAcmeNode();
console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model}), load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const scratch = tempDir('optel-bench-');
const app = join(scratch, 'app');
await acmeNode(['init', app], installEnv(join(scratch, 'init'), { ACME_NODE_TELEMETRY: 'off' }));
// (the Rust acme reads the same manifest)
// No rate limits (as the Rust harness): every simulated install connects from 127.0.0.1.
const collector = await startCollector(['acme-node', 'acme'], 0, ['--rate-per-key', '0', '--rate-per-addr', '0']);
const key = collector.keys['acme-node']!;
const rustKey = collector.keys.acme!;
const hole = await blackhole();
const slow = await recorder(200, 10_000);
const refusing = await refusingAddr();
const deadProxy = await refusingAddr();

interface Mode {
  name: string;
  /** The Rust example `acme` (ACME_BIN) instead of acme-node: the peer, measured in the same run. */
  rust?: boolean;
  endpoint?: string;
  proxy?: string;
  home: string;
  times: number[];
  cpu: number[];
}
const mode = (name: string, endpoint?: string, proxy?: string): Mode => ({ name, endpoint, proxy, home: join(scratch, `home-${name}`), times: [], cpu: [] });
const modes: Mode[] = [
  mode('off'),
  mode('healthy', collector.url),
  mode('refused', refusing),
  mode('blackhole', hole.url),
  mode('answers-after-10s', slow.url),
  mode('dead-https-proxy', collector.url, deadProxy),
];
// The Rust SDK's example in the same run, when its binary is there (--rust): the same machine load.
const ACME_BIN = process.env.ACME_BIN;
const rustModes: Mode[] =
  process.argv.includes('--rust') && ACME_BIN && existsSync(ACME_BIN)
    ? [{ ...mode('rust off'), rust: true }, { ...mode('rust healthy', collector.url), rust: true }, { ...mode('rust blackhole', hole.url), rust: true }]
    : [];

const envFor = (m: Mode, extra: Record<string, string> = {}) => {
  const p = m.rust ? 'ACME' : 'ACME_NODE';
  return installEnv(m.home.replace(/ /g, '-'), m.endpoint ? { [`${p}_TELEMETRY`]: 'on', [`${p}_TELEMETRY_ENDPOINT`]: m.endpoint, [`${p}_TELEMETRY_KEY`]: m.rust ? rustKey : key, HTTPS_PROXY: m.proxy, ...extra } : { [`${p}_TELEMETRY`]: 'off' });
};

console.log(`running acme-node check ${RUNS} times in each of ${modes.length} modes...`);
for (let i = 0; i < RUNS; i++) {
  for (const m of [...modes, ...rustModes]) {
    // /usr/bin/time adds the CPU time (user + system) of the run: wall time on a shared machine
    // swings with its load, CPU time much less.
    const cmd = m.rust ? [ACME_BIN!, 'check', app] : [process.execPath, ACME_NODE, 'check', app];
    const r = TIME ? await runProcess(TIME, ['-f', 'cpu %U %S', ...cmd], envFor(m)) : await runProcess(cmd[0]!, cmd.slice(1), envFor(m));
    if (r.code !== 0) throw new Error(`acme-node failed in mode ${m.name}: ${r.stderr}`);
    m.times.push(r.ms);
    const cpu = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
    if (cpu) m.cpu.push((Number(cpu[1]) + Number(cpu[2])) * 1000);
  }
}
const offMedian = percentile(modes[0]!.times, 50);
const offCpu = percentile(modes[0]!.cpu, 50);
console.log(`load average after the runs ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('\n| mode | median | p99 | added median | added p99 | CPU median | added CPU median |\n|---|---|---|---|---|---|---|');
const rustOff = rustModes[0] ? percentile(rustModes[0].times, 50) : 0;
const rustOffCpu = rustModes[0] ? percentile(rustModes[0].cpu, 50) : 0;
for (const m of [...modes, ...rustModes]) {
  const base = m.rust ? rustOff : offMedian;
  const baseCpu = m.rust ? rustOffCpu : offCpu;
  const med = percentile(m.times, 50);
  const p99 = percentile(m.times, 99);
  const cpu = m.cpu.length ? percentile(m.cpu, 50) : Number.NaN;
  console.log(`| ${m.name} | ${fmt(med)} | ${fmt(p99)} | ${signed(med - base)} | ${signed(p99 - base)} | ${fmt(cpu)} | ${signed(cpu - baseCpu)} |`);
}

/** Sends what is queued in each home to the healthy collector (`telemetry flush`), once breakers allow it. */
async function drain(c: Collector, homes: string[]): Promise<void> {
  for (let round = 0; round < 10; round++) {
    // Wait for every circuit breaker to allow a probe, as the Rust harness does.
    const open = Math.max(0, ...homes.map((h) => queueStatus(dataDirOf(h, 'acme-node')).breakerOpenUntilMs ?? 0));
    if (open > Date.now()) await sleep(Math.min(open - Date.now() + 50, 120_000));
    let pending = 0;
    for (const home of homes) {
      if (queueStatus(dataDirOf(home, 'acme-node')).pendingEvents === 0) continue;
      const r = await acmeNode(['telemetry', 'flush', '--timeout-ms', '20000'], installEnv(home, { ACME_NODE_TELEMETRY: 'on', ACME_NODE_TELEMETRY_ENDPOINT: c.url, ACME_NODE_TELEMETRY_KEY: key }));
      if (r.code !== 0) throw new Error(`flush failed: ${r.stderr}`);
      const left = queueStatus(dataDirOf(home, 'acme-node')).pendingEvents;
      if (left > 0) console.error(`drain round ${round}: ${home}: ${r.stdout.trim()} (${left} left)`);
      pending += left;
    }
    if (pending === 0) return;
    await sleep(1000);
  }
  throw new Error('queues still not empty after 10 drain rounds');
}

const onModes = modes.slice(1);
await drain(collector, onModes.map((m) => m.home));
const expected = RUNS * onModes.length;
let stored = collector.stats('acme-node').events;
console.log(`\ndelivery: ${stored} events stored, ${expected} recorded: ${stored === expected ? 'OK' : 'FAILED'}`);
const deliveryOk = stored === expected;

// Flapping.
const FLAP_EVERY = 25;
const homes = [0, 1].map((i) => join(scratch, `flap-${i}`));
const before = stored;
console.log(`flapping: ${FLAP_RUNS} runs over ${homes.length} installs, 2 at a time, collector toggled every ${FLAP_EVERY} runs...`);
let up = true;
const flapStarted = performance.now();
for (let i = 0; i < FLAP_RUNS; i += 2) {
  if (i > 0 && i % FLAP_EVERY < 2) {
    if (up) await collector.stopOnly();
    else await collector.restart();
    up = !up;
  }
  const home = homes[(i / 2) % homes.length]!;
  const pair = Math.min(2, FLAP_RUNS - i);
  const runs = [];
  for (let k = 0; k < pair; k++) runs.push(acmeNode(['check', app], installEnv(home, { ACME_NODE_TELEMETRY: 'on', ACME_NODE_TELEMETRY_ENDPOINT: collector.url, ACME_NODE_TELEMETRY_KEY: key })));
  for (const r of await Promise.all(runs)) if (r.code !== 0) throw new Error(`acme-node failed while flapping: ${r.stderr}`);
}
if (!up) await collector.restart();
const flapSeconds = (performance.now() - flapStarted) / 1000;
await drain(collector, homes);
stored = collector.stats('acme-node').events - before;
const queued = homes.reduce((n, h) => n + queueStatus(dataDirOf(h, 'acme-node')).pendingEvents, 0);
const flapOk = stored === FLAP_RUNS && queued === 0;
console.log(`flapping: ${FLAP_RUNS} runs in ${flapSeconds.toFixed(1)} s; ${stored} events stored, ${FLAP_RUNS} recorded, ${queued} still queued, ${FLAP_RUNS - stored} lost: ${flapOk ? 'OK' : 'FAILED'}`);

// Import time: a fresh process whose entry module statically imports the package (as a CLI's
// `import { Telemetry } from 'optel'` does) against one importing an empty module, interleaved;
// each reports performance.now() (ms since the process started) and its CPU time at its first
// line. The difference of the medians is what importing optel costs.
const entryDir = tempDir('optel-import-');
const emptyModule = join(entryDir, 'empty.mjs');
writeFileSync(emptyModule, 'export const x = 1;\n');
const probe = (target: string) => `import ${JSON.stringify(pathToFileURL(target).href)};\nconst c = process.cpuUsage();\nprocess.stdout.write(performance.now() + ' ' + (c.user + c.system) / 1000);\n`;
writeFileSync(join(entryDir, 'with-optel.mjs'), probe(join(PKG, 'build', 'dist', 'optel.js')));
writeFileSync(join(entryDir, 'with-empty.mjs'), probe(emptyModule));
const samples = { optel: { wall: [] as number[], cpu: [] as number[] }, empty: { wall: [] as number[], cpu: [] as number[] } };
for (let i = 0; i < IMPORT_RUNS; i++) {
  for (const k of ['empty', 'optel'] as const) {
    const r = await runProcess(process.execPath, [join(entryDir, k === 'optel' ? 'with-optel.mjs' : 'with-empty.mjs')], { PATH: process.env.PATH ?? '' });
    const [wall, cpu] = r.stdout.split(' ').map(Number);
    samples[k].wall.push(wall!);
    samples[k].cpu.push(cpu!);
  }
}
console.log(`\nimport of optel (${IMPORT_RUNS} fresh processes each, interleaved with an empty module):`);
console.log('| | entry reached, median | p99 | CPU at entry, median |\n|---|---|---|---|');
for (const k of ['empty', 'optel'] as const) {
  console.log(`| ${k === 'optel' ? "import 'optel'" : 'import of an empty module'} | ${fmt(percentile(samples[k].wall, 50))} | ${fmt(percentile(samples[k].wall, 99))} | ${fmt(percentile(samples[k].cpu, 50))} |`);
}
console.log(`| **cost of importing optel** | **${signed(percentile(samples.optel.wall, 50) - percentile(samples.empty.wall, 50))}** | ${signed(percentile(samples.optel.wall, 99) - percentile(samples.empty.wall, 99))} | **${signed(percentile(samples.optel.cpu, 50) - percentile(samples.empty.cpu, 50))}** |`);
console.log(`load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

await hole.close();
await slow.close();
await collector.stop();
process.exitCode = deliveryOk && flapOk ? 0 : 1;
