#!/usr/bin/env node
// acme-node: a small build tool, instrumented with optel the way sdk/js/README.md recommends.
// The Node.js twin of examples/acme (Rust): same `acme.toml` manifest, same commands, same error
// codes, same output.
//
//   acme-node init DIR    writes a new project
//   acme-node check DIR   validates the manifest and that every source exists
//   acme-node build DIR   concatenates the sources into DIR/target/<name>.out
//   acme-node test DIR    builds, then checks every line of DIR/tests/*.expect is in the output
//   acme-node telemetry status|enable|disable|local|reset|preview|log|purge|flush|forget
//
// Failures exit with status 1 and print `error[CODE]: message`; the code is what telemetry
// records, never the message (which can hold a path).
import { Telemetry, trackCommand, runTelemetryCommand, telemetryHelp } from 'optel';
import { run, Failure, COMMANDS, VERSION, usage } from '../src/acme.js';

// The optel integration: options (opt-in: asked once on an interactive terminal, never in CI),
// the `telemetry` subcommand handled before init (so `disable` never starts anything), init, a
// command guard, and a failure code. Events are written at exit and sent in the background.
const telemetry = {
  tool: 'acme-node',
  version: VERSION,
  endpoint: 'http://127.0.0.1:4318',
  asking: 'opt-in',
};

const [command, ...rest] = process.argv.slice(2);
if (command === 'telemetry') {
  if (rest[0] === '--help' || rest[0] === '-h') process.stdout.write(telemetryHelp('acme-node'));
  else process.exitCode = await runTelemetryCommand(telemetry, rest);
} else if (command === '--version' || command === '-V') {
  console.log(`acme-node ${VERSION}`);
} else if (!COMMANDS.includes(command) || rest.length !== 1) {
  process.stderr.write(usage());
  process.exitCode = command === '--help' || command === '-h' ? 0 : 2;
} else {
  Telemetry.init(telemetry);
  const tracked = trackCommand(command); // a fixed command name, never an argument
  try {
    console.log(run(command, rest[0]));
    tracked.end();
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    console.error(`error[${e.code}]: ${e.message}`);
    tracked.fail(e.code);
    process.exitCode = 1;
  }
}
