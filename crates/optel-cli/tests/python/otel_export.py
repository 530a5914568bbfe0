"""Exports traces, metrics and logs with the official OpenTelemetry Python SDK, configured only
by the standard OTEL_* environment variables (endpoint, headers, temporality, resource), as a
CLI program instrumented by the semantic conventions would: driven by tests/otel_python.rs.
Over OTLP/HTTP protobuf, or OTLP/gRPC with the argument `grpc`.

Every sensitive value of the issue is attached where real instrumentation puts it; none of
them may reach the collector's database.
"""

import os
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber

# `otel_export.py grpc`: the OTLP/gRPC exporters (the same OTEL_* variables), else OTLP/HTTP.
if sys.argv[1:] == ["grpc"]:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# Resource: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (host.name, os.type=Linux,
# host.arch=AMD64, ...) are read by Resource.create().
resource = Resource.create()

SENSITIVE = {
    "url.full": "https://api.example.com/v1/users?email=alice.smith@example.com&token=s3cr3t-tok-4471",
    "url.query": "email=alice.smith@example.com&token=s3cr3t-tok-4471",
    "http.request.header.authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-9f2a",
    "db.query.text": "SELECT * FROM users WHERE email = 'alice.smith@example.com'",
    "code.file.path": "/home/alice/src/app.py",
    "exception.message": "config not found: /home/alice/.config/pyapp/settings.toml",
    "user_agent.original": "pyapp/2.1 (alice-laptop; Linux x86_64)",
    "process.command_args": "pyapp sync --password hunter2-secret",
    "process.pid": 48213,
}

# --- traces: two runs of the program (root INTERNAL spans), children, a server span ----------
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = tracer_provider.get_tracer("pyapp")
with tracer.start_as_current_span("pyapp", kind=SpanKind.INTERNAL) as run:
    run.set_attribute("process.executable.name", "pyapp")
    run.set_attribute("process.exit.code", 0)
    with tracer.start_as_current_span("load-config"):
        pass
    with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.CLIENT) as call:
        call.set_attribute("url.full", SENSITIVE["url.full"])
with tracer.start_as_current_span("pyapp", kind=SpanKind.INTERNAL) as run:
    for key, value in SENSITIVE.items():
        run.set_attribute(key, value)
    run.set_attribute("process.exit.code", 2)
    run.set_attribute("error.type", "E_CONFIG")
    run.set_status(Status(StatusCode.ERROR, SENSITIVE["exception.message"]))
    run.add_event("exception", {"exception.message": SENSITIVE["exception.message"]})
with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER) as request:
    request.set_attribute("url.query", SENSITIVE["url.query"])
tracer_provider.shutdown()

# --- metrics: the command_invocation counter, exported twice (temporality from the env) -------
reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
invocations = meter_provider.get_meter("pyapp").create_counter("command_invocation")
ok = {"command": "sync", "outcome": "success"}
invocations.add(999, ok)
meter_provider.force_flush()
invocations.add(2, ok)
invocations.add(1, {"command": "sync", "outcome": "failure", "error.type": "E_NET"})
meter_provider.shutdown()

# --- logs: an event (event_name) and a plain log line ----------------------------------------
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
logger = logger_provider.get_logger("pyapp")
now = time.time_ns()
logger.emit(
    LogRecord(
        timestamp=now,
        observed_timestamp=now,
        event_name="cache",
        severity_number=SeverityNumber.INFO,
        attributes={"optel.event_type": "feature", "user.email": "alice.smith@example.com"},
        body=SENSITIVE["db.query.text"],
    )
)
logger.emit(
    LogRecord(
        timestamp=now,
        observed_timestamp=now,
        severity_number=SeverityNumber.WARN,
        body="login failed for alice.smith@example.com from /home/alice",
        attributes={"code.file.path": SENSITIVE["code.file.path"]},
    )
)
logger_provider.shutdown()
print("exported", flush=True)
