// A Node.js tool named "acme", the same name as the Rust example (examples/acme): used to show
// that both SDKs share the consent files, the install secret (hence the pseudonym) and the queue.
import { Telemetry, trackCommand, runTelemetryCommand } from '../../src/index.js';

const options = { tool: 'acme', version: '0.1.0-node', endpoint: 'http://127.0.0.1:4318', defaultConsent: 'on' as const };
const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'telemetry') {
  process.exitCode = await runTelemetryCommand(options, rest);
} else {
  Telemetry.init(options);
  trackCommand(cmd ?? 'check').end();
}
