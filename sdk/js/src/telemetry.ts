/**
 * The recorder: `Telemetry.init`, the process-global handle, command guards, and what happens
 * at exit. See `docs/adr-delivery.md` for why delivery works this way in Node.js.
 *
 * - Off (any layer says so, or init failed): `init` returns a disabled handle; no hook, file,
 *   socket or timer is created, and every call is a property check.
 * - On or local: recording pushes to an in-memory array (no I/O). At process exit — the
 *   synchronous `exit` event, which also runs on `process.exit()` — the run's events are
 *   written as one queue segment and one ledger line, synchronously (a fraction of a ms).
 * - On: a background round (unref'd) sends what earlier runs left while the host works; when
 *   the process ends naturally (`beforeExit`) one more round sends this run's segment, waiting
 *   at most the exit budget (20 ms; 2 s in CI). With `process.exit()` there is no waiting: the
 *   segment stays queued for the next run, unless the budget is at least 250 ms (CI, or
 *   `<TOOL>_TELEMETRY_EXIT_TIMEOUT_MS`), in which case a flush child runs synchronously and is
 *   killed at the budget.
 */
import { fileURLToPath } from 'node:url';
import { childProcess, randomBytes } from './lazy.js';
import { type Consent, type ConsentSource, type Resolution, ask, canAsk, ciVendor, describeSource, interactive, notice, readConsentFile, writeUserChoice } from './consent.js';
import type { Sender } from './delivery.js';
import { breakerOpen } from './breaker-state.js';
import { rustArch, rustOs } from './dirs.js';
import type { JsonlFileExporter } from './ledger.js';
import { childPath, createPrivateDir } from './fsutil.js';
import { type Epoch, cachedPseudonym, ciPseudonym, epochLabel } from './identity.js';
import { Queue, dueForDelivery } from './queue.js';
import { redact } from './redact.js';
import { LONG_EXIT_BUDGET_MS, MAX_BATCH_DELAY_MS, TelemetryConfig, type TelemetryOptions, eventsUrl } from './config.js';
import { type AttributeValue, type Batch, type EventType, type WireEvent, formatUuidV4, isValidName, isoUtc, newBatch, validateEvent } from './wire.js';

/** Attribute values accepted by the recording calls: strings are redacted, non-finite numbers dropped. */
export type Attributes = Record<string, AttributeValue | null | undefined>;

/** Most events kept in memory by one process; more are dropped and counted. */
const MAX_BUFFERED_EVENTS = 10_000;
/**
 * When a run whose queue is due at start sends what earlier runs left: as soon as the host
 * yields to the event loop, so that the request has the whole run, not only the exit budget.
 */
const BACKGROUND_ROUND_AFTER_MS = 0;

/** What telemetry is doing and why, for `telemetry status`. */
export interface Status {
  consent: Consent;
  decidedBy: ConsentSource;
  endpoint?: string;
  dataDir?: string;
  pseudonymEpoch: Epoch;
  pseudonymEpochLabel?: string;
  queuedEvents?: number;
  droppedEvents?: number;
  note?: string;
}

/** The text of `telemetry status` (the Rust SDK's lines). */
export function formatStatus(s: Status): string {
  let out = `telemetry: ${s.consent} (decided by ${describeSource(s.decidedBy)})\n`;
  if (s.decidedBy.path) out += `deciding file: ${s.decidedBy.path}\n`;
  if (s.endpoint) out += `endpoint: ${s.endpoint}\n`;
  out += s.pseudonymEpochLabel ? `pseudonym: rotates ${s.pseudonymEpoch} (current epoch ${s.pseudonymEpochLabel})\n` : `pseudonym: rotates ${s.pseudonymEpoch}\n`;
  if (s.dataDir) out += `data directory: ${s.dataDir}\n`;
  if (s.queuedEvents !== undefined) out += `queued events: ${s.queuedEvents}\n`;
  if (s.droppedEvents !== undefined) out += `dropped events: ${s.droppedEvents}\n`;
  if (s.note) out += `note: ${s.note}\n`;
  return out;
}

interface Pending {
  type: EventType;
  name: string;
  at: number;
  durationMs?: number;
  success?: boolean;
  errorCode?: string;
  attributes?: Attributes | undefined;
}

/** Times one command; recorded by {@link CommandGuard.end} or {@link CommandGuard.fail}. */
export class CommandGuard {
  private errorCode: string | undefined;
  private attrs: Attributes | undefined;
  private done = false;

  /** @internal */
  constructor(
    private readonly recorder: Recorder | undefined,
    private readonly name: string,
    private readonly startedAt: number,
    private readonly started: number,
  ) {}

  /** Adds a typed attribute to the command event (strings are redacted). */
  attr(key: string, value: AttributeValue): this {
    if (this.recorder) (this.attrs ??= {})[key] = value;
    return this;
  }

  /** Sets the error code without ending the command. */
  setErrorCode(code: string): this {
    if (this.recorder) this.errorCode = code;
    return this;
  }

  /** Records the command as failed with a stable error code (`E_NO_MANIFEST`), never a message. */
  fail(code: string): void {
    if (!this.recorder || this.done) return;
    this.errorCode = code;
    this.end();
  }

  /** Records the command: a success unless an error code was set. Idempotent. */
  end(): void {
    if (!this.recorder || this.done) return;
    this.done = true;
    this.recorder.active.delete(this);
    const p: Pending = {
      type: 'command',
      name: this.name,
      at: this.startedAt,
      durationMs: Math.max(0, Math.floor(monotonicMs() - this.started)),
      success: this.errorCode === undefined,
      attributes: this.attrs,
    };
    if (this.errorCode !== undefined) p.errorCode = this.errorCode;
    this.recorder.record(p);
  }

  /** @internal: ends an unfinished guard at exit. */
  endAtExit(code: string | undefined): void {
    if (code !== undefined && this.errorCode === undefined) this.errorCode = code;
    this.end();
  }
}

const NOOP_GUARD = new CommandGuard(undefined, '', 0, 0);

/** A monotonic clock in ms. `process.hrtime`, not `performance.now()`: the global `performance` is loaded on first use, at a cost of milliseconds. */
function monotonicMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

/** The running recorder of a process with consent `local` or `on`. */
class Recorder {
  readonly buffer: Pending[] = [];
  readonly active = new Set<CommandGuard>();
  dropped = 0;
  closed = false;
  uncaught = false;
  private exitRoundStarted = false;
  private exitRoundDone = false;

  constructor(
    readonly config: TelemetryConfig,
    readonly envelope: Batch,
    readonly sessionId: string,
    readonly dataDir: string,
    readonly epochLabel: string,
    readonly exitBudgetMs: number,
    readonly ledger: JsonlFileExporter,
    readonly queue: Queue | undefined,
    /** Whether there is somewhere to send (consent on, and an endpoint or an exporter). */
    readonly delivers: boolean,
    /** How many queued events make a run send (`TelemetryConfig.batchEvents`). */
    readonly batchEvents: number,
  ) {}

  /** Whether this run already sent (what earlier runs left) from its start. */
  sentEarly = false;

  /**
   * Whether this run sends at its end: a round is already in flight (the run joins it), this run
   * sent from its start (its own segment follows, on the same warm code), or the queue — as
   * listed when this run's segment was written — holds a full batch or an old segment.
   */
  due(): boolean {
    if (this.sender?.busy || this.sentEarly) return true;
    if (!this.queue) return false;
    return dueForDelivery(this.queue.lastListing ?? this.queue.segmentsOrEmpty(), this.batchEvents, MAX_BATCH_DELAY_MS);
  }

  /** The sender, once its code is loaded (a separate chunk: see {@link loadSender}). */
  sender: Sender | undefined;
  private loading: Promise<Sender | undefined> | undefined;

  /** Loads the delivery code and builds the sender, once. */
  loadSender(): Promise<Sender | undefined> {
    if (!this.delivers) return Promise.resolve(undefined);
    this.loading ??= import('./sending.js')
      .then((m) => (this.sender = m.createSender(this.config, this.dataDir)))
      .catch(() => undefined);
    return this.loading;
  }

  record(p: Pending): void {
    if (this.closed || this.buffer.length >= MAX_BUFFERED_EVENTS) {
      this.dropped++;
      return;
    }
    this.buffer.push(p);
  }

  /** Writes the buffered events as one segment and one ledger line. Synchronous; never throws. */
  persist(): void {
    const exitCode = typeof process.exitCode === 'number' ? process.exitCode : Number(process.exitCode ?? 0);
    for (const g of [...this.active]) g.endAtExit(this.uncaught ? 'uncaught_exception' : exitCode ? `exit_${exitCode}` : undefined);
    if (this.buffer.length === 0) return;
    const pending = this.buffer.splice(0);
    let dropped = this.dropped;
    this.dropped = 0;
    const events: WireEvent[] = [];
    for (const p of pending) {
      const e: WireEvent = {
        event_id: formatUuidV4(randomBytes(16)),
        event_type: p.type,
        name: p.name,
        timestamp: isoUtc(p.at),
        session_id: this.sessionId,
      };
      if (p.durationMs !== undefined) e.duration_ms = p.durationMs;
      if (p.success !== undefined) e.success = p.success;
      if (p.errorCode !== undefined) e.error_code = p.errorCode;
      if (p.attributes) {
        const md = toWireAttributes(p.attributes);
        if (md) e.metadata = md;
      }
      try {
        validateEvent(e);
        events.push(e);
      } catch (err) {
        // A misspelt name is a bug of the tool: dropped and counted, said on stderr when asked.
        if (this.config.env('OPTEL_DEBUG')) process.stderr.write(`optel: event dropped: ${(err as Error).message}\n`);
        dropped++;
      }
    }
    if (events.length === 0) {
      this.dropped += dropped;
      return;
    }
    const batch: Batch = { ...this.envelope, events, dropped_events: dropped };
    try {
      if (this.queue) batch.dropped_events += this.queue.takeUnreportedDrops();
      this.ledger.appendSync(batch);
    } catch {
      // the ledger is best effort
    }
    try {
      this.queue?.append(batch);
    } catch {
      // a full disk loses this run's events, never the host's work
    }
  }

  /** Natural end of the process: persist, then one round within the exit budget. */
  onBeforeExit(): void {
    if (this.exitRoundStarted) return;
    this.exitRoundStarted = true;
    this.persist();
    // Most runs only write their segment: the queue holds less than a batch. An open breaker (a
    // dead endpoint) costs nothing either: not even loading the delivery code.
    if (!this.delivers || !this.due() || breakerOpen(this.dataDir)) {
      this.exitRoundDone = true;
      return;
    }
    const deadline = Date.now() + this.exitBudgetMs;
    // The one timer that holds the process: it ends at the budget, whatever the network does.
    const hold = setTimeout(() => {}, this.exitBudgetMs);
    void this.loadSender()
      .then((sender) => (sender && sender.breaker.maySend() ? sender.round(deadline) : undefined))
      .finally(() => {
        this.exitRoundDone = true;
        clearTimeout(hold);
      });
  }

  /** The `exit` event (also after `process.exit()`): synchronous only. */
  onExit(): void {
    this.persist();
    this.closed = true;
    this.sender?.releaseAll();
    // The flush child speaks HTTP only: not for an exporter given in code.
    const endpoint = this.config.endpoint();
    if (this.delivers && !this.exitRoundDone && this.exitBudgetMs >= LONG_EXIT_BUDGET_MS && !this.config.options.exporter && endpoint && this.due() && !breakerOpen(this.dataDir)) {
      flushInChild(eventsUrl(endpoint), this.dataDir, this.config, this.exitBudgetMs);
    }
  }

  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.persist();
    this.closed = true;
    if (this.delivers) {
      this.exitRoundStarted = true;
      const deadline = Date.now() + this.exitBudgetMs;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.loadSender().then((s) => s?.round(deadline)),
        new Promise<void>((r) => {
          timer = setTimeout(r, this.exitBudgetMs);
        }),
      ]);
      clearTimeout(timer);
      this.exitRoundDone = this.sender !== undefined && !this.sender.busy;
    }
  }
}

/** A synchronous flush in a child process, killed at the budget: for `process.exit()` in CI. */
function flushInChild(url: string, dataDir: string, config: TelemetryConfig, budgetMs: number): void {
  try {
    const worker = fileURLToPath(new URL('./flush-worker.js', import.meta.url));
    const job = { dataDir, url, key: config.ingestKey(), userAgent: config.userAgent(), gzip: config.options.gzip ?? true, policy: config.policy(), budgetMs };
    childProcess().spawnSync(process.execPath, [worker], {
      env: { ...process.env, OPTEL_FLUSH_JOB: JSON.stringify(job) },
      stdio: 'ignore',
      timeout: budgetMs,
      killSignal: 'SIGKILL',
    });
  } catch {
    // the next run delivers
  }
}

/** Converts attributes to wire values: strings redacted, non-finite numbers and other types dropped. */
export function toWireAttributes(attrs: Attributes): Record<string, AttributeValue> | undefined {
  let out: Record<string, AttributeValue> | undefined;
  for (const [k, v] of Object.entries(attrs)) {
    let w: AttributeValue | undefined;
    if (typeof v === 'boolean') w = v;
    else if (typeof v === 'number') w = Number.isFinite(v) ? v : undefined;
    else if (typeof v === 'string') w = redact(v);
    if (w !== undefined) (out ??= {})[k] = w;
  }
  return out;
}

let GLOBAL: Telemetry | undefined;
let INIT_CALLED = false;

/**
 * A tool's telemetry handle. `Telemetry.init(options)` resolves consent and, when it is `on` or
 * `local`, starts recording; it never throws (on any problem telemetry is off and `status()`
 * says why). A second `init` in one process returns a disabled handle.
 */
export class Telemetry {
  /** @internal */
  constructor(
    private readonly recorder: Recorder | undefined,
    private readonly statusValue: Status,
  ) {}

  /** Resolves consent and starts telemetry if it is on; installs the handle as {@link global}. */
  static init(options: TelemetryOptions): Telemetry {
    const config = new TelemetryConfig(options);
    if (INIT_CALLED) {
      return new Telemetry(undefined, {
        consent: 'off',
        decidedBy: { layer: 'author_default' },
        pseudonymEpoch: config.epoch,
        note: 'optel was already initialised in this process',
      });
    }
    INIT_CALLED = true;
    let t: Telemetry;
    try {
      t = initWith(config);
    } catch (e) {
      t = new Telemetry(undefined, {
        consent: 'off',
        decidedBy: { layer: 'author_default' },
        pseudonymEpoch: config.epoch,
        note: `telemetry could not start: ${(e as Error).message}`,
      });
    }
    if (t.recorder) GLOBAL = t;
    return t;
  }

  /** Whether events are recorded. */
  get isEnabled(): boolean {
    return this.recorder !== undefined && !this.recorder.closed;
  }

  /** What telemetry is doing and which layer decided it. */
  status(): Status {
    return { ...this.statusValue };
  }

  /** Starts timing command `name` (`[A-Za-z0-9_.:-]`, ≤ 64 bytes, a constant, never an argument). */
  trackCommand(name: string): CommandGuard {
    const r = this.recorder;
    if (!r) return NOOP_GUARD;
    const g = new CommandGuard(r, name, Date.now(), monotonicMs());
    r.active.add(g);
    return g;
  }

  /** Records that feature `name` was used. */
  feature(name: string, attributes?: Attributes): void {
    this.recorder?.record({ type: 'feature', name, at: Date.now(), attributes });
  }

  /** Records that library method `name` (e.g. `Database.connect`) was called. */
  method(name: string, attributes?: Attributes): void {
    this.recorder?.record({ type: 'method', name, at: Date.now(), attributes });
  }

  /** Records a custom event `name` with typed attributes (at most 32; strings are redacted). */
  event(name: string, attributes?: Attributes): void {
    this.recorder?.record({ type: 'custom', name, at: Date.now(), attributes });
  }

  /**
   * Writes this run's events to the queue and waits at most the exit budget for their delivery;
   * later events are not recorded. Call it before `process.exit()` to deliver this run's events
   * now rather than on the next run. Never rejects.
   */
  async shutdown(): Promise<void> {
    try {
      await this.recorder?.shutdown();
    } catch {
      // never fails the host
    }
  }

  /** @internal: for tests: persist synchronously as the exit handler does. */
  persistNow(): void {
    this.recorder?.persist();
  }
}

const DISABLED = new Telemetry(undefined, { consent: 'off', decidedBy: { layer: 'author_default' }, pseudonymEpoch: 'monthly', note: 'optel was not initialised' });

/** The process-global handle: a no-op until `Telemetry.init` ran with consent. */
export function global(): Telemetry {
  return GLOBAL ?? DISABLED;
}

/** Starts timing command `name` on the global handle (the Rust SDK's `track_command_execution`). */
export function trackCommand(name: string): CommandGuard {
  return (GLOBAL ?? DISABLED).trackCommand(name);
}

/** @internal: tests only. */
export function __resetForTests(): void {
  GLOBAL = undefined;
  INIT_CALLED = false;
}

function initWith(config: TelemetryConfig): Telemetry {
  let resolution = config.resolve();
  if (resolution.source.layer === 'author_default' && config.asking !== 'silent') {
    resolution = askOrTell(config, resolution);
  }
  const status: Status = { consent: resolution.consent, decidedBy: resolution.source, pseudonymEpoch: config.epoch };
  if (resolution.note) status.note = resolution.note;
  const endpoint = config.endpoint();
  if (endpoint) status.endpoint = endpoint;
  if (resolution.consent === 'off') return new Telemetry(undefined, status);
  try {
    const recorder = start(config, resolution.consent);
    status.dataDir = recorder.dataDir;
    status.pseudonymEpochLabel = recorder.epochLabel;
    return new Telemetry(recorder, status);
  } catch (e) {
    status.consent = 'off';
    status.note = (e as Error).message;
    return new Telemetry(undefined, status);
  }
}

/** The opt-in question or the notice, when the author's default was reached. */
function askOrTell(config: TelemetryConfig, resolution: Resolution): Resolution {
  const [stdinTty, stderrTty] = config.options.env ? [false, false] : interactive();
  // CI is checked last: it reads many variables, and without a terminal it is moot.
  const can = stdinTty && stderrTty && canAsk(true, true, ciVendor(config.envObj) !== undefined);
  const userFile = config.userConfigFile();
  if (userFile === undefined) return resolution;
  let noticeShown = false;
  try {
    noticeShown = readConsentFile(userFile)?.notice_shown ?? false;
  } catch {
    // broken file: treated as not shown
  }
  if (config.asking === 'opt-in') {
    if (!can) {
      return { ...resolution, note: `not asked (no interactive terminal, or CI): run \`${config.tool} telemetry enable\` to opt in` };
    }
    const answer = ask(config.tool, config.samplePayload());
    try {
      writeUserChoice(userFile, answer, noticeShown);
      return { consent: answer, source: { layer: 'user_config', path: userFile } };
    } catch (e) {
      return { consent: answer, source: resolution.source, note: `cannot keep your answer in ${userFile}: ${(e as Error).message}; you will be asked again` };
    }
  }
  if (config.asking === 'notice' && can && !noticeShown) {
    process.stderr.write(notice(config.tool));
    try {
      writeUserChoice(userFile, undefined, true);
    } catch {
      // shown again next time
    }
  }
  return resolution;
}

function start(config: TelemetryConfig, consent: Consent): Recorder {
  if (!isValidName(config.tool)) throw new Error(`tool name ${JSON.stringify(config.tool)} is not allowed: use [A-Za-z0-9_.:-], at most 64 bytes`);
  const dataDir = config.dataDir();
  if (!dataDir) throw new Error('no home directory to keep the telemetry queue in');
  createPrivateDir(dataDir);
  const label = epochLabel(config.epoch);
  // In CI every run of a vendor shares one pseudonym; no secret is created there.
  const vendor = ciVendor(config.envObj);
  const pseudo = vendor !== undefined ? ciPseudonym(vendor) : cachedPseudonym(dataDir, config.tool, label);
  const queue = consent === 'on' ? Queue.open(childPath(dataDir, 'queue')) : undefined;
  const delivers = consent === 'on' && config.delivers();
  const recorder = new Recorder(
    config,
    newBatch(config.tool, config.version, pseudo, rustOs(), rustArch()),
    formatUuidV4(randomBytes(16)),
    dataDir,
    label,
    config.exitBudgetMs(),
    config.ledger(dataDir),
    queue,
    delivers,
    config.batchEvents(),
  );
  process.on('exit', () => recorder.onExit());
  process.on('beforeExit', () => recorder.onBeforeExit());
  process.on('uncaughtExceptionMonitor', () => {
    recorder.uncaught = true;
  });
  // A run that finds a batch queued at start (what earlier runs left) sends it while the host
  // works; nothing here holds the process, and at a natural end the exit round joins the request
  // in flight. The timer is armed only when the queue is already due: the
  // first timer of a process costs ~0.35 ms of CPU (Node's timer lists are set up on first use),
  // one listing of the queue directory ~0.08 ms, and most runs find less than a batch queued
  // (sdk/js/BENCHMARKS.md, "Quiet machine").
  if (delivers && queue && dueForDelivery(queue.segmentsOrEmpty(), recorder.batchEvents, MAX_BATCH_DELAY_MS)) {
    const kick = setTimeout(() => {
      if (!queue || !dueForDelivery(queue.segmentsOrEmpty(), recorder.batchEvents, MAX_BATCH_DELAY_MS) || breakerOpen(dataDir)) return;
      void recorder.loadSender().then((sender) => {
        if (sender && !recorder.closed && sender.breaker.maySend()) {
          recorder.sentEarly = true;
          void sender.round(Date.now() + 10_000);
        }
      });
    }, BACKGROUND_ROUND_AFTER_MS);
    kick.unref();
  }
  return recorder;
}
