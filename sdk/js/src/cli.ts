/**
 * The user's `telemetry` subcommand: `status|enable|disable|local|reset|preview|log|purge|flush|forget`,
 * with the Rust SDK's texts. Framework-free: it takes the words after `telemetry` and returns an
 * exit code, so it plugs into commander, yargs or a plain `process.argv` switch:
 *
 * ```js
 * // plain
 * if (process.argv[2] === 'telemetry') process.exitCode = await runTelemetryCommand(options, process.argv.slice(3));
 * // commander
 * program.command('telemetry').argument('[command]').argument('[args...]').allowUnknownOption()
 *   .action(async (cmd = 'status', args) => { process.exitCode = await runTelemetryCommand(options, [cmd, ...args]); });
 * // yargs
 * yargs.command('telemetry [command] [args..]', TELEMETRY_DESCRIPTION, {}, async (a) => {
 *   process.exitCode = await runTelemetryCommand(options, [a.command ?? 'status', ...(a.args ?? [])]); });
 * ```
 *
 * Dispatch it before `Telemetry.init`, so that `disable` and `purge` never start telemetry.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Consent, readConsentFile, writeUserChoice } from './consent.js';
import { Breaker, MAX_RETRY_TIME_MS } from './delivery.js';
import { createSender } from './sending.js';
import { epochLabel, existingSecret, forgetProof, pseudonym, recentEpochLabels, rotateSecret } from './identity.js';
import { Queue } from './queue.js';
import { TelemetryConfig, type TelemetryOptions, eventsUrl } from './config.js';
import { type Status, formatStatus } from './telemetry.js';
import { describeSource } from './consent.js';

import { TELEMETRY_COMMANDS, telemetryHelp } from './cli-text.js';
export { TELEMETRY_COMMANDS, TELEMETRY_DESCRIPTION, telemetryHelp } from './cli-text.js';

/** Where the command writes (injectable for tests). */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const MAX_FLUSH_MS = 60_000;

class CliError extends Error {}

/** Runs `<tool> telemetry <args>`; returns the exit code (0 or 1). Never throws. */
export async function runTelemetryCommand(options: TelemetryOptions, args: string[], io: Io = stdio()): Promise<number> {
  const config = new TelemetryConfig(options);
  try {
    await execute(config, args, io);
    return 0;
  } catch (e) {
    io.err(`error: ${(e as Error).message}\n`);
    return 1;
  }
}

function stdio(): Io {
  const write = (s: NodeJS.WriteStream, text: string) => {
    try {
      s.write(text);
    } catch {
      // a broken pipe on stdout is success
    }
  };
  return { out: (t) => write(process.stdout, t), err: (t) => write(process.stderr, t) };
}

function timeoutArg(args: string[], dflt: number): number {
  const i = args.findIndex((a) => a === '--timeout-ms' || a.startsWith('--timeout-ms='));
  if (i < 0) return dflt;
  const a = args[i]!;
  const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[i + 1];
  if (v === undefined || !/^\d+$/.test(v)) throw new CliError(`--timeout-ms ${JSON.stringify(v ?? '')} is not a number of milliseconds`);
  return Math.min(Number(v), MAX_FLUSH_MS);
}

function needDataDir(config: TelemetryConfig): string {
  const d = config.dataDir();
  if (!d) throw new CliError('no home directory: set HOME so that telemetry settings can be kept');
  return d;
}

function queued(dataDir: string) {
  const dir = join(dataDir, 'queue');
  return existsSync(dir) ? new Queue(dir).batches() : [];
}

/** What telemetry would do on the next run, and what is queued. Asks nothing, writes nothing. */
export function telemetryStatus(config: TelemetryConfig): Status {
  const r = config.resolve();
  const s: Status = { consent: r.consent, decidedBy: r.source, pseudonymEpoch: config.epoch };
  if (r.note) s.note = r.note;
  const endpoint = config.endpoint();
  if (endpoint) s.endpoint = endpoint;
  if (r.consent !== 'off') s.pseudonymEpochLabel = epochLabel(config.epoch);
  const data = config.dataDir();
  if (data) {
    const batches = queued(data);
    s.queuedEvents = batches.reduce((n, b) => n + b.events.length, 0);
    s.droppedEvents = batches.reduce((n, b) => n + (b.dropped_events ?? 0), 0);
    if (existsSync(data)) s.dataDir = data;
  }
  return s;
}

async function execute(config: TelemetryConfig, args: string[], io: Io): Promise<void> {
  const tool = config.tool;
  const cmd = args[0] ?? 'status';
  switch (cmd) {
    case 'status':
      io.out(formatStatus(telemetryStatus(config)));
      return;
    case 'enable':
      return choose(config, 'on', io);
    case 'local':
      return choose(config, 'local', io);
    case 'disable': {
      choose(config, 'off', io);
      // Unsent events are deleted, never sent: disabling touches no network.
      const data = needDataDir(config);
      const q = join(data, 'queue');
      const n = queued(data).reduce((k, b) => k + b.events.length, 0);
      if (existsSync(q)) rmSync(q, { recursive: true, force: true });
      if (n > 0) io.out(`deleted ${n} unsent events\n`);
      return;
    }
    case 'reset': {
      const existed = rotateSecret(needDataDir(config));
      io.out(
        existed
          ? 'the install secret was deleted: the next run uses a new pseudonym that cannot be linked to the old one\n'
          : 'there was no install secret: the next run with telemetry on creates one\n',
      );
      return;
    }
    case 'preview': {
      const batches = queued(needDataDir(config));
      if (batches.length === 0) {
        io.out(`no events are queued. One run of ${tool} would send, for example:\n${config.samplePayload()}\n`);
      } else {
        for (const b of batches) io.out(`${JSON.stringify(b, null, 2)}\n`);
      }
      return;
    }
    case 'log': {
      const ledger = config.ledger(needDataDir(config));
      const lines = ledger.readLines();
      if (lines.length === 0) io.out(`the ledger is empty (${ledger.dir})\n`);
      for (const l of lines) io.out(`${l}\n`);
      return;
    }
    case 'purge': {
      const data = needDataDir(config);
      if (existsSync(data)) {
        rmSync(data, { recursive: true, force: true });
        io.out(`deleted all local telemetry data of ${tool} (${data})\n`);
      } else {
        io.out(`there is no local telemetry data of ${tool}\n`);
      }
      return;
    }
    case 'flush':
      return flush(config, timeoutArg(args, 5_000), io);
    case 'forget':
      return forget(config, timeoutArg(args, 10_000), io);
    case 'help':
    case '--help':
    case '-h':
      io.out(telemetryHelp(tool));
      return;
    default:
      throw new CliError(`unknown telemetry command ${JSON.stringify(cmd)}: use ${TELEMETRY_COMMANDS.map(([c]) => c).join(', ')}`);
  }
}

function choose(config: TelemetryConfig, choice: Consent, io: Io): void {
  const path = config.userConfigFile();
  if (!path) throw new CliError('no home directory: set HOME so that telemetry settings can be kept');
  let noticeShown = false;
  try {
    noticeShown = readConsentFile(path)?.notice_shown ?? false;
  } catch {
    // unreadable: the notice counts as not shown (the other lines are kept all the same)
  }
  try {
    writeUserChoice(path, choice, noticeShown);
  } catch (e) {
    throw new CliError(`cannot write ${path}: ${(e as Error).message}`);
  }
  let text = `telemetry is now ${choice} (saved in ${path})\n`;
  const r = config.resolve();
  if (r.consent !== choice && r.source.layer !== 'user_config') {
    text += `note: ${describeSource(r.source)} takes precedence, so telemetry stays ${r.consent} for now\n`;
  }
  io.out(text);
}

async function flush(config: TelemetryConfig, timeoutMs: number, io: Io): Promise<void> {
  const r = config.resolve();
  if (r.consent !== 'on') {
    io.out(`telemetry is ${r.consent} (${describeSource(r.source)}): nothing is sent\n`);
    return;
  }
  const data = needDataDir(config);
  const count = () => queued(data).reduce((n, b) => n + b.events.length, 0);
  const before = count();
  if (before === 0) {
    io.out('no events are queued\n');
    return;
  }
  const sender = createSender(config, data);
  if (!sender) {
    io.out(`${before} events are queued, but no endpoint is configured\n`);
    return;
  }
  // The user asked for this flush: probe the endpoint even if the breaker is open.
  new Breaker(data).allowProbe();
  const deadline = Date.now() + Math.min(timeoutMs, MAX_RETRY_TIME_MS * 6);
  let timer: NodeJS.Timeout | undefined;
  const inTime = await Promise.race([
    sender.round(deadline).then(() => true),
    new Promise<boolean>((res) => {
      timer = setTimeout(() => res(false), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  sender.releaseAll();
  const after = count();
  let text = `sent ${Math.max(0, before - after)} of ${before} queued events\n`;
  if (!inTime) text += `stopped waiting after ${timeoutMs} ms; the rest goes on a later run\n`;
  io.out(text);
}

async function forget(config: TelemetryConfig, timeoutMs: number, io: Io): Promise<void> {
  const tool = config.tool;
  const data = needDataDir(config);
  const secret = existingSecret(data);
  if (!secret) {
    io.out('this install has no secret, so nothing it sent can be identified: nothing to forget\n');
    return;
  }
  const endpoint = config.endpoint();
  if (!endpoint) throw new CliError('the collector did not delete this install\'s data: no endpoint is configured, so there is no collector to ask');
  const max = config.epoch === 'weekly' ? 60 : 14;
  const timestamp = new Date().toISOString();
  const installs = recentEpochLabels(config.epoch, Date.now(), max).map((label) => {
    const p = pseudonym(secret, tool, label);
    return { pseudonym: p, proof: forgetProof(p, tool, timestamp) };
  });
  const url = eventsUrl(endpoint).replace(/\/v1\/events$/, '/v1/installs');
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  const key = config.ingestKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let res: Response;
  try {
    res = await fetch(url, { method: 'DELETE', headers, body: JSON.stringify({ timestamp, tool, installs }), signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    throw new CliError(`the collector did not delete this install's data: cannot reach ${url}: ${(e as Error).message}`);
  }
  const text = await res.text();
  if (!res.ok) throw new CliError(`the collector did not delete this install's data: ${url} answered HTTP ${res.status}: ${text}`);
  let deleted = 0;
  try {
    deleted = Number((JSON.parse(text) as { deleted?: number }).deleted ?? 0);
  } catch {
    // 0
  }
  io.out(`the collector deleted ${deleted} events of this install (${installs.length} pseudonyms asked)\n`);
}
