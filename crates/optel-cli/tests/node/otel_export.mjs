// Exports traces, metrics and logs with the official OpenTelemetry JavaScript SDK (OTLP/HTTP
// JSON exporters), configured by the standard OTEL_* variables, with the host, OS and process
// resource detectors on: driven by tests/otel_node.rs. Run from a directory whose node_modules
// holds the packages of package.json (target/otel-node).
import { context, metrics, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import {
  detectResources,
  envDetector,
  hostDetector,
  osDetector,
  processDetector,
} from "@opentelemetry/resources";
import { BatchLogRecordProcessor, LoggerProvider } from "@opentelemetry/sdk-logs";
import { MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

const resource = detectResources({
  detectors: [envDetector, hostDetector, osDetector, processDetector],
});
if (resource.waitForAsyncAttributes) await resource.waitForAsyncAttributes();

const SECRET_URL = "https://api.example.com/u?email=bob.jones@example.org&token=n0de-tok-8812";

// Traces: two runs (root INTERNAL spans), one failed; a child span; a SERVER span.
const tracerProvider = new TracerProvider({
  resource,
  spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
});
const tracer = tracerProvider.getTracer("nodeapp");
const ok = tracer.startSpan("nodeapp", { kind: SpanKind.INTERNAL });
ok.setAttribute("process.exit.code", 0);
const child = tracer.startSpan("fetch", { kind: SpanKind.CLIENT }, trace.setSpan(context.active(), ok));
child.setAttribute("url.full", SECRET_URL);
child.end();
ok.end();
const failed = tracer.startSpan("nodeapp", { kind: SpanKind.INTERNAL });
failed.setAttribute("process.exit.code", 1);
failed.setAttribute("error.type", "E_AUTH");
failed.setAttribute("http.request.header.authorization", "Bearer n0de-bearer-5531");
failed.setAttribute("code.file.path", "/home/bob/app/index.js");
failed.setStatus({ code: SpanStatusCode.ERROR, message: "denied for bob.jones@example.org" });
failed.end();
const server = tracer.startSpan("GET /users/{id}", { kind: SpanKind.SERVER });
server.setAttribute("url.query", "token=n0de-tok-8812");
server.end();
await tracerProvider.shutdown();

// Metrics: the command_invocation counter, exported twice.
const meterProvider = new MeterProvider({
  resource,
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter(),
      exportIntervalMillis: 3_600_000,
    }),
  ],
});
const invocations = meterProvider.getMeter("nodeapp").createCounter("command_invocation");
invocations.add(999, { command: "sync", outcome: "success" });
await meterProvider.forceFlush();
invocations.add(2, { command: "sync", outcome: "success" });
invocations.add(1, { command: "sync", outcome: "failure", "error.type": "E_NET" });
await meterProvider.shutdown();

// Logs: an event and a plain log line.
const loggerProvider = new LoggerProvider({
  resource,
  processors: [new BatchLogRecordProcessor({ exporter: new OTLPLogExporter() })],
});
const logger = loggerProvider.getLogger("nodeapp");
logger.emit({
  eventName: "cache",
  attributes: { "optel.event_type": "feature", "enduser.id": "bob.jones@example.org" },
  body: "cache warm for bob.jones@example.org",
});
logger.emit({ body: "login failed for bob.jones@example.org", severityText: "WARN" });
await loggerProvider.shutdown();
console.log("exported");
