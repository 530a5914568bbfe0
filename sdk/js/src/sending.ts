/**
 * Builds the sender of a data directory: the queue, the shared circuit breaker, the policy and
 * the exporter (the one given in code, else HTTP to the endpoint). Its own module so that the
 * delivery and HTTP code is a separate chunk, loaded only when telemetry is on and sends.
 */
import { join } from 'node:path';
import type { TelemetryConfig } from './config.js';
import { eventsUrl } from './config.js';
import { Breaker, Sender } from './delivery.js';
import type { Exporter } from './export.js';
import { HttpExporter } from './http.js';
import { Queue } from './queue.js';

/** The exporter delivery uses, if there is somewhere to send. */
export function exporterFor(config: TelemetryConfig): Exporter | undefined {
  if (config.options.exporter) return config.options.exporter;
  const endpoint = config.endpoint();
  if (!endpoint) return undefined;
  return new HttpExporter(eventsUrl(endpoint), config.ingestKey(), config.userAgent(), config.options.gzip ?? true, config.envObj);
}

/** A sender for the queue of `dataDir`, if there is somewhere to send. */
export function createSender(config: TelemetryConfig, dataDir: string): Sender | undefined {
  const exporter = exporterFor(config);
  if (!exporter) return undefined;
  return new Sender(Queue.open(join(dataDir, 'queue')), new Breaker(dataDir), config.policy(), exporter);
}
