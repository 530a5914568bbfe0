// The shared-fixture conformance suite (JavaScript side): the same data files the Rust SDK's
// tests read. A change to either SDK that breaks a shared case fails both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redact } from '../src/redact.js';
import { type Consent, envPrefix, resolveConsent, slug, userConfigPath, writeUserChoice } from '../src/consent.js';
import { epochLabel, forgetProof, pseudonym, recentEpochLabels } from '../src/identity.js';
import { createHash } from 'node:crypto';
import { batchToJson, catalogJson, formatUuidV4, validateBatch, type Batch, type IngestResponse, type ErrorBody, type WireEvent, canonicalBatch, Invalid } from '../src/wire.js';
import { FIXTURES, GOLDEN } from './paths.js';

const load = (name: string) => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));

test('redaction table (sdk/fixtures/redaction.json)', () => {
  const f = load('redaction.json') as { min_cases: number; cases: { input: string; expected: string }[] };
  assert.ok(f.cases.length >= f.min_cases, `${f.cases.length} cases, at least ${f.min_cases} expected`);
  const failures: string[] = [];
  for (const c of f.cases) {
    const got = redact(c.input);
    if (got !== c.expected) failures.push(`${JSON.stringify(c.input)}: got ${JSON.stringify(got)}, want ${JSON.stringify(c.expected)}`);
    if (redact(got) !== got) failures.push(`${JSON.stringify(c.input)}: redacting twice changed ${JSON.stringify(got)}`);
  }
  assert.deepEqual(failures, []);
});

test('consent precedence table (sdk/fixtures/consent-precedence.json)', () => {
  const f = load('consent-precedence.json') as {
    tool: string;
    cases: { name?: string; env: Record<string, string>; files: { project?: string; user?: string; shared?: string }; default: Consent; expect: { consent: Consent; layer: string; note_contains?: string } }[];
  };
  assert.ok(f.cases.length >= 48);
  for (const c of f.cases) {
    const t = mkdtempSync(join(tmpdir(), 'optel-consent-'));
    try {
      const config = join(t, 'config');
      const project = join(t, 'project');
      const cwd = join(project, 'src', 'deep');
      mkdirSync(cwd, { recursive: true });
      mkdirSync(join(config, 'optel'), { recursive: true });
      const paths = { project: join(project, '.optel.toml'), user: join(config, 'optel', `${f.tool}.toml`), shared: join(config, 'optel', 'consent.toml') };
      if (c.files.project !== undefined) writeFileSync(paths.project, c.files.project);
      if (c.files.user !== undefined) writeFileSync(paths.user, c.files.user);
      if (c.files.shared !== undefined) writeFileSync(paths.shared, c.files.shared);
      const r = resolveConsent({ env: (k) => c.env[k], tool: f.tool, cwd, configDir: config, default: c.default });
      const label = JSON.stringify(c);
      assert.equal(r.consent, c.expect.consent, label);
      assert.equal(r.source.layer, c.expect.layer, label);
      const wantPath = { project_policy: paths.project, user_config: paths.user, shared_consent: paths.shared }[c.expect.layer as 'project_policy'];
      assert.equal(r.source.path, wantPath, label);
      if (c.expect.note_contains) assert.ok(r.note?.includes(c.expect.note_contains), `${label}: note ${r.note}`);
    } finally {
      rmSync(t, { recursive: true, force: true });
    }
  }
});

// (Regression: writeUserChoice rewrote the per-tool file, shared with a Rust tool of the same
// name, from scratch: `telemetry enable` dropped the user's `exporter = "file"`, `[upload]` and
// `seen_categories`, and the next Rust run sent to the network endpoint.)
test('user choice rewrite (sdk/fixtures/user-choice-rewrite.json): the text the Rust SDK writes', () => {
  const f = load('user-choice-rewrite.json') as {
    cases: { name: string; before: string | null; consent: Consent | null; notice_shown: boolean; after: string }[];
  };
  assert.ok(f.cases.length >= 10, `${f.cases.length} cases`);
  const failures: string[] = [];
  for (const c of f.cases) {
    const t = mkdtempSync(join(tmpdir(), 'optel-choice-'));
    try {
      const path = userConfigPath(t, 'acme');
      if (c.before !== null) {
        mkdirSync(join(t, 'optel'), { recursive: true });
        writeFileSync(path, c.before);
      }
      writeUserChoice(path, c.consent ?? undefined, c.notice_shown);
      const got = readFileSync(path, 'utf8');
      if (got !== c.after) failures.push(`${c.name}:\n got ${JSON.stringify(got)}\nwant ${JSON.stringify(c.after)}`);
      if (process.platform !== 'win32' && (statSync(path).mode & 0o777) !== 0o600) failures.push(`${c.name}: mode ${(statSync(path).mode & 0o777).toString(8)}`);
    } finally {
      rmSync(t, { recursive: true, force: true });
    }
  }
  assert.deepEqual(failures, []);
});

test('pseudonym vectors (sdk/fixtures/pseudonym-vectors.json)', () => {
  const f = load('pseudonym-vectors.json');
  for (const v of f.pseudonyms) assert.equal(pseudonym(Buffer.from(v.secret_hex, 'hex'), v.tool, v.epoch), v.pseudonym, JSON.stringify(v));
  for (const v of f.epoch_labels) {
    for (const k of ['monthly', 'weekly', 'never'] as const) assert.equal(epochLabel(k, v.unix_s * 1000), v[k], `${k} ${v.unix_s}`);
  }
  for (const v of f.recent_epoch_labels) {
    const labels = recentEpochLabels(v.kind, v.unix_s * 1000, v.max);
    assert.equal(labels.length, v.count);
    assert.equal(labels[0], v.first);
    if (v.last) assert.equal(labels[labels.length - 1], v.last);
  }
  for (const v of f.ci_slugs) assert.equal(slug(v.name), v.slug);
  for (const v of f.env_prefixes) assert.equal(envPrefix(v.tool), v.prefix);
  for (const v of f.uuid_v4) assert.equal(formatUuidV4(Buffer.from(v.bytes_hex, 'hex')), v.uuid);
  for (const v of f.forget_proofs) assert.equal(forgetProof(v.pseudonym, v.tool, v.timestamp), v.proof);
});

test('wire golden files (crates/optel-wire/tests/golden/) are what the JS SDK writes and reads', () => {
  const names = readdirSync(GOLDEN).sort();
  assert.deepEqual(names, ['batch_v1.json', 'batch_v2.json', 'error_v1.json', 'response_v1.json', 'response_v2.json'], 'a new golden file needs a JS check here');
  const text = readFileSync(join(GOLDEN, 'batch_v1.json'), 'utf8');
  const golden = JSON.parse(text) as Batch;
  validateBatch(golden);
  // Built field by field as the SDK builds events (fields in another order, metadata unsorted):
  const built: Batch = {
    events: golden.events.map((e) => ({ ...(e.metadata ? { metadata: Object.fromEntries(Object.entries(e.metadata).reverse()) } : {}), ...e, metadata: e.metadata ? Object.fromEntries(Object.entries(e.metadata).reverse()) : undefined })),
    arch: golden.arch,
    os: golden.os,
    pseudonym: golden.pseudonym,
    service_version: golden.service_version,
    service_name: golden.service_name,
    schema_version: 1,
    dropped_events: 0,
  } as Batch;
  for (const e of built.events) if (e.metadata === undefined) delete e.metadata;
  // Byte-identical to the golden file, pretty-printed as serde_json does (2 spaces).
  assert.equal(JSON.stringify(canonicalBatch(built), null, 2) + '\n', text);
  assert.equal(batchToJson(built), JSON.stringify(JSON.parse(text)));
  const response = JSON.parse(readFileSync(join(GOLDEN, 'response_v1.json'), 'utf8')) as IngestResponse;
  assert.deepEqual(Object.keys(response), ['accepted', 'duplicates']);
  const error = JSON.parse(readFileSync(join(GOLDEN, 'error_v1.json'), 'utf8')) as ErrorBody;
  assert.equal(error.error.code, 'invalid_field');
  assert.equal(error.error.field, 'events[0].name');
  // The JS validator refuses the same name with the same field path.
  const bad = structuredClone(golden);
  bad.events[0]!.name = 'bad name';
  assert.throws(() => validateBatch(bad), (e: Error & { field?: string }) => e.field === 'events[0].name' && e.message.includes("' '"));
});

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

test('wire schema version 2 (batch_v2.json, response_v2.json): read, validated and written back whole', () => {
  const text = readFileSync(join(GOLDEN, 'batch_v2.json'), 'utf8');
  const golden = JSON.parse(text) as Batch;
  validateBatch(golden, sha256Hex);
  // The catalog hashes as the Rust SDK's serializer writes it.
  assert.equal(sha256Hex(catalogJson(golden.catalog!)), golden.catalog_hash);
  // Serialized back (queue segments, request bodies) in the Rust field order, nothing dropped:
  // a queue shared with a Rust tool may hold version 2 segments, which a Node.js sender sends.
  // (Compared after parsing: serde_json writes the f64 12 as `12.0`, JSON.stringify as `12`.)
  assert.equal(batchToJson(golden), JSON.stringify(JSON.parse(text)));
  // Fields in another order (as a reader that rebuilt the objects might hold them): the same bytes.
  const shuffled = Object.fromEntries(Object.entries(golden).reverse()) as unknown as Batch;
  shuffled.events = golden.events.map((e) => Object.fromEntries(Object.entries(e).reverse()) as unknown as WireEvent);
  assert.equal(batchToJson(shuffled), JSON.stringify(JSON.parse(text)));
  const response = JSON.parse(readFileSync(join(GOLDEN, 'response_v2.json'), 'utf8')) as IngestResponse;
  assert.deepEqual(Object.keys(response), ['accepted', 'duplicates', 'catalog_known']);
  assert.equal(response.catalog_known, true);
});

/** Sets `value` at `path` (object keys and array indexes; an index equal to the length appends). */
function setPath(root: unknown, path: (string | number)[], value: unknown): void {
  let cur = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  cur[path[path.length - 1]!] = value;
}
function deletePath(root: unknown, path: (string | number)[]): void {
  let cur = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  delete cur[path[path.length - 1]!];
}

test('wire validation cases (sdk/fixtures/wire-validation.json): the field the Rust validator names', () => {
  const f = load('wire-validation.json') as { cases: { name: string; set?: [(string | number)[], unknown][]; delete?: (string | number)[][]; expect_field: string | null }[] };
  assert.ok(f.cases.length >= 20);
  const golden = JSON.parse(readFileSync(join(GOLDEN, 'batch_v2.json'), 'utf8')) as Batch;
  const failures: string[] = [];
  for (const c of f.cases) {
    const b = structuredClone(golden);
    for (const p of c.delete ?? []) deletePath(b, p);
    for (const [p, v] of c.set ?? []) setPath(b, p, v);
    let field: string | null = null;
    try {
      validateBatch(b, sha256Hex);
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      field = e.field;
    }
    if (field !== c.expect_field) failures.push(`${c.name}: got ${field}, want ${c.expect_field}`);
  }
  assert.deepEqual(failures, []);
});
