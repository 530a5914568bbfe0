// Paths used by the tests, from the compiled location build/test/*.js.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

/** sdk/js */
export const PKG = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** the repository root */
export const ROOT = resolve(PKG, '..', '..');
/** sdk/fixtures: the data files shared with the Rust SDK's tests */
export const FIXTURES = join(ROOT, 'sdk', 'fixtures');
/** the wire golden files, read in place from the Rust crate */
export const GOLDEN = join(ROOT, 'crates', 'optel-wire', 'tests', 'golden');
/** the collector binary: OPTEL_BIN, else ../../target/debug/optel relative to the package */
export const OPTEL_BIN = process.env.OPTEL_BIN || resolve(PKG, '..', '..', 'target', 'debug', 'optel');
export const HAVE_OPTEL = existsSync(OPTEL_BIN);
/** the example CLI */
export const ACME_NODE = join(ROOT, 'examples', 'acme-node', 'bin', 'acme-node.js');
