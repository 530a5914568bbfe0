#!/usr/bin/env node
// acme-node: a small build tool, instrumented with optel the way sdk/js/README.md recommends.
// The Node.js twin of examples/acme (Rust): same `acme.toml` manifest, same commands and flags,
// same error codes, same output, same help texts and exit statuses.
//
//   acme-node init DIR                writes a new project
//   acme-node check DIR [--strict]    validates the manifest and that every source exists; with
//                                     --strict, also that there is a source and none is empty
//   acme-node build DIR [--release]   concatenates the sources into DIR/target/<name>.out
//                                     (with --release, DIR/target/release/<name>.out)
//   acme-node test DIR                builds, then checks every line of DIR/tests/*.expect is in the output
//   acme-node telemetry status|enable|disable|local|reset|preview|log|purge|flush|forget
//
// Failures exit with status 1 and print `error[CODE]: message`; the code is what telemetry
// records, never the message (which can hold a path). Usage errors exit with status 2.
import { Telemetry, trackCommand, runTelemetryCommand, telemetryHelp } from 'optel';
import { run, parseArgs, Failure, VERSION } from '../src/acme.js';

// The optel integration: options (opt-in: asked once on an interactive terminal, never in CI),
// the `telemetry` subcommand handled before init (so `disable` never starts anything), init, a
// command guard, and a failure code. Events are written at exit and sent in the background.
const telemetry = {
  tool: 'acme-node',
  version: VERSION,
  endpoint: 'http://127.0.0.1:4318',
  asking: 'opt-in',
};

const args = parseArgs(process.argv.slice(2));
switch (args.kind) {
  case 'telemetry':
    if (args.args[0] === '--help' || args.args[0] === '-h') process.stdout.write(telemetryHelp('acme-node'));
    else process.exitCode = await runTelemetryCommand(telemetry, args.args);
    break;
  case 'help':
    process.stdout.write(args.text);
    break;
  case 'version':
    console.log(`acme-node ${VERSION}`);
    break;
  case 'usage':
    process.stderr.write(args.text);
    process.exitCode = 2;
    break;
  case 'run': {
    const t = Telemetry.init(telemetry);
    const tracked = trackCommand(args.command); // a fixed command name, never an argument
    // Flags are recorded as fixed values only, as acme records them.
    if (args.command === 'build') tracked.attr('profile', args.release ? 'release' : 'debug');
    if (args.strict) t.feature('strict');
    try {
      console.log(run(args.command, args.dir, { release: args.release, strict: args.strict }));
      tracked.end();
    } catch (e) {
      if (!(e instanceof Failure)) throw e;
      console.error(`error[${e.code}]: ${e.message}`);
      tracked.fail(e.code);
      process.exitCode = 1;
    }
    break;
  }
}
