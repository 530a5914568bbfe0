/** The texts of the `telemetry` subcommand (kept apart so that help needs no other code). */
/** One line describing the subcommand, for help texts. */
export const TELEMETRY_DESCRIPTION = 'See and change what telemetry this tool records and sends';

/** The subcommands and their one-line help (the Rust SDK's). */
export const TELEMETRY_COMMANDS: ReadonlyArray<[string, string]> = [
  ['status', 'Show whether telemetry is on, which setting decided it, and what is queued.'],
  ['enable', 'Turn telemetry on: usage events are sent to the tool\'s authors.'],
  ['disable', 'Turn telemetry off: nothing is recorded or sent (not even an opt-out event).'],
  ['local', 'Keep usage events on this machine only (see `telemetry log`); nothing is sent.'],
  ['reset', 'Start over with a new anonymous pseudonym that cannot be linked to the old one.'],
  ['preview', 'Print the exact JSON that would be sent for the queued events, without sending it.'],
  ['log', 'Print the local ledger of recorded events.'],
  ['purge', 'Delete all local telemetry data (queue, ledger, install secret).'],
  ['flush', 'Send queued events now (--timeout-ms N, default 5000).'],
  ['forget', 'Ask the collector to delete everything this install has sent (--timeout-ms N, default 10000).'],
];

/** The help text of `<tool> telemetry`. */
export function telemetryHelp(tool: string): string {
  return `${TELEMETRY_DESCRIPTION}\n\nUsage: ${tool} telemetry <COMMAND>\n\nCommands:\n${TELEMETRY_COMMANDS.map(([c, h]) => `  ${c.padEnd(8)} ${h}`).join('\n')}\n`;
}
