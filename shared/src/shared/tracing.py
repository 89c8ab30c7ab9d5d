"""Optional OpenTelemetry tracing across the services (off by default).

With `SWITCHBOARD_TRACING_ENABLED=true` each service exports spans over OTLP/HTTP to
`OTEL_EXPORTER_OTLP_ENDPOINT` (a collector's base URL, e.g. http://otel-collector:4318; spans go to
its /v1/traces). The trace context travels in Kafka headers (W3C `traceparent`/`tracestate`):

- an event emitted by a use case carries the context current at `emit` in its outbox row's
  headers (`messaging.OUTBOX_HEADERS`), which the relay publishes with the record;
- a consumer handles each record inside a CONSUMER span whose parent is the context found in the
  record's headers (`messaging.RECORD_CONTEXT`), so what it emits continues the same trace.

So one conversation's path (arrival -> routing -> sessions -> presence, assist) is one trace. A
record without a `traceparent` (a channel that does not trace) starts a new trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

from shared import messaging
from shared.settings import ServiceSettings

TRACER = "switchboard"

log = structlog.get_logger("switchboard.tracing")

_provider: TracerProvider | None = None


def configure(settings: ServiceSettings, service: str, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process when the settings ask for it (or an `exporter` is given,
    for tests: spans go there at once). Idempotent: several services in one process (tests, the
    embedded demo) share one provider. Returns whether tracing is on."""
    global _provider
    if not settings.tracing_enabled and exporter is None:
        return outbox_headers in messaging.OUTBOX_HEADERS
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": f"switchboard-{service}"}))
        trace.set_tracer_provider(_provider)
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif not getattr(_provider, "_switchboard_otlp", False):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = f"{settings.otlp_endpoint.rstrip('/')}/v1/traces" if settings.otlp_endpoint else None
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        _provider._switchboard_otlp = True  # type: ignore[attr-defined]
        log.info("tracing_enabled", service=service, endpoint=endpoint or "OTLP default (localhost:4318)")
    if outbox_headers not in messaging.OUTBOX_HEADERS:
        messaging.OUTBOX_HEADERS.append(outbox_headers)
    if record_span not in messaging.RECORD_CONTEXT:
        messaging.RECORD_CONTEXT.append(record_span)
    return True


def disable() -> None:
    """Stop propagating and recording (the hooks go; spans already ended are flushed)."""
    with contextlib.suppress(ValueError):
        messaging.OUTBOX_HEADERS.remove(outbox_headers)
    with contextlib.suppress(ValueError):
        messaging.RECORD_CONTEXT.remove(record_span)
    if _provider is not None:
        _provider.force_flush()


def outbox_headers() -> dict[str, str]:
    """The current trace context as Kafka headers (empty outside any span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _headers(rec: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in rec.headers or () if v is not None}


@contextlib.contextmanager
def record_span(rec: ConsumerRecord[Any, Any]) -> Iterator[None]:
    """A CONSUMER span around handling `rec`, continuing the trace its headers carry."""
    parent = propagate.extract(_headers(rec))
    tracer = trace.get_tracer(TRACER)
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": rec.topic,
        "messaging.destination.partition.id": str(rec.partition),
        "messaging.kafka.offset": rec.offset,
    }
    if rec.key is not None:
        key = rec.key.decode(errors="replace") if isinstance(rec.key, bytes) else str(rec.key)
        attributes["messaging.kafka.message.key"] = key
    name = f"process {rec.topic}"
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes):
        yield
