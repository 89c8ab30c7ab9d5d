"""The embedded test and faults infrastructure: what it started is stopped again when the rest cannot start."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tools import faults, stack, testing


def kafka_refuses_after_postgres_started(monkeypatch: pytest.MonkeyPatch, port: int) -> list[str]:
    """PostgreSQL starts, then Kafka cannot (its port is taken): the starts and stops, in order."""
    calls: list[str] = []
    monkeypatch.setattr(stack, "start_postgres", lambda layout: calls.append("start postgres") or True)
    monkeypatch.setattr(stack, "stop_postgres", lambda layout: calls.append("stop postgres"))

    def kafka_refuses(layout: stack.Layout) -> None:
        raise stack.StackError(f"port {port} is taken by another program")

    monkeypatch.setattr(stack, "start_kafka", kafka_refuses)
    return calls


def test_postgres_started_for_the_tests_is_stopped_when_kafka_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SWITCHBOARD_KEEP_INFRA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SWITCHBOARD_TESTCONTAINERS", "never")
    calls = kafka_refuses_after_postgres_started(monkeypatch, 29092)
    with pytest.raises(stack.StackError, match="29092"):
        testing.start_infrastructure()
    assert calls == ["start postgres", "stop postgres"]


def test_a_stack_that_was_already_running_is_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ownership is what start_* did, not a port probed before: a stack stopping while the probe ran
    (its port still open) used to be replaced by one of ours that nothing stopped."""
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SWITCHBOARD_KEEP_INFRA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SWITCHBOARD_TESTCONTAINERS", "never")
    calls: list[str] = []
    monkeypatch.setattr(stack, "port_open", lambda port: True)  # what the old probe would have seen
    monkeypatch.setattr(stack, "start_postgres", lambda layout: True)  # ... and yet this call started it
    monkeypatch.setattr(stack, "start_kafka", lambda layout: False)  # this one was running already
    monkeypatch.setattr(stack, "stop_postgres", lambda layout: calls.append("stop postgres"))
    monkeypatch.setattr(stack, "stop_pid", lambda *a: calls.append("stop kafka"))
    testing.start_infrastructure().close()
    assert calls == ["stop postgres"]


def test_the_faults_stack_stops_its_postgres_when_its_kafka_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = kafka_refuses_after_postgres_started(monkeypatch, 23092)
    with pytest.raises(stack.StackError, match="23092"):
        faults.OwnStack().start()
    assert calls == ["start postgres", "stop postgres"]


async def test_the_wait_for_the_broker_also_runs_inside_a_running_event_loop() -> None:
    """`infra` is a synchronous fixture: first asked for by an asynchronous one (a store contract's
    `store`), it starts the stack inside the running loop, where asyncio.run refuses to run. Before
    `stack.blocking`, the broker was started, the wait for it raised, and it was left on its port."""

    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert stack.blocking(where()).startswith("blocking")  # a thread of its own
    # without a running loop (the usual start from a command): right there, on the calling thread
    assert not (await asyncio.to_thread(stack.blocking, where())).startswith("blocking")
