// A tool that ends in the ways Node.js CLIs end: `process.exit()` right after recording, a
// natural end, or an uncaught exception. Imports the bundled package entry, as users do.
import { Telemetry, trackCommand } from 'optel';

const how = process.argv[2] ?? 'natural';
Telemetry.init({ tool: 'exit-tool', version: '1.0.0', defaultConsent: 'on' });
const cmd = trackCommand(how.replace(/[^a-z-]/g, '_'));
if (how === 'throw') throw new Error('boom');
if (how === 'unfinished-exit') process.exit(3);
cmd.end();
if (how === 'exit') process.exit(0);
