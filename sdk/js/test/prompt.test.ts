// The opt-in question on a real terminal (a pseudo-terminal from Python's `pty` module), never
// without one and never in CI. Skipped where python3 is missing.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACME_NODE } from './paths.js';
import { acmeNode, dataDirOf, ensureAcmeNode, installEnv, tempDir } from './helpers.js';

const python = spawnSync('python3', ['--version']).status === 0;
const skip = python ? false : 'python3 is needed for a pseudo-terminal';

// Runs a command on a pseudo-terminal, typing `answers` (one line each) whenever output pauses.
const PTY = `
import os, pty, sys, select, json, time
args, answers, env = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
pid, fd = pty.fork()
if pid == 0:
    os.execve(args[0], args, env)
out = b''
deadline = time.time() + 20
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    elif answers:
        os.write(fd, (answers.pop(0) + '\\n').encode())
    else:
        pid_done, _ = os.waitpid(pid, os.WNOHANG)
        if pid_done:
            break
sys.stdout.write(out.decode('utf8', 'replace'))
`;

function onTty(args: string[], answers: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync('python3', ['-c', PTY, JSON.stringify(args), JSON.stringify(answers), JSON.stringify(env)], { encoding: 'utf8' });
  return r.stdout;
}

let app: string;
before(async () => {
  ensureAcmeNode();
  app = join(tempDir(), 'app');
  await acmeNode(['init', app], installEnv(tempDir(), { ACME_NODE_TELEMETRY: 'off' }));
});

test('on a terminal the opt-in question is asked once, shows the data on request, and the answer is kept', { skip }, () => {
  const home = tempDir('optel-tty-');
  const out = onTty([process.execPath, ACME_NODE, 'check', app], ['s', 'n'], installEnv(home));
  assert.ok(out.includes('acme-node can send anonymous usage statistics to its authors'), out);
  assert.ok(out.includes('This is what one run sends (an example):'), out);
  assert.ok(out.includes('"error_code": "E_NO_MANIFEST"'), out);
  assert.ok(out.includes('manifest ok'), out);
  assert.equal(readFileSync(join(home, '.config', 'optel', 'acme-node.toml'), 'utf8'), '# optel telemetry settings of this tool (see `<tool> telemetry status`).\ntelemetry = "off"\n');
  assert.equal(existsSync(dataDirOf(home, 'acme-node')), false, 'nothing recorded after "no"');
  const again = onTty([process.execPath, ACME_NODE, 'check', app], [], installEnv(home));
  assert.ok(!again.includes('can send anonymous usage statistics'), 'asked only once');
  const yes = tempDir('optel-tty-');
  onTty([process.execPath, ACME_NODE, 'check', app], ['y'], installEnv(yes, { ACME_NODE_TELEMETRY_ENDPOINT: 'http://127.0.0.1:9' }));
  assert.match(readFileSync(join(yes, '.config', 'optel', 'acme-node.toml'), 'utf8'), /telemetry = "on"/);
  assert.ok(existsSync(join(dataDirOf(yes, 'acme-node'), 'queue')), 'recorded after "yes"');
});

test('never asked in CI, even on a terminal; never without a terminal: off, and nothing written', { skip }, async () => {
  const ci = tempDir('optel-tty-');
  const out = onTty([process.execPath, ACME_NODE, 'check', app], ['y'], installEnv(ci, { CI: 'true', GITHUB_ACTIONS: 'true' }));
  assert.ok(!out.includes('can send anonymous usage statistics'), out);
  assert.equal(existsSync(join(ci, '.config')), false);
  assert.equal(existsSync(join(ci, '.local')), false);
  const piped = tempDir('optel-tty-');
  const r = await acmeNode(['check', app], installEnv(piped));
  assert.equal(r.code, 0);
  assert.equal(r.stderr, '');
  assert.equal(existsSync(join(piped, '.config')), false);
  const status = await acmeNode(['telemetry', 'status'], installEnv(piped));
  assert.match(status.stdout, /^telemetry: off \(decided by the tool's default\)/);
});
