/**
 * optel: privacy-first usage telemetry for Node.js CLI tools and libraries (the JavaScript SDK
 * of optel; the React hook is in `optel/react`). Three lines in a tool:
 *
 * ```js
 * import { Telemetry, trackCommand } from 'optel';
 * Telemetry.init({ tool: 'acme-node', version: '1.0.0', endpoint: 'https://telemetry.acme.dev', asking: 'opt-in' });
 * const command = trackCommand('build'); // ... command.fail('E_NO_MANIFEST') or command.end()
 * ```
 *
 * See README.md for consent, what is sent, and delivery.
 */
export { Telemetry, CommandGuard, global, trackCommand, formatStatus, toWireAttributes } from './telemetry.js';
export type { Attributes, Status } from './telemetry.js';
export type { TelemetryOptions } from './config.js';
export { TelemetryConfig, DEFAULT_EXIT_TIMEOUT_MS, DEFAULT_CI_FLUSH_TIMEOUT_MS, MAX_EXIT_TIMEOUT_MS, eventsUrl } from './config.js';
export { Library, library } from './library.js';
export { telemetryHelp, TELEMETRY_COMMANDS, TELEMETRY_DESCRIPTION } from './cli-text.js';
export { runTelemetryCommand, telemetryStatus } from './cli-entry.js';
export type { Io } from './cli.js';
export { type Consent, type Asking, type ConsentSource, type Layer, PROJECT_POLICY_FILE, parseConsent, envPrefix, describeSource } from './consent.js';
export { type Epoch, deriveMachineId } from './identity.js';
export { redact } from './redact.js';
export { type Exporter, type ExportResult, NoopExporter, MemoryExporter } from './export.js';
export { JsonlFileExporter } from './ledger.js';
export { defaultDataDir } from './dirs.js';
export { queueStatus, type QueueStatus } from './status.js';
export { type Batch, type WireEvent, type EventType, type AttributeValue, validateBatch, isValidName, limits, SCHEMA_VERSION } from './wire.js';
