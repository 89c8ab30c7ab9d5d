"""The consumer pipeline's error classification (what rewinds, what goes to the DLQ, what exits),
its answer to invalid commands, and its hooks for health, metrics and tracing; in memory."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY

from shared import contracts as c
from shared import messaging, topics
from shared.messaging import Consumer, PoisonMessage, Rejection, UnitOfWork, classify, is_infrastructure
from shared.settings import ServiceSettings
from shared.tx import MemoryDatabase, Tx


def test_unreachable_database_or_broker_is_infrastructure() -> None:
    assert is_infrastructure(ConnectionRefusedError())
    assert is_infrastructure(TimeoutError())
    assert is_infrastructure(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
    assert is_infrastructure(asyncpg.exceptions.InterfaceError("connection is closed"))


def test_programming_errors_are_not_infrastructure() -> None:
    """A bug must end in the DLQ after retries, not rewind forever and restart the service."""
    assert not is_infrastructure(asyncpg.exceptions.InterfaceError("the server expects 7 arguments, 6 were passed"))
    assert not is_infrastructure(KeyError("conversation_id"))
    assert not is_infrastructure(asyncpg.exceptions.UniqueViolationError("duplicate key"))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), "transient"),
        (asyncpg.exceptions.SerializationError("could not serialize access"), "transient"),
        (asyncpg.exceptions.LockNotAvailableError("could not obtain lock"), "transient"),
        (asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"), "transient"),
        (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), "transient"),
        (ConnectionRefusedError(), "infrastructure"),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), "infrastructure"),
        (asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"), "poison"),
        (asyncpg.exceptions.ProgramLimitExceededError("index row size 5016 exceeds btree maximum"), "poison"),
        (PoisonMessage("impossible"), "poison"),
        (c.InvalidEvent("bad"), "poison"),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), "error"),
        (KeyError("x"), "error"),
    ],
)
def test_errors_are_classified(error: BaseException, kind: str) -> None:
    assert classify(error) == kind


# --- the pipeline in memory ----------------------------------------------------------------------


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, str]]] = []

    async def publish(self, value: bytes, *, key: Any = None, headers: dict[str, str]) -> None:
        self.sent.append((value, headers))


class Pipeline:
    """A Consumer on a MemoryDatabase, its DLQ captured, its exits recorded instead of taken."""

    def __init__(self, topic: str, handlers: dict[str, Any], **kw: Any) -> None:
        self.db = MemoryDatabase()
        self.exits: list[int] = []
        settings = ServiceSettings(transient_retries=2, max_consecutive_failures=3)
        self.consumer = Consumer(
            service="test",
            topic=topic,
            handlers=handlers,
            database=self.db,
            unit_of_work=self.uow,
            broker=KafkaBroker("127.0.0.1:1"),
            settings=settings,
            exit_process=self.exits.append,
            **kw,
        )
        self.dlq = FakePublisher()
        self.consumer.dlq_publisher = self.dlq  # type: ignore[assignment]
        self.offset = 0

    def uow(self, tx: Tx) -> UnitOfWork[None, None]:
        return UnitOfWork(tx, None, None, topics.TopicNames(""), "/switchboard/test")

    def record(self, value: bytes, key: str = "k") -> ConsumerRecord[Any, Any]:
        self.offset += 1
        return ConsumerRecord(
            self.consumer.topic, 0, self.offset, 0, 0, key.encode(), value, None, len(value), len(key), []
        )

    def emitted(self) -> list[c.CloudEvent]:
        return [c.CloudEvent.model_validate_json(row.payload) for row in self.db.outbox]

    def reasons(self) -> list[str]:
        return [h["dlq.reason"] for _, h in self.dlq.sent]


def command(agent: str = "agent-7", **envelope: Any) -> bytes:
    doc = {
        "specversion": "1.0",
        "id": "cmd-1",
        "source": "/tests",
        "type": "offer.accept",
        "data": {"agent_id": agent, "offer_id": "o-1"},
    }
    doc.update(envelope)
    return json.dumps(doc).encode()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(messaging.asyncio, "sleep", no_wait)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_twelve_commands_with_5kb_ids_are_refused_answered_and_never_exit() -> None:
    handled: list[str] = []

    async def accept(uow: UnitOfWork[None, None], ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        handled.append(ev.id)

    p = Pipeline(
        topics.SESSIONS_COMMANDS, {"offer.accept": accept}, savepoints=True, on_invalid=c.reject_invalid_command
    )
    bad = [p.record(command(id=f"{i:02d}" + "x" * 5000)) for i in range(12)]
    await p.consumer.process(bad)
    await p.consumer.process(bad[:3])  # redelivered: dead-lettered again, answered once
    await p.consumer.process([p.record(command(id="cmd-ok"))])

    assert p.exits == []
    assert handled == ["cmd-ok"]
    assert len(p.dlq.sent) == 15
    assert all(r == "invalid CloudEvent envelope: id: String should have at most 200 characters" for r in p.reasons())
    assert {h["dlq.kind"] for _, h in p.dlq.sent} == {"poison"}
    rejected = [e for e in p.emitted() if e.type == "command.rejected"]
    assert len(rejected) == 12
    assert sorted(e.data["command_id"][:2] for e in rejected) == [f"{i:02d}" for i in range(12)]
    assert all(e.data["agent_id"] == "agent-7" and "at most 200 characters" in e.data["reason"] for e in rejected)
    assert p.consumer.stats.dead_lettered == 15 and p.consumer.stats.rejected == 12


async def test_a_record_nobody_can_be_told_about_only_goes_to_the_dlq() -> None:
    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": _noop}, on_invalid=c.reject_invalid_command)
    await p.consumer.process([p.record(b"garbage"), p.record(command(agent="a" * 300))])
    assert len(p.dlq.sent) == 2 and p.emitted() == []


async def _noop(*_: Any) -> None:
    return None


async def test_transient_database_errors_are_retried_never_dead_lettered_and_never_exit() -> None:
    failures = [asyncpg.exceptions.DeadlockDetectedError("deadlock detected")] * 2
    handled: list[str] = []

    async def accept(uow: Any, ev: c.CloudEvent, data: Any) -> None:
        if failures:
            raise failures.pop()
        handled.append(ev.id)

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": accept})
    before = sample("switchboard_transient_retries_total", service="test", topic=topics.SESSIONS_COMMANDS)
    await p.consumer.process([p.record(command(id="a")), p.record(command(id="b"))])
    assert handled == ["a", "b"] and p.dlq.sent == [] and p.exits == []
    after = sample("switchboard_transient_retries_total", service="test", topic=topics.SESSIONS_COMMANDS)
    assert after - before == 2

    async def always(*_: Any) -> None:
        raise asyncpg.exceptions.SerializationError("could not serialize access due to concurrent update")

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": always})
    for _ in range(10):  # far more than max_consecutive_failures (3)
        with pytest.raises(asyncpg.exceptions.SerializationError):
            await p.consumer.process([p.record(command())])  # rewound: Kafka redelivers it
    assert p.dlq.sent == [] and p.exits == []


async def test_only_infrastructure_failures_count_towards_the_exit() -> None:
    async def down(*_: Any) -> None:
        raise ConnectionRefusedError("connection refused")

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": down})
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            await p.consumer.process([p.record(command())])
    assert p.exits == []
    with pytest.raises(ConnectionRefusedError):
        await p.consumer.process([p.record(command())])
    assert p.exits == [70] and p.dlq.sent == []


async def test_a_bug_dead_letters_after_retries_but_never_exits() -> None:
    async def bug(*_: Any) -> None:
        raise KeyError("conversation_id")

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": bug})
    for i in range(10):
        await p.consumer.process([p.record(command(id=f"c-{i}"))])
    assert p.exits == [] and len(p.dlq.sent) == 10
    assert {h["dlq.kind"] for _, h in p.dlq.sent} == {"retries_exhausted"}


async def test_data_postgres_cannot_store_is_poison_at_once() -> None:
    calls = 0

    async def store(*_: Any) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions.ProgramLimitExceededError("index row size 5016 exceeds btree version 4 maximum 2704")

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": store})
    await p.consumer.process([p.record(command())])
    assert calls == 1 and [h["dlq.kind"] for _, h in p.dlq.sent] == ["poison"]
    assert "index row size" in p.reasons()[0]


async def test_rejections_are_emitted_in_place_of_the_command() -> None:
    async def refuse(uow: Any, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        raise Rejection(c.CommandRejected(agent_id=data.agent_id, command_id=ev.id, reason="no such offer"))

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": refuse}, savepoints=True)
    await p.consumer.process([p.record(command(id="cmd-9"))])
    [ev] = p.emitted()
    assert ev.type == "command.rejected" and ev.data["command_id"] == "cmd-9"
    assert (
        sample("switchboard_records_consumed_total", service="test", topic=topics.SESSIONS_COMMANDS, outcome="rejected")
        >= 1
    )


async def test_a_refused_command_undoes_only_its_own_writes_in_a_batch_run_without_savepoints_first() -> None:
    class Ledger:
        def __init__(self) -> None:
            self.writes: list[str] = []

    ledger = Ledger()
    calls: list[str] = []

    async def accept(uow: Any, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        calls.append(ev.id)
        ledger.writes.append(ev.id)  # written before the refusal: must not stay
        if data.offer_id == "o-refused":
            raise Rejection(c.CommandRejected(agent_id=data.agent_id, command_id=ev.id, reason="offer expired"))
        uow.emit(
            c.OfferAccepted(
                agent_id=data.agent_id,
                offer_id=data.offer_id,
                conversation_id="c-1",
                channel="chat",
                expires_at=datetime.now(UTC),
            )
        )

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": accept}, savepoints=True)
    p.consumer.database = p.db = MemoryDatabase(ledger)
    records = [
        p.record(command(id=f"cmd-{i}", data={"agent_id": "agent-7", "offer_id": offer}))
        for i, offer in enumerate(("o-1", "o-refused", "o-2"))
    ]
    await p.consumer.process(records)
    assert ledger.writes == ["cmd-0", "cmd-2"]
    assert [(ev.type, ev.data.get("offer_id") or ev.data.get("command_id")) for ev in p.emitted()] == [
        ("offer.accepted", "o-1"),
        ("command.rejected", "cmd-1"),
        ("offer.accepted", "o-2"),
    ]
    # first without savepoints until the refusal, then the whole batch again, each in its own
    assert calls == ["cmd-0", "cmd-1", "cmd-0", "cmd-1", "cmd-2"]

    calls.clear()  # a batch nobody refuses runs once
    await p.consumer.process([p.record(command(id="cmd-3", data={"agent_id": "agent-7", "offer_id": "o-3"}))])
    assert calls == ["cmd-3"]


async def test_health_tracing_and_metric_hooks() -> None:
    seen: dict[str, Any] = {}
    entered: list[int] = []

    @contextlib.contextmanager
    def around(rec: ConsumerRecord[Any, Any]) -> Iterator[None]:
        entered.append(rec.offset)
        yield

    async def accept(uow: UnitOfWork[None, None], ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        seen["in_flight"] = p.consumer.in_flight
        uow.emit(c.OfferAccepted(agent_id=data.agent_id, offer_id=data.offer_id, conversation_id="c-1",
                                 channel="chat", expires_at="2026-11-22T00:00:00Z"))  # fmt: skip

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": accept})
    messaging.RECORD_CONTEXT.append(around)
    messaging.OUTBOX_HEADERS.append(lambda: {"traceparent": "00-trace-span-01", "ce_type": "spoofed"})
    emitted_before = sample("switchboard_events_emitted_total", service="test", type="offer.accepted")
    handled_before = sample(
        "switchboard_records_consumed_total", service="test", topic=topics.SESSIONS_COMMANDS, outcome="handled"
    )
    started = p.consumer.last_batch_at
    try:
        good, bad = p.record(command(id="e-1")), p.record(b"{not json")
        await p.consumer.process([good, bad])
    finally:
        messaging.RECORD_CONTEXT.remove(around)
        messaging.OUTBOX_HEADERS.pop()
    assert seen["in_flight"] is True and p.consumer.in_flight is False
    assert p.consumer.last_batch_at > started
    assert sorted(entered) == [good.offset, bad.offset]  # handled, dead-lettered
    [row] = p.db.outbox
    assert row.headers == {"traceparent": "00-trace-span-01", "ce_type": "offer.accepted"}
    assert sample("switchboard_events_emitted_total", service="test", type="offer.accepted") == emitted_before + 1
    assert (
        sample("switchboard_records_consumed_total", service="test", topic=topics.SESSIONS_COMMANDS, outcome="handled")
        == handled_before + 1
    )
    assert sample("switchboard_dead_letters_total", service="test", topic=topics.SESSIONS_COMMANDS, kind="poison") >= 1
    assert (sample("switchboard_batch_seconds_count", service="test", topic=topics.SESSIONS_COMMANDS) or 0) >= 1


async def test_events_are_counted_once_after_commit() -> None:
    db = MemoryDatabase()
    async with db.transaction() as tx:
        uow: UnitOfWork[None, None] = UnitOfWork(tx, None, None, topics.TopicNames(""), "/switchboard/counted")
        uow.emit(c.ConversationEnded(conversation_id="c-1"))
        await uow.flush()
        assert sample("switchboard_events_emitted_total", service="counted", type="conversation.ended") == 0
    uow.committed()
    uow.committed()
    assert sample("switchboard_events_emitted_total", service="counted", type="conversation.ended") == 1


async def test_a_failing_tracing_hook_never_stops_the_business() -> None:
    def broken_context(rec: ConsumerRecord[Any, Any]) -> contextlib.AbstractContextManager[None]:
        raise RuntimeError("tracer misconfigured")

    def broken_headers() -> dict[str, str]:
        raise RuntimeError("tracer misconfigured")

    async def accept(uow: UnitOfWork[None, None], ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        uow.emit(c.ConversationEnded(conversation_id="c-1"))

    p = Pipeline(topics.SESSIONS_COMMANDS, {"offer.accept": accept})
    messaging.RECORD_CONTEXT.append(broken_context)
    messaging.OUTBOX_HEADERS.append(broken_headers)
    try:
        await p.consumer.process([p.record(command(id="e-hooks"))])
    finally:
        messaging.RECORD_CONTEXT.remove(broken_context)
        messaging.OUTBOX_HEADERS.remove(broken_headers)
    assert [row.headers for row in p.db.outbox] == [{"ce_type": "conversation.ended"}]
    assert p.dlq.sent == []


async def test_a_record_too_large_to_dead_letter_whole_is_dead_lettered_truncated() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    class SmallDlq(FakePublisher):
        async def publish(self, value: bytes, *, key: Any = None, headers: dict[str, str]) -> None:
            if len(value) > 100_000:
                raise MessageSizeTooLargeError("too large")
            await super().publish(value, key=key, headers=headers)

    p = Pipeline(topics.CONVERSATIONS, {"conversation.arrived": _noop})
    p.dlq = SmallDlq()
    p.consumer.dlq_publisher = p.dlq  # type: ignore[assignment]
    await p.consumer.process([p.record(b"x" * 600_000)])
    [(value, headers)] = p.dlq.sent
    assert len(value) == messaging.DLQ_TRUNCATED_BYTES and headers["dlq.truncated_from_bytes"] == "600000"
    assert headers["dlq.reason"] == "record is 600,000 bytes; records are limited to 524,288 bytes"


class _Polls:
    """An aiokafka consumer's getmany as a batch subscriber sees it: what has arrived, up to max_records."""

    def __init__(self) -> None:
        self.waiting: list[ConsumerRecord[Any, Any]] = []
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[ConsumerRecord[Any, Any]]]:
        self.calls.append((timeout_ms, max_records))
        taken, self.waiting = self.waiting[:max_records], self.waiting[max_records:]
        return {"tp": taken} if taken else {}


async def test_a_poll_takes_what_has_arrived_and_an_empty_poll_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float, *_: Any) -> None:
        slept.append(seconds)

    monkeypatch.setattr("anyio.sleep", sleep)  # FastStream's get_msg sleeps batch_timeout_ms after an empty poll
    monkeypatch.setattr("asyncio.sleep", sleep)
    broker = KafkaBroker("127.0.0.1:9")
    subscriber = broker.subscriber("t", group_id="g", batch=True, max_records=3, batch_timeout_ms=5000)
    handled: list[list[int]] = []

    async def handle(batch: tuple[ConsumerRecord[Any, Any], ...], consumer: Any) -> None:
        handled.append([r.offset for r in batch])

    messaging.take_available(subscriber, idle_wait_ms=50, max_records=3, handle=handle)
    polls = _Polls()

    assert await subscriber.get_msg(polls) == ()  # nothing there: the poll's own wait, no sleep after it
    assert polls.calls == [(50, 3)] and slept == [] and handled == []

    polls.waiting = [ConsumerRecord("t", 0, offset, 0, 0, None, b"{}", None, 0, 2, []) for offset in range(5)]
    assert await subscriber.get_msg(polls) == ()  # handed to `handle`, not to FastStream's consume path
    assert handled == [[0, 1, 2]]  # what is there, up to max_records
    assert await subscriber.get_msg(polls) == ()
    assert handled == [[0, 1, 2], [3, 4]]
    assert slept == []


async def test_a_background_poll_pauses_after_records_so_those_that_follow_come_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `gather_s`, a poll that brought records is followed by that pause (the records arriving
    meanwhile are taken by the next poll, together); an empty poll never pauses, so the first record
    after a quiet spell is handled at once."""
    slept: list[float] = []

    async def sleep(seconds: float, *_: Any) -> None:
        slept.append(seconds)

    monkeypatch.setattr("asyncio.sleep", sleep)
    broker = KafkaBroker("127.0.0.1:9")
    subscriber = broker.subscriber("t", group_id="g", batch=True, max_records=10)
    handled: list[list[int]] = []

    async def handle(batch: tuple[ConsumerRecord[Any, Any], ...], consumer: Any) -> None:
        handled.append([r.offset for r in batch])

    messaging.take_available(subscriber, idle_wait_ms=50, max_records=10, handle=handle, gather_s=0.05)
    polls = _Polls()
    assert await subscriber.get_msg(polls) == ()
    assert slept == [] and handled == []  # quiet: no pause
    polls.waiting = [ConsumerRecord("t", 0, 0, 0, 0, None, b"{}", None, 0, 2, [])]
    assert await subscriber.get_msg(polls) == ()
    assert handled == [[0]] and slept == [0.05]  # handled at once, then the pause
    polls.waiting = [ConsumerRecord("t", 0, offset, 0, 0, None, b"{}", None, 0, 2, []) for offset in range(1, 6)]
    assert await subscriber.get_msg(polls) == ()
    assert handled == [[0], [1, 2, 3, 4, 5]] and slept == [0.05, 0.05]


def _bare_consumer(background: bool = False, **settings: Any) -> Consumer:
    """A consumer with no handlers on a broker never started: for what its construction decides."""
    return Consumer(
        service="test",
        topic=topics.CONVERSATIONS,
        handlers={},
        database=MemoryDatabase(),
        unit_of_work=lambda tx: UnitOfWork(tx, None, None, topics.TopicNames(""), "/switchboard/test"),
        broker=KafkaBroker("127.0.0.1:1"),
        settings=ServiceSettings(**settings),
        background=background,
    )


def test_only_a_background_consumer_gathers_and_the_setting_says_how_long() -> None:
    assert _bare_consumer().gather_s == 0.0
    assert _bare_consumer(True).gather_s == 0.15
    assert _bare_consumer(True, background_gather_ms=200).gather_s == 0.2
    assert _bare_consumer(True, background_gather_ms=0).gather_s == 0.0


def test_the_consumer_asks_the_broker_to_hold_an_idle_fetch_as_long_as_the_setting_says() -> None:
    """An idle consumer's fetch comes back empty every `fetch_max_wait_ms`: the setting reaches the
    Kafka consumer (aiokafka's own default, 500 ms, would have the idle broker answer 4 times as often)."""
    assert _bare_consumer().subscriber._connection_args["fetch_max_wait_ms"] == 2000
    assert _bare_consumer(fetch_max_wait_ms=750).subscriber._connection_args["fetch_max_wait_ms"] == 750


def test_every_fetch_asks_for_all_the_consumers_partitions() -> None:
    """aiokafka would fetch the other partitions without one whose records wait untaken for 0.1 s,
    and that partition's next records would wait for that fetch (up to `fetch_max_wait_ms`): the
    poll makes the fetcher wait for the records to be taken instead."""
    import inspect

    from aiokafka.consumer.fetcher import Fetcher

    assert "self._prefetch_backoff = prefetch_backoff" in inspect.getsource(Fetcher.__init__)
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_prefetch_backoff=0.1))
    messaging.whole_fetches(consumer)
    assert consumer._fetcher._prefetch_backoff == messaging.WHOLE_FETCH_BACKOFF_S
    messaging.whole_fetches(SimpleNamespace())  # not started yet: nothing to do
