/**
 * The `telemetry` subcommand's entry points, loading its code on first use: the subcommand is
 * asynchronous anyway, and keeping it out of the main chunk keeps `import 'optel'` cheap.
 */
import type { Io } from './cli.js';
import { TelemetryConfig, type TelemetryOptions } from './config.js';
import type { Status } from './telemetry.js';

/** Runs `<tool> telemetry <args>`; resolves to the exit code (0 or 1). Never rejects. */
export async function runTelemetryCommand(options: TelemetryOptions, args: string[], io?: Io): Promise<number> {
  const cli = await import('./cli.js');
  return io ? cli.runTelemetryCommand(options, args, io) : cli.runTelemetryCommand(options, args);
}

/** What telemetry would do on the next run and what is queued (asks nothing, writes nothing). */
export async function telemetryStatus(options: TelemetryOptions): Promise<Status> {
  const cli = await import('./cli.js');
  return cli.telemetryStatus(new TelemetryConfig(options));
}
