/**
 * Consent: whether telemetry runs at all, and which layer decided it. A port of
 * `crates/optel/src/consent.rs`; the shared table `sdk/fixtures/consent-precedence.json` pins both.
 *
 * Layers, highest first:
 *
 * | layer | where | example |
 * |---|---|---|
 * | `do_not_track` | environment | `DO_NOT_TRACK=1` |
 * | `tool_env` | environment | `ACME_TELEMETRY=off\|local\|on` |
 * | `project_policy` | `.optel.toml` in the working directory or a parent | `telemetry = "off"` |
 * | `user_config` | `<config dir>/optel/<tool>.toml` | `telemetry = "local"` |
 * | `shared_consent` | `<config dir>/optel/consent.toml` | `telemetry = "off"`, `[tools] acme = "on"` |
 * | `author_default` | `Telemetry.init({ defaultConsent })` | |
 *
 * A value that is not understood, or a file that cannot be parsed, turns telemetry off and says
 * so in `status` (fail closed). With `DO_NOT_TRACK=1` no file is even opened.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readSync, writeSync } from 'node:fs';
import { createPrivateDir, errCode, readPrivate, writePrivateAtomic } from './fsutil.js';
import { require, tty } from './lazy.js';
import { CI_ENV_NAMES } from './ci-env.js';

/** The consent state: `off` (nothing runs), `local` (a local ledger only), `on` (sent). */
export type Consent = 'off' | 'local' | 'on';

/** How the user is asked when no layer above the author's default decided. */
export type Asking = 'silent' | 'opt-in' | 'notice';

/** The stable names of the consent layers. */
export type Layer = 'do_not_track' | 'tool_env' | 'project_policy' | 'user_config' | 'shared_consent' | 'author_default';

/** The layer that decided, with its variable or file. */
export interface ConsentSource {
  layer: Layer;
  /** The environment variable, for `tool_env`. */
  variable?: string;
  /** The file, for file layers. */
  path?: string;
}

/** The outcome of resolution. */
export interface Resolution {
  consent: Consent;
  source: ConsentSource;
  note?: string;
}

/** The project policy file looked for in the working directory and its parents. */
export const PROJECT_POLICY_FILE = '.optel.toml';
const MAX_CONSENT_FILE_BYTES = 64 * 1024;
const MAX_WALK_UP = 64;

/** Parses a consent value: `off`/`0`/`false`/`no`/`disable(d)`, `local`, `on`/`1`/`true`/`yes`/`enable(d)`. */
export function parseConsent(v: string): Consent | undefined {
  switch (v.trim().toLowerCase()) {
    case 'off':
    case '0':
    case 'false':
    case 'no':
    case 'disable':
    case 'disabled':
      return 'off';
    case 'local':
      return 'local';
    case 'on':
    case '1':
    case 'true':
    case 'yes':
    case 'enable':
    case 'enabled':
      return 'on';
    default:
      return undefined;
  }
}

/** The variable prefix of a tool: upper-cased, every character outside `[A-Z0-9]` replaced by `_`. */
export function envPrefix(tool: string): string {
  let s = '';
  for (const c of tool) s += /[A-Za-z0-9]/.test(c) ? c.toUpperCase() : '_';
  return s;
}

/** `<config dir>/optel/<tool>.toml`. */
export function userConfigPath(configDir: string, tool: string): string {
  return join(configDir, 'optel', `${tool}.toml`);
}

/** `<config dir>/optel/consent.toml`. */
export function sharedConsentPath(configDir: string): string {
  return join(configDir, 'optel', 'consent.toml');
}

/** How `status` names a layer: `environment variable DO_NOT_TRACK`, `user config file …`. */
export function describeSource(s: ConsentSource): string {
  switch (s.layer) {
    case 'do_not_track':
      return 'environment variable DO_NOT_TRACK';
    case 'tool_env':
      return `environment variable ${s.variable ?? ''}`;
    case 'project_policy':
      return `project policy file ${s.path ?? ''}`;
    case 'user_config':
      return `user config file ${s.path ?? ''}`;
    case 'shared_consent':
      return `shared consent file ${s.path ?? ''}`;
    case 'author_default':
      return "the tool's default";
  }
}

/** `DO_NOT_TRACK` counts when set to anything but an empty string, `0` or `false`. */
export function isTruthy(v: string): boolean {
  const t = v.trim();
  return !(t === '' || t === '0' || t.toLowerCase() === 'false');
}

/** What resolution reads (injectable for tests). */
export interface Inputs {
  env: (name: string) => string | undefined;
  tool: string;
  cwd?: string | undefined;
  configDir?: string | undefined;
  default: Consent;
}

/** Resolves consent, highest layer first. */
export function resolveConsent(inputs: Inputs): Resolution {
  const { env } = inputs;
  const dnt = env('DO_NOT_TRACK');
  if (dnt !== undefined && isTruthy(dnt)) return { consent: 'off', source: { layer: 'do_not_track' } };
  const toolVar = `${envPrefix(inputs.tool)}_TELEMETRY`;
  const value = env(toolVar);
  if (value !== undefined) {
    const source: ConsentSource = { layer: 'tool_env', variable: toolVar };
    const c = parseConsent(value);
    if (c !== undefined) return { consent: c, source };
    return {
      consent: 'off',
      source,
      note: `${toolVar}=${JSON.stringify(value)} is not understood, so telemetry is off: use off, local or on`,
    };
  }
  if (inputs.cwd !== undefined) {
    const path = findProjectPolicy(inputs.cwd);
    if (path !== undefined) {
      const r = fromFile(path, inputs.tool, true, 'project_policy');
      if (r) return r;
    }
  }
  if (inputs.configDir !== undefined) {
    const r = fromFile(userConfigPath(inputs.configDir, inputs.tool), inputs.tool, false, 'user_config');
    if (r) return r;
    const s = fromFile(sharedConsentPath(inputs.configDir), inputs.tool, true, 'shared_consent');
    if (s) return s;
  }
  return { consent: inputs.default, source: { layer: 'author_default' } };
}

/** The nearest `.optel.toml` in `cwd` or its parents. */
export function findProjectPolicy(cwd: string): string | undefined {
  let dir = cwd;
  for (let i = 0; i < MAX_WALK_UP; i++) {
    const p = join(dir, PROJECT_POLICY_FILE);
    try {
      if (statSync(p, { throwIfNoEntry: false })?.isFile()) return p;
    } catch {
      // not here (ENOTDIR, EACCES)
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
  return undefined;
}

/** The shape of every consent file; unknown keys are ignored. */
export interface ConsentFile {
  telemetry?: string;
  tools: Record<string, string>;
  notice_shown: boolean;
}

/** The part of `smol-toml` used here. */
interface SmolToml {
  parse(text: string, options?: { integersAsBigInt?: boolean }): Record<string, unknown>;
}

let toml: SmolToml | undefined;

/** Reads a consent file: `undefined` when it does not exist; throws a message when it is broken. */
export function readConsentFile(path: string): ConsentFile | undefined {
  let size: number;
  try {
    // No exception for a missing file (the common case): they cost more than the lookup.
    const st = statSync(path, { throwIfNoEntry: false });
    if (st === undefined) return undefined;
    size = st.size;
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return undefined;
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  if (size > MAX_CONSENT_FILE_BYTES) {
    throw new Error(`${path} is ${size} bytes, more than the limit of ${MAX_CONSENT_FILE_BYTES}: shorten it`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    // Loaded on first use: most runs with telemetry off never read a file.
    toml ??= require('smol-toml') as SmolToml;
    doc = toml.parse(text);
  } catch (e) {
    throw new Error(`${path} is not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  // The same types serde demands in the Rust SDK: a wrong type is a broken file.
  const out: ConsentFile = { tools: {}, notice_shown: false };
  if (doc.telemetry !== undefined) {
    if (typeof doc.telemetry !== 'string') throw new Error(`${path} is not valid TOML: telemetry must be a string`);
    out.telemetry = doc.telemetry;
  }
  if (doc.tools !== undefined) {
    if (typeof doc.tools !== 'object' || doc.tools === null || Array.isArray(doc.tools)) {
      throw new Error(`${path} is not valid TOML: tools must be a table`);
    }
    for (const [k, v] of Object.entries(doc.tools as Record<string, unknown>)) {
      if (typeof v !== 'string') throw new Error(`${path} is not valid TOML: tools.${k} must be a string`);
      out.tools[k] = v;
    }
  }
  if (doc.notice_shown !== undefined) {
    if (typeof doc.notice_shown !== 'boolean') throw new Error(`${path} is not valid TOML: notice_shown must be a boolean`);
    out.notice_shown = doc.notice_shown;
  }
  return out;
}

function fromFile(path: string, tool: string, withToolsTable: boolean, layer: Layer): Resolution | undefined {
  let file: ConsentFile | undefined;
  try {
    file = readConsentFile(path);
  } catch (e) {
    return { consent: 'off', source: { layer, path }, note: `${(e as Error).message}; telemetry is off until it is fixed` };
  }
  if (!file) return undefined;
  const value = withToolsTable ? (Object.prototype.hasOwnProperty.call(file.tools, tool) ? file.tools[tool] : file.telemetry) : file.telemetry;
  if (value === undefined) return undefined;
  const c = parseConsent(value);
  if (c !== undefined) return { consent: c, source: { layer, path } };
  return {
    consent: 'off',
    source: { layer, path },
    note: `${path}: telemetry = ${JSON.stringify(value)} is not understood, so telemetry is off: use off, local or on`,
  };
}

/**
 * Writes the user's choice to the per-tool config file `<config dir>/optel/<tool>.toml`, with
 * `notice_shown`: a port of `consent.rs` `write_user_choice` with `seen = None` (this SDK has no
 * catalog), pinned by `sdk/fixtures/user-choice-rewrite.json`. The file is shared with a Rust
 * tool of the same name, so every other line of it (the user's `exporter`,
 * `local_retention_days`, `[upload]`, comments, a tool's own keys) is kept as it was; only the
 * top-level `telemetry`, `notice_shown` and `seen_categories` keys are replaced, and the data
 * categories the file lists in `seen_categories` are written back. `consent` `undefined` writes
 * no `telemetry` key (the notice was shown, nothing was chosen).
 *
 * The old file is read as `consent.rs` reads it (no link followed, regular files only, at most
 * 64 KiB, UTF-8): one that cannot be read counts as empty. The new text replaces it atomically
 * (a temporary file, then a rename), created 0600.
 *
 * @throws when the directory or the file cannot be written.
 */
export function writeUserChoice(path: string, consent: Consent | undefined, noticeShown: boolean): void {
  let old = '';
  try {
    old = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(readPrivate(path, MAX_CONSENT_FILE_BYTES));
  } catch {
    // missing, a link, too large or not UTF-8: written from scratch, as the Rust SDK does
  }
  const isKey = (line: string, key: string) => {
    const t = trimStart(line);
    return t.startsWith(key) && trimStart(t.slice(key.length)).startsWith('=');
  };
  // Top-level keys must come before the first table header. A value may span lines (an
  // array): its lines go with its key, kept or replaced together.
  const top: string[] = [];
  const tables: string[] = [];
  let replaced = false;
  let depth = 0;
  for (const line of rustLines(old)) {
    if (depth <= 0) {
      if (tables.length > 0 || trimStart(line).startsWith('[')) {
        tables.push(line);
        continue;
      }
      replaced = WRITTEN_KEYS.some((key) => isKey(line, key)) || trim(line) === SEEN_CATEGORIES_COMMENT;
    }
    depth += bracketDepth(line);
    if (!replaced) top.push(line);
  }
  while (top.length > 0 && trim(top[top.length - 1]!) === '') top.pop();
  let text = top.length === 0 ? '# optel telemetry settings of this tool (see `<tool> telemetry status`).\n' : top.join('\n') + '\n';
  if (consent !== undefined) text += `telemetry = "${consent}"\n`;
  if (noticeShown) text += 'notice_shown = true\n';
  const kept = seenCategories(old);
  if (kept.length > 0) {
    text += `${SEEN_CATEGORIES_COMMENT}\nseen_categories = [\n`;
    // Categories are built from wire names ([A-Za-z0-9_.:-]): no escaping is needed, and
    // anything else is left out rather than written as broken TOML.
    for (const c of kept) if (/^[A-Za-z0-9_.:-]*$/.test(c)) text += `  "${c}",\n`;
    text += ']\n';
  }
  if (tables.length > 0) text += '\n' + tables.join('\n') + '\n';
  createPrivateDir(dirname(path));
  writePrivateAtomic(path, text);
}

/** The comment written above `seen_categories`, replaced with it (`consent.rs`). */
const SEEN_CATEGORIES_COMMENT = '# Data categories you have been shown (`<tool> telemetry preview`).';

/** The top-level keys of the per-tool file that `writeUserChoice` writes itself. */
const WRITTEN_KEYS = ['telemetry', 'notice_shown', 'seen_categories'] as const;

/** Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` uses. */
const RUST_WS = '\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const LEADING_WS = new RegExp(`^[${RUST_WS}]+`);
const TRAILING_WS = new RegExp(`[${RUST_WS}]+$`);

/** Rust's `str::trim_start` (JavaScript's also trims U+FEFF, and not U+0085). */
function trimStart(s: string): string {
  return s.replace(LEADING_WS, '');
}

/** Rust's `str::trim`. */
function trim(s: string): string {
  return trimStart(s).replace(TRAILING_WS, '');
}

/**
 * Rust's `str::lines`: split at `\n` or `\r\n`, no empty line after a final line ending (a
 * bare `\r` at the very end stays).
 */
function rustLines(text: string): string[] {
  const lines = text.split('\n');
  const last = lines.pop()!;
  const out = lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (last !== '') out.push(last);
  return out;
}

/**
 * How many brackets a TOML line opens minus how many it closes, outside strings and comments
 * (`consent.rs` `bracket_depth`).
 */
function bracketDepth(line: string): number {
  let depth = 0;
  let quote: string | undefined;
  let escaped = false;
  for (const c of line) {
    if (quote !== undefined) {
      if (escaped) escaped = false;
      else if (c === '\\' && quote === '"') escaped = true;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#') {
      break;
    } else if (c === '[') {
      depth += 1;
    } else if (c === ']') {
      depth -= 1;
    }
  }
  return depth;
}

/**
 * The `seen_categories` of a per-tool file's text, as the Rust SDK reads them: the whole file is
 * decoded with the types of `consent.rs` `ConsentFile`, and a file that is not valid TOML, or
 * has a known key of the wrong type, lists none.
 */
function seenCategories(text: string): string[] {
  let doc: Record<string, unknown>;
  try {
    toml ??= require('smol-toml') as SmolToml;
    // Integers as BigInt: `local_retention_days = 3.0` is a float, which serde refuses for a u32.
    doc = toml.parse(text, { integersAsBigInt: true });
  } catch {
    return [];
  }
  const isTable = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
  const optional = (v: unknown, ok: (v: unknown) => boolean) => v === undefined || ok(v);
  const isString = (v: unknown) => typeof v === 'string';
  const u32 = (v: unknown) => typeof v === 'bigint' && v >= 0n && v <= 0xffff_ffffn;
  const upload = doc.upload;
  const fits =
    optional(doc.telemetry, isString) &&
    optional(doc.tools, (t) => isTable(t) && Object.values(t).every(isString)) &&
    optional(doc.notice_shown, (v) => typeof v === 'boolean') &&
    optional(doc.seen_categories, (v) => Array.isArray(v) && v.every(isString)) &&
    optional(doc.exporter, isString) &&
    optional(doc.local_retention_days, u32) &&
    optional(upload, (u) => isTable(u) && optional(u.endpoint, isString) && optional(u.compression, isString));
  return fits && Array.isArray(doc.seen_categories) ? (doc.seen_categories as string[]) : [];
}

/** `GitHub Actions` → `github-actions`: the pseudonym charset. */
export function slug(name: string): string {
  let out = '';
  for (const c of name) {
    if (/[A-Za-z0-9]/.test(c)) out += c.toLowerCase();
    else if (!out.endsWith('-') && out.length > 0) out += '-';
  }
  const s = out.replace(/-+$/, '').slice(0, 40);
  return s.length === 0 ? 'unknown' : s;
}

/** The CI vendor slug when running in CI (the maintained `ci-info` detection), else `undefined`. */
export function ciVendor(env: NodeJS.ProcessEnv = process.env): string | undefined {
  // ci-info needs one of these to detect anything: without them, skip loading it.
  if (!CI_ENV_NAMES.some((n) => env[n] !== undefined)) return undefined;
  const info = require('ci-info') as { isCI: boolean; name: string | null };
  if (!info.isCI) return undefined;
  return slug(info.name ?? 'unknown');
}

/** Whether the user can be asked: stdin and stderr are terminals and this is not CI. */
export function canAsk(stdinTty: boolean, stderrTty: boolean, inCi: boolean): boolean {
  return stdinTty && stderrTty && !inCi;
}

/** Whether stdin and stderr are both terminals (without opening `process.stdin`). */
export function interactive(): [boolean, boolean] {
  return [tty().isatty(0), tty().isatty(2)];
}

/** The opt-in question (the Rust SDK's text). */
export function question(tool: string): string {
  return (
    `\n${tool} can send anonymous usage statistics to its authors, to learn which commands are used and how often they fail.\n` +
    `Collected: command names, durations, success or an error code, the ${tool} version, the OS and CPU architecture, and a random pseudonym that changes every month.\n` +
    'Never collected: arguments, file paths or contents, user names, host names, IP addresses or environment variables.\n' +
    `Change your mind at any time with \`${tool} telemetry disable\` (or \`local\` to keep the data on this machine only), or set DO_NOT_TRACK=1.\n`
  );
}

/** The one-time notice (the Rust SDK's text). */
export function notice(tool: string): string {
  return (
    `${tool} collects anonymous usage statistics (command names, durations, error codes, version, OS): never arguments, paths or user data. ` +
    `See \`${tool} telemetry preview\`; turn it off with \`${tool} telemetry disable\` or DO_NOT_TRACK=1. This notice is shown once.\n`
  );
}

/** Reads one line from fd 0, synchronously (init is synchronous: nothing is recorded before the answer). */
function readLineSync(): string | undefined {
  const buf = Buffer.alloc(256);
  let line = '';
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      if (errCode(e) === 'EAGAIN') continue;
      return line.length > 0 ? line : undefined;
    }
    if (n === 0) return line.length > 0 ? line : undefined;
    line += buf.subarray(0, n).toString('utf8');
    const nl = line.indexOf('\n');
    if (nl >= 0) return line.slice(0, nl);
    if (line.length > 4096) return line;
  }
}

/**
 * The opt-in question: what is collected, what never is, a sample payload on request; yes / no /
 * show me the data. Anything unreadable means no. `readLine` and `write` are injectable for tests.
 */
export function ask(
  tool: string,
  sample: string,
  readLine: () => string | undefined = readLineSync,
  write: (s: string) => void = (s) => {
    writeSync(2, s);
  },
): Consent {
  write(question(tool));
  for (;;) {
    write(`[y] yes, help improve ${tool}  [n] no thanks  [s] show me the data: `);
    const line = readLine();
    if (line === undefined) return 'off';
    switch (line.trim().toLowerCase()) {
      case 'y':
      case 'yes':
        return 'on';
      case 'n':
      case 'no':
      case '':
        return 'off';
      case 's':
      case '?':
      case 'show':
        write(`\nThis is what one run sends (an example):\n${sample}\n\n`);
        break;
      default:
        break;
    }
  }
}
