// A tool that ends in the ways Node.js CLIs end: `process.exit()` right after recording, a
// natural end, or an uncaught exception. Imports the bundled package entry, as users do.
import { readdirSync } from 'node:fs';
import { Telemetry, trackCommand } from 'optel';

const how = process.argv[2] ?? 'natural';
Telemetry.init({ tool: 'exit-tool', version: '1.0.0', defaultConsent: 'on' });
const cmd = trackCommand(how.replace(/[^a-z-]/g, '_'));
if (how === 'throw') throw new Error('boom');
if (how === 'long') {
  // A command that works for 1.5 s, then says how many segments are queued (EXIT_TOOL_QUEUE_DIR):
  // what earlier runs left is sent meanwhile when it makes a batch.
  await new Promise((r) => setTimeout(r, 1500));
  const dir = process.env.EXIT_TOOL_QUEUE_DIR ?? '';
  console.log(`queued mid-run: ${readdirSync(dir).filter((n) => n.endsWith('b.json')).length}`);
}
if (how === 'unfinished-exit') process.exit(3);
cmd.end();
if (how === 'exit') process.exit(0);
