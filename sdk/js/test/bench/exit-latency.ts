// Exit-latency and delivery harness of the Node.js SDK, the twin of the Rust SDK's
// `crates/optel-cli/examples/exit_latency.rs`:
//
//   npm run build && OPTEL_BIN=... [ACME_BIN=...] node build/test/bench/exit-latency.js [--runs 200] [--flap-runs 200]
//     [--import-runs 200] [--only-import] [--rust] [--peer] [--baseline OTHER/acme-node.js]
//
// 1. Runs `acme-node check APP` as a real process --runs times in each mode, interleaved: telemetry
//    off; on with a healthy collector (default batching, and sending every run); refusing
//    connections; a blackhole (accepts, never answers; default and sending every run); a listener
//    that answers after 10 s; HTTPS_PROXY at a dead port. With --rust, the Rust SDK's `acme`
//    (ACME_BIN) off/healthy/blackhole; with --peer, the same command with Astro's telemetry module
//    (peer-astro.ts) off/healthy/refused; with --baseline, another build of acme-node (e.g. with
//    the previous SDK) off/healthy/refused/blackhole. Prints median and p99 wall time, CPU time
//    (user + system, µs rusage through rusage.c), and what each adds to its program's off case.
//    Then drains every queue and checks the collector holds exactly one event per run with
//    telemetry on.
// 2. Flapping: --flap-runs runs over 2 installs, two processes at a time, the collector stopped
//    and restarted every 25 runs; after a drain every event must be stored exactly once.
// 3. Import time: --import-runs fresh processes each timing `await import('optel')`.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { acmeNode, blackhole, dataDirOf, ensureAcmeNode, installEnv, percentile, recorder, refusingAddr, runProcess, sleep, startCollector, tempDir, type Collector } from '../helpers.js';
import { ACME_NODE, OPTEL_BIN, PKG } from '../paths.js';

import { queueStatus } from '../../src/status.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
function argText(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const ONLY_IMPORT = process.argv.includes('--only-import');
const RUNS = ONLY_IMPORT ? 0 : arg('--runs', 200);
const FLAP_RUNS = ONLY_IMPORT ? 0 : arg('--flap-runs', 200);
const IMPORT_RUNS = arg('--import-runs', 200);
/** Another build of acme-node (e.g. the previous version of the SDK), measured in the same run. */
const BASELINE = argText('--baseline');
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const signed = (ms: number) => `${ms >= 0 ? '+' : ''}${ms.toFixed(1)} ms`;
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

if (!existsSync(OPTEL_BIN)) {
  console.error(`no optel binary at ${OPTEL_BIN}: set OPTEL_BIN`);
  process.exit(2);
}
ensureAcmeNode();
console.log(`node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model}), load average at start ${load()}`);
const scratch = tempDir('optel-bench-');

// CPU time (user + system) of each run, in µs from wait4's rusage, through a 30-line C wrapper
// (test/bench/rusage.c) when a C compiler is there: /usr/bin/time rounds to 10 ms, and Node.js
// cannot read a child's rusage. CPU time is the load-robust figure on a shared machine.
const RUSAGE = join(scratch, 'rusage');
const haveRusage = spawnSync('cc', ['-O2', '-o', RUSAGE, join(PKG, 'test', 'bench', 'rusage.c')], { stdio: 'ignore' }).status === 0;
const TIME = haveRusage ? undefined : existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
console.log(`CPU time from ${haveRusage ? 'wait4 rusage (µs)' : TIME ? '/usr/bin/time (10 ms resolution)' : 'nowhere (no cc, no /usr/bin/time)'}`);

const app = join(scratch, 'app');
await acmeNode(['init', app], installEnv(join(scratch, 'init'), { ACME_NODE_TELEMETRY: 'off' }));
// (the Rust acme reads the same manifest)
// No rate limits (as the Rust harness): every simulated install connects from 127.0.0.1.
const collector = await startCollector(['acme-node', 'acme'], 0, ['--rate-per-key', '0', '--rate-per-addr', '0']);
const key = collector.keys['acme-node']!;
const rustKey = collector.keys.acme!;
const hole = await blackhole();
const slow = await recorder(200, 10_000);
const peerSink = await recorder(200, 0);
const refusing = await refusingAddr();
const deadProxy = await refusingAddr();

interface Mode {
  name: string;
  /** Which program: acme-node with this SDK, the baseline build of it, the Rust `acme`, or the peer. */
  kind: 'node' | 'baseline' | 'rust' | 'peer';
  /** The mode's telemetry settings (none: off). */
  on?: Record<string, string | undefined>;
  home: string;
  times: number[];
  cpu: number[];
}
const mode = (kind: Mode['kind'], name: string, on?: Record<string, string | undefined>): Mode => ({ kind, name, on, home: join(scratch, `home-${kind}-${name.replace(/[^a-z0-9]+/gi, '-')}`), times: [], cpu: [] });
const sdk = (endpoint: string, extra: Record<string, string> = {}) => ({ ENDPOINT: endpoint, ...extra });
const modes: Mode[] = [
  mode('node', 'telemetry off'),
  mode('node', 'on, healthy collector', sdk(collector.url)),
  mode('node', 'on, healthy, every run sends (batch of 1)', sdk(collector.url, { BATCH_EVENTS: '1' })),
  mode('node', 'on, endpoint refusing connections', sdk(refusing)),
  mode('node', 'on, blackhole (accepts, never answers)', sdk(hole.url)),
  mode('node', 'on, blackhole, every run sends (batch of 1)', sdk(hole.url, { BATCH_EVENTS: '1' })),
  mode('node', 'on, answers after 10 s', sdk(slow.url)),
  mode('node', 'on, HTTPS_PROXY at a dead port', sdk(collector.url, { HTTPS_PROXY: deadProxy })),
];
const baselineModes: Mode[] =
  BASELINE && existsSync(BASELINE)
    ? [mode('baseline', 'telemetry off'), mode('baseline', 'on, healthy collector', sdk(collector.url)), mode('baseline', 'on, endpoint refusing connections', sdk(refusing)), mode('baseline', 'on, blackhole', sdk(hole.url))]
    : [];
// The Rust SDK's example in the same run, when its binary is there (--rust): the same machine load.
const ACME_BIN = process.env.ACME_BIN;
const rustModes: Mode[] =
  process.argv.includes('--rust') && ACME_BIN && existsSync(ACME_BIN)
    ? [mode('rust', 'telemetry off'), mode('rust', 'on, healthy collector', sdk(collector.url)), mode('rust', 'on, blackhole', sdk(hole.url))]
    : [];
// The peer (--peer): the same command with Astro's telemetry module instead of optel.
const PEER = join(PKG, 'build', 'test', 'bench', 'peer-astro.js');
const peerModes: Mode[] = process.argv.includes('--peer') ? [mode('peer', 'telemetry off'), mode('peer', 'on, healthy endpoint', { PEER: peerSink.url }), mode('peer', 'on, endpoint refusing connections', { PEER: refusing })] : [];
const all = [...modes, ...baselineModes, ...rustModes, ...peerModes];

function envFor(m: Mode): NodeJS.ProcessEnv {
  const home = m.home;
  if (m.kind === 'peer') return installEnv(home, m.on ? { PEER_TELEMETRY_URL: m.on.PEER } : { ASTRO_TELEMETRY_DISABLED: '1' });
  const p = m.kind === 'rust' ? 'ACME' : 'ACME_NODE';
  if (!m.on) return installEnv(home, { [`${p}_TELEMETRY`]: 'off' });
  const { HTTPS_PROXY, ...vars } = m.on;
  const env: Record<string, string | undefined> = { [`${p}_TELEMETRY`]: 'on', [`${p}_TELEMETRY_KEY`]: m.kind === 'rust' ? rustKey : key, HTTPS_PROXY };
  for (const [k, v] of Object.entries(vars)) env[`${p}_TELEMETRY_${k}`] = v;
  return installEnv(home, env);
}
function commandOf(m: Mode): string[] {
  switch (m.kind) {
    case 'rust':
      return [ACME_BIN!, 'check', app];
    case 'peer':
      return [process.execPath, PEER, 'check', app];
    case 'baseline':
      return [process.execPath, BASELINE!, 'check', app];
    default:
      return [process.execPath, ACME_NODE, 'check', app];
  }
}

console.log(`running check ${RUNS} times in each of ${all.length} modes, interleaved...`);
for (let i = 0; i < RUNS; i++) {
  for (const m of all) {
    const cmd = commandOf(m);
    const r = haveRusage ? await runProcess(RUSAGE, cmd, envFor(m)) : TIME ? await runProcess(TIME, ['-f', 'cpu %U %S', ...cmd], envFor(m)) : await runProcess(cmd[0]!, cmd.slice(1), envFor(m));
    if (r.code !== 0) throw new Error(`${m.kind} failed in mode ${m.name}: ${r.stderr}`);
    const ru = /rusage (\d+) (\d+) (\d+)\s*$/.exec(r.stderr);
    const cpu = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
    // The wrapper's wall time is the child's alone (fork to wait4).
    m.times.push(ru ? Number(ru[3]) / 1000 : r.ms);
    if (ru) m.cpu.push((Number(ru[1]) + Number(ru[2])) / 1000);
    else if (cpu) m.cpu.push((Number(cpu[1]) + Number(cpu[2])) * 1000);
  }
}
console.log(`load average after the runs ${load()}`);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const label = { node: 'acme-node', baseline: 'acme-node, previous SDK', rust: 'Rust acme', peer: 'peer: Astro telemetry' } as const;
console.log('\n| program | mode | median | p99 | added median | added p99 | CPU median | added CPU median | added CPU mean |\n|---|---|---|---|---|---|---|---|---|');
for (const m of all) {
  const off = all.find((o) => o.kind === m.kind && !o.on)!;
  const med = percentile(m.times, 50);
  const p99 = percentile(m.times, 99);
  const cpu = m.cpu.length ? percentile(m.cpu, 50) : Number.NaN;
  const offMed = percentile(off.times, 50);
  const offCpu = off.cpu.length ? percentile(off.cpu, 50) : Number.NaN;
  console.log(`| ${label[m.kind]} | ${m.name} | ${fmt(med)} | ${fmt(p99)} | ${signed(med - offMed)} | ${signed(p99 - offMed)} | ${fmt(cpu)} | ${signed(cpu - offCpu)} | ${signed(mean(m.cpu) - mean(off.cpu))} |`);
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

const onModes = [...modes, ...baselineModes].filter((m) => m.on);
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
console.log(`load average at the end ${load()}`);

await hole.close();
await slow.close();
await peerSink.close();
await collector.stop();
process.exitCode = deliveryOk && flapOk ? 0 : 1;
