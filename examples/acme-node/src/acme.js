// The acme tool itself: no telemetry in here. Mirrors examples/acme/src/main.rs: the same
// commands, flags, messages, output paths, help texts (clap's layout) and exit statuses.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, resolve, sep } from 'node:path';
import { parse } from 'smol-toml';

export const VERSION = '0.1.0';
export const COMMANDS = ['init', 'build', 'check', 'test'];

const TOOL = 'acme-node';
/** What each command does: the first line of its help, and its line in the top-level help. */
const ABOUT = {
  init: 'Create a new project in DIR',
  build: 'Build the project in DIR into DIR/target',
  check: 'Validate the manifest of the project in DIR',
  test: 'Build, then check the output against DIR/tests/*.expect',
};
/** The one flag a command takes, if any (clap's `#[arg(long)] bool`). */
const FLAG = {
  build: { name: 'release', help: 'Build into DIR/target/release' },
  check: { name: 'strict', help: 'Also require at least one source, and no empty source' },
};

/** The top-level help (`acme-node --help`), laid out as clap lays out acme's. */
export function usage() {
  return [
    'A small build tool (the optel example, in Node.js)',
    '',
    `Usage: ${TOOL} <COMMAND>`,
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.padEnd(9)}  ${ABOUT[c]}`),
    `  telemetry  See and change what telemetry ${TOOL} records and sends`,
    '  help       Print this message or the help of the given subcommand(s)',
    '',
    'Options:',
    '  -h, --help     Print help',
    '  -V, --version  Print version',
    '',
  ].join('\n');
}

/** The help of one command (`acme-node build --help`), laid out as clap lays out acme's. */
export function commandHelp(command) {
  const flag = FLAG[command];
  const options = [...(flag ? [[`      --${flag.name}`, flag.help]] : []), ['  -h, --help', 'Print help']];
  const width = Math.max(...options.map(([left]) => left.length));
  return [
    ABOUT[command],
    '',
    `Usage: ${TOOL} ${command} ${flag ? '[OPTIONS] ' : ''}<DIR>`,
    '',
    'Arguments:',
    '  <DIR>  ',
    '',
    'Options:',
    ...options.map(([left, help]) => `${left.padEnd(width)}  ${help}`),
    '',
  ].join('\n');
}

/** A usage error as clap prints it: the error, a tip, the usage line, the pointer to --help. */
function usageError(error, usageLine, tip) {
  const tipLines = tip ? ['', `  tip: ${tip}`] : [];
  return { kind: 'usage', text: [`error: ${error}`, ...tipLines, '', `Usage: ${usageLine}`, '', "For more information, try '--help'.", ''].join('\n') };
}

/**
 * Parses the arguments after `acme-node` as clap parses acme's. Returns one of
 * `{kind: 'run', command, dir, release, strict}`, `{kind: 'help', text}` (stdout, status 0),
 * `{kind: 'version'}`, `{kind: 'telemetry', args}` (for the SDK's subcommand) or
 * `{kind: 'usage', text}` (stderr, status 2). Never throws.
 *
 * Flags may come before or after DIR, at most once each; `--` ends the flags. Not mirrored:
 * clap's "a similar subcommand/argument exists" tips for misspellings.
 */
export function parseArgs(argv) {
  const [first, ...rest] = argv;
  if (first === undefined) return { kind: 'usage', text: usage() };
  if (first === '-h' || first === '--help') return { kind: 'help', text: usage() };
  if (first === '-V' || first === '--version') return { kind: 'version' };
  if (first === 'telemetry') return { kind: 'telemetry', args: rest };
  if (first === 'help') {
    const [command, extra] = rest;
    if (command === undefined) return { kind: 'help', text: usage() };
    if (command === 'telemetry') return { kind: 'telemetry', args: ['--help'] };
    if (!COMMANDS.includes(command)) return usageError(`unrecognized subcommand '${command}'`, `${TOOL} <COMMAND>`);
    if (extra !== undefined) return usageError(`unrecognized subcommand '${extra}'`, fullUsage(command));
    return { kind: 'help', text: commandHelp(command) };
  }
  if (first.startsWith('-')) return usageError(`unexpected argument '${first}' found`, `${TOOL} <COMMAND>`);
  if (!COMMANDS.includes(first)) return usageError(`unrecognized subcommand '${first}'`, `${TOOL} <COMMAND>`);
  return parseCommand(first, rest);
}

/** The usage line with every option: `acme-node build [OPTIONS] <DIR>`. */
const fullUsage = (command) => `${TOOL} ${command} ${FLAG[command] ? '[OPTIONS] ' : ''}<DIR>`;

function parseCommand(command, args) {
  // clap answers --help before anything else is checked.
  const end = args.indexOf('--');
  if (args.slice(0, end < 0 ? args.length : end).some((a) => a === '-h' || a === '--help')) return { kind: 'help', text: commandHelp(command) };
  const flag = FLAG[command];
  let flagSet = false;
  let dir;
  let positional = false;
  // clap's "smart" usage line, as in its errors for a missing DIR or an unknown long flag: the
  // flags used so far, then <DIR>.
  const smartUsage = () => `${TOOL} ${command} ${flagSet ? `--${flag.name} ` : ''}<DIR>`;
  for (const arg of args) {
    if (!positional && arg === '--') {
      positional = true;
    } else if (!positional && flag && arg === `--${flag.name}`) {
      if (flagSet) return usageError(`the argument '--${flag.name}' cannot be used multiple times`, fullUsage(command));
      flagSet = true;
    } else if (!positional && flag && arg.startsWith(`--${flag.name}=`)) {
      flagSet = true;
      return usageError(`unexpected value '${arg.slice(flag.name.length + 3)}' for '--${flag.name}' found; no more were expected`, smartUsage());
    } else if (!positional && arg.startsWith('-') && arg !== '-') {
      const tip = `to pass '${arg}' as a value, use '-- ${arg}'`;
      return usageError(`unexpected argument '${arg}' found`, arg.startsWith('--') ? smartUsage() : fullUsage(command), tip);
    } else if (dir === undefined) {
      dir = arg;
    } else {
      return usageError(`unexpected argument '${arg}' found`, fullUsage(command));
    }
  }
  if (dir === undefined) {
    return { kind: 'usage', text: `error: the following required arguments were not provided:\n  <DIR>\n\nUsage: ${smartUsage()}\n\nFor more information, try '--help'.\n` };
  }
  if (dir === '') return { kind: 'usage', text: "error: a value is required for '<DIR>' but none was supplied\n\nFor more information, try '--help'.\n" };
  return { kind: 'run', command, dir, release: command === 'build' && flagSet, strict: command === 'check' && flagSet };
}

/**
 * Rust's `Path::join`, so that paths (and the messages that show them) are acme's byte for
 * byte: no normalisation (`./app` stays `./app`), and an absolute part replaces what came before.
 */
function pathJoin(base, ...parts) {
  let out = base;
  for (const part of parts) out = isAbsolute(part) ? part : out === '' || out.endsWith(sep) ? out + part : out + sep + part;
  return out;
}

/** A failure with a stable code (recorded) and a message for the user (never recorded). */
export class Failure extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const ioFail = (what, path, e) => new Failure('E_IO', `cannot ${what} ${path}: ${e.message}`);

/**
 * Runs `command` on the project in `dir` and returns what to print on stdout; throws a
 * {@link Failure}. `options.release` (build into `DIR/target/release`) applies to `build`,
 * `options.strict` (at least one source, none empty) to `check`; both default to false.
 */
export function run(command, dir, options = {}) {
  switch (command) {
    case 'init':
      return init(dir);
    case 'check': {
      const m = load(dir);
      if (options.strict) strictCheck(dir, m);
      return `${m.package.name} ${m.package.version}: manifest ok`;
    }
    case 'build': {
      const [m, out] = build(dir, options.release === true);
      return `built ${m.package.name} ${m.package.version} into ${out}`;
    }
    case 'test':
      return test(dir);
    default:
      throw new Failure('E_USAGE', `unknown command ${command}`);
  }
}

function init(dir) {
  const manifest = pathJoin(dir, 'acme.toml');
  if (existsSync(manifest)) throw new Failure('E_ALREADY_INITIALIZED', `${manifest} exists already`);
  const base = basename(resolve(dir));
  const name = base.length > 0 && /^[A-Za-z0-9_-]+$/.test(base) ? base : 'app';
  const src = pathJoin(dir, 'src');
  try {
    mkdirSync(src, { recursive: true });
  } catch (e) {
    throw ioFail('create', src, e);
  }
  const main = pathJoin(src, 'main.txt');
  try {
    writeFileSync(main, 'hello from acme\n');
  } catch (e) {
    throw ioFail('write', main, e);
  }
  try {
    writeFileSync(manifest, `[package]\nname = "${name}"\nversion = "0.1.0"\n\n[build]\nsources = ["src/main.txt"]\n`);
  } catch (e) {
    throw ioFail('write', manifest, e);
  }
  return `created project ${name} in ${dir}`;
}

function load(dir) {
  const path = pathJoin(dir, 'acme.toml');
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') throw new Failure('E_NO_MANIFEST', `no acme.toml in ${dir}: create a project with \`acme-node init DIR\``);
    throw ioFail('read', path, e);
  }
  let m;
  try {
    m = parse(text);
    checkShape(m);
  } catch (e) {
    throw new Failure('E_INVALID_MANIFEST', `${path} is not a valid manifest: ${e.message}`);
  }
  if (m.package.name.length === 0) throw new Failure('E_INVALID_MANIFEST', 'package.name must not be empty');
  const parts = m.package.version.split('.');
  if (parts.length !== 3 || !parts.every((p) => /^[0-9]+$/.test(p))) {
    throw new Failure('E_INVALID_MANIFEST', `package.version ${JSON.stringify(m.package.version)} is not MAJOR.MINOR.PATCH`);
  }
  for (const source of m.build.sources) {
    let file = false;
    try {
      file = statSync(pathJoin(dir, source)).isFile();
    } catch {
      file = false;
    }
    if (!file) throw new Failure('E_MISSING_SOURCE', `source ${JSON.stringify(source)} does not exist`);
  }
  return m;
}

/** The Rust example's `deny_unknown_fields` schema. */
function checkShape(m) {
  const only = (obj, keys, where) => {
    for (const k of Object.keys(obj)) if (!keys.includes(k)) throw new Error(`unknown field \`${k}\` in ${where}`);
  };
  only(m, ['package', 'build'], 'the manifest');
  if (typeof m.package !== 'object' || m.package === null) throw new Error('missing field `package`');
  only(m.package, ['name', 'version'], '[package]');
  if (typeof m.package.name !== 'string') throw new Error('missing field `name`');
  if (typeof m.package.version !== 'string') throw new Error('missing field `version`');
  m.build ??= {};
  only(m.build, ['sources'], '[build]');
  m.build.sources ??= [];
  if (!Array.isArray(m.build.sources) || !m.build.sources.every((s) => typeof s === 'string')) throw new Error('build.sources must be a list of strings');
}

/** `check --strict`: at least one source, and none empty. */
function strictCheck(dir, m) {
  if (m.build.sources.length === 0) throw new Failure('E_STRICT', 'build.sources is empty (--strict)');
  for (const source of m.build.sources) {
    const path = pathJoin(dir, source);
    let size;
    try {
      size = statSync(path).size;
    } catch (e) {
      throw ioFail('read', path, e);
    }
    if (size === 0) throw new Failure('E_STRICT', `source ${JSON.stringify(source)} is empty (--strict)`);
  }
}

function build(dir, release) {
  const m = load(dir);
  let output = '';
  for (const source of m.build.sources) {
    const path = pathJoin(dir, source);
    try {
      output += readFileSync(path, 'utf8');
    } catch (e) {
      throw ioFail('read', path, e);
    }
  }
  const target = release ? pathJoin(dir, 'target', 'release') : pathJoin(dir, 'target');
  try {
    mkdirSync(target, { recursive: true });
  } catch (e) {
    throw ioFail('create', target, e);
  }
  const out = pathJoin(target, `${m.package.name}.out`);
  try {
    writeFileSync(out, output);
  } catch (e) {
    throw ioFail('write', out, e);
  }
  return [m, out];
}

function test(dir) {
  const [, out] = build(dir, false);
  const output = readFileSync(out, 'utf8');
  const expectations = [];
  let entries = [];
  try {
    entries = readdirSync(pathJoin(dir, 'tests'));
  } catch {
    entries = [];
  }
  for (const name of entries) {
    if (!name.endsWith('.expect')) continue;
    const path = pathJoin(dir, 'tests', name);
    let text;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw ioFail('read', path, e);
    }
    expectations.push(...text.split('\n').filter((l) => l.trim().length > 0));
  }
  const failed = expectations.filter((line) => !output.includes(line));
  if (failed.length > 0) {
    throw new Failure('E_TEST_FAILED', `${failed.length} of ${expectations.length} expectations not met, first: ${JSON.stringify(failed[0])}`);
  }
  return `${expectations.length} expectations met`;
}
