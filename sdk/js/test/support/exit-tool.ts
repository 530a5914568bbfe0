// A tool that ends in the ways Node.js CLIs end: `process.exit()` right after recording, a
// natural end, or an uncaught exception. Imports the bundled package entry, as users do.
import { readdirSync } from 'node:fs';
import { Telemetry, trackCommand } from 'optel';

const how = process.argv[2] ?? 'natural';
Telemetry.init({ tool: 'exit-tool', version: '1.0.0', defaultConsent: 'on' });
const cmd = trackCommand(how.replace(/[^a-z-]/g, '_'));
if (how === 'throw') throw new Error('boom');
if (how === 'long') {
  // A command that works until the queue (EXIT_TOOL_QUEUE_DIR) is empty or EXIT_TOOL_WORK_MS
  // have passed, polling, then says how many segments are queued: what earlier runs left is
  // sent meanwhile when it makes a batch.
  const dir = process.env.EXIT_TOOL_QUEUE_DIR ?? '';
  const queued = () => readdirSync(dir).filter((n) => n.endsWith('b.json')).length;
  const until = Date.now() + Number(process.env.EXIT_TOOL_WORK_MS ?? 1500);
  while (queued() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  console.log(`queued mid-run: ${queued()}`);
}
if (how === 'unfinished-exit') process.exit(3);
cmd.end();
if (how === 'exit') process.exit(0);
