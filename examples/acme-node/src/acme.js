// The acme tool itself: no telemetry in here. Mirrors examples/acme/src/main.rs.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parse } from 'smol-toml';

export const VERSION = '0.1.0';
export const COMMANDS = ['init', 'build', 'check', 'test'];

export function usage() {
  return [
    'A small build tool (the optel example, in Node.js)',
    '',
    'Usage: acme-node <COMMAND>',
    '',
    'Commands:',
    '  init       Create a new project in DIR',
    '  build      Build the project in DIR into DIR/target',
    '  check      Validate the manifest of the project in DIR',
    '  test       Build, then check the output against DIR/tests/*.expect',
    '  telemetry  See and change what telemetry acme-node records and sends',
    '',
  ].join('\n');
}

/** A failure with a stable code (recorded) and a message for the user (never recorded). */
export class Failure extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const ioFail = (what, path, e) => new Failure('E_IO', `cannot ${what} ${path}: ${e.message}`);

export function run(command, dir) {
  switch (command) {
    case 'init':
      return init(dir);
    case 'check': {
      const m = load(dir);
      return `${m.package.name} ${m.package.version}: manifest ok`;
    }
    case 'build': {
      const [m, out] = build(dir);
      return `built ${m.package.name} ${m.package.version} into ${out}`;
    }
    case 'test':
      return test(dir);
    default:
      throw new Failure('E_USAGE', `unknown command ${command}`);
  }
}

function init(dir) {
  const manifest = join(dir, 'acme.toml');
  if (existsSync(manifest)) throw new Failure('E_ALREADY_INITIALIZED', `${manifest} exists already`);
  const base = basename(resolve(dir));
  const name = base.length > 0 && /^[A-Za-z0-9_-]+$/.test(base) ? base : 'app';
  const src = join(dir, 'src');
  try {
    mkdirSync(src, { recursive: true });
  } catch (e) {
    throw ioFail('create', src, e);
  }
  const main = join(src, 'main.txt');
  try {
    writeFileSync(main, 'hello from acme\n');
    writeFileSync(manifest, `[package]\nname = "${name}"\nversion = "0.1.0"\n\n[build]\nsources = ["src/main.txt"]\n`);
  } catch (e) {
    throw ioFail('write', manifest, e);
  }
  return `created project ${name} in ${dir}`;
}

function load(dir) {
  const path = join(dir, 'acme.toml');
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
      file = statSync(join(dir, source)).isFile();
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

function build(dir) {
  const m = load(dir);
  let output = '';
  for (const source of m.build.sources) {
    const path = join(dir, source);
    try {
      output += readFileSync(path, 'utf8');
    } catch (e) {
      throw ioFail('read', path, e);
    }
  }
  const target = join(dir, 'target');
  const out = join(target, `${m.package.name}.out`);
  try {
    mkdirSync(target, { recursive: true });
    writeFileSync(out, output);
  } catch (e) {
    throw ioFail('write', out, e);
  }
  return [m, out];
}

function test(dir) {
  const [, out] = build(dir);
  const output = readFileSync(out, 'utf8');
  const expectations = [];
  let entries = [];
  try {
    entries = readdirSync(join(dir, 'tests'));
  } catch {
    entries = [];
  }
  for (const name of entries) {
    if (!name.endsWith('.expect')) continue;
    const path = join(dir, 'tests', name);
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
