"""Tracing (shared.tracing): the trace context crosses a produce/consume through the real consumer
pipeline, so what a handler emits continues the trace of the record it handled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from presence.app import build_runtime
from presence.settings import PresenceSettings
from presence.store import FakePresenceStore
from shared import contracts as c
from shared import messaging, tracing
from shared.settings import ServiceSettings
from shared.tx import MemoryDatabase
from tools.testing import in_memory


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(ServiceSettings(), "test", exporter=exporter)
    yield exporter
    tracing.disable()


def test_off_by_default_registers_nothing() -> None:
    assert not ServiceSettings().tracing_enabled
    before = (list(messaging.OUTBOX_HEADERS), list(messaging.RECORD_CONTEXT))
    tracing.configure(ServiceSettings(), "test")
    assert before == (messaging.OUTBOX_HEADERS, messaging.RECORD_CONTEXT)


async def test_context_crosses_a_produce_and_consume(spans: InMemorySpanExporter) -> None:
    runtime = build_runtime(PresenceSettings(), database=MemoryDatabase(FakePresenceStore()))
    tracer = trace.get_tracer("test")
    async with in_memory(runtime) as bus:
        with tracer.start_as_current_span("channel publishes", kind=SpanKind.PRODUCER) as producer:
            headers = tracing.outbox_headers()
        assert headers["traceparent"].startswith("00-")
        ev = c.event(c.AgentSignedIn(agent_id="agent-7", device_id="desk"), source="/test")
        await runtime.broker.publish(
            ev.to_bytes(),
            topic=runtime.names(ev_topic := c.AgentSignedIn.TOPIC),
            key=b"agent-7",
            headers={"ce_type": ev.type, **headers},
        )
        rows = bus.db.take_outbox()
    assert [r.headers["ce_type"] for r in rows] == ["presence.changed"]
    trace_id = format(producer.get_span_context().trace_id, "032x")
    assert rows[0].headers["traceparent"].split("-")[1] == trace_id

    consumed = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert [s.name for s in consumed] == [f"process {runtime.names(ev_topic)}"]
    assert consumed[0].parent is not None
    assert consumed[0].parent.span_id == producer.get_span_context().span_id
    assert consumed[0].context.trace_id == producer.get_span_context().trace_id
    # the emitted event's context is the consumer span's: the next service continues from it
    assert rows[0].headers["traceparent"].split("-")[2] == format(consumed[0].context.span_id, "016x")


async def test_a_record_without_context_starts_a_trace(spans: InMemorySpanExporter) -> None:
    runtime = build_runtime(PresenceSettings(), database=MemoryDatabase(FakePresenceStore()))
    async with in_memory(runtime) as bus:
        await bus.send(c.AgentSignedIn(agent_id="agent-8", device_id="desk"))
        rows = bus.db.take_outbox()
    consumed = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert len(consumed) == 1 and consumed[0].parent is None
    assert rows[0].headers["traceparent"].split("-")[1] == format(consumed[0].context.trace_id, "032x")
