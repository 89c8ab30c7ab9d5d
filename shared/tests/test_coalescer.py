"""A service's batches that are ready together are handled in one transaction (`Coalescer`), with
one of each batch hook; anything that fails together is handled batch by batch as before. In memory."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from shared import contracts as c
from shared import messaging, topics
from shared.messaging import Coalescer, Consumer, Rejection, UnitOfWork
from shared.settings import ServiceSettings
from shared.tx import MemoryDatabase, Tx


class Ledger:
    """What the handlers and hooks did, transaction by transaction."""

    def __init__(self) -> None:
        self.calls: list[str] = []


class Service:
    """Two consumers of one service on one MemoryDatabase, sharing a Coalescer."""

    def __init__(self, *, before: Any = None, befores: tuple[Any, Any] | None = None, savepoints: bool = False) -> None:
        self.ledger = Ledger()
        self.db = MemoryDatabase(self.ledger)
        self.coalescer = Coalescer("test")
        self.transactions = 0
        settings = ServiceSettings(transient_retries=1)
        broker = KafkaBroker("127.0.0.1:1")

        async def after(uow: Any) -> None:
            self.ledger.calls.append("after")

        def committed(uow: Any) -> None:
            self.ledger.calls.append("committed")

        def consumer(topic: str, handlers: dict[str, Any], before_batch: Any, savepoints: bool = False) -> Consumer:
            return Consumer(
                service="test",
                topic=topic,
                handlers=handlers,
                database=self.db,
                unit_of_work=self.uow,
                broker=broker,
                settings=settings,
                before_batch=before_batch,
                after_batch=after,
                on_committed=committed,
                savepoints=savepoints,
                coalescer=self.coalescer,
            )

        first, second = befores or (before, before)
        self.commands = consumer(topics.SESSIONS_COMMANDS, {"offer.accept": self.accept}, first, savepoints)
        self.presence = consumer(topics.PRESENCE, {"presence.changed": self.presence_changed}, second)
        self.offset = 0

    def uow(self, tx: Tx) -> UnitOfWork[None, None]:
        self.transactions += 1
        return UnitOfWork(tx, None, None, topics.TopicNames(""), "/switchboard/test")

    async def accept(self, uow: Any, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        self.ledger.calls.append(f"accept {data.offer_id}")
        if data.offer_id.startswith("refused"):
            raise Rejection(c.CommandRejected(agent_id=data.agent_id, command_id=ev.id, reason="no such offer"))

    async def presence_changed(self, uow: Any, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
        self.ledger.calls.append(f"presence {data.status}")

    def record(self, consumer: Consumer, doc: dict[str, Any]) -> ConsumerRecord[Any, Any]:
        self.offset += 1
        value = json.dumps({"specversion": "1.0", "source": "/tests", **doc}).encode()
        return ConsumerRecord(consumer.topic, 0, self.offset, 0, 0, b"agent-7", value, None, len(value), 7, [])

    def accept_record(self, offer: str, event_id: str | None = None) -> ConsumerRecord[Any, Any]:
        data = {"agent_id": "agent-7", "offer_id": offer}
        return self.record(self.commands, {"id": event_id or f"cmd-{offer}", "type": "offer.accept", "data": data})

    def presence_record(self, status: str) -> ConsumerRecord[Any, Any]:
        data = {"agent_id": "agent-7", "status": status, "base": status, "source": "automatic"}
        return self.record(self.presence, {"id": f"p-{status}", "type": "presence.changed", "data": data})

    async def both_at_once(
        self, commands: list[ConsumerRecord[Any, Any]], presence: list[ConsumerRecord[Any, Any]]
    ) -> None:
        """The presence batch arrives while a batch of commands is being handled, and a second batch
        of commands behind it: the two wait, and are handled together."""
        busy = asyncio.Event()
        release = asyncio.Event()
        lead = self.accept_record("lead")

        original = self.accept

        async def slow_accept(uow: Any, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
            if data.offer_id == "lead":
                busy.set()
                await release.wait()
            await original(uow, ev, data)

        self.commands.handlers["offer.accept"] = slow_accept
        first = asyncio.create_task(self.commands.process([lead]))
        await busy.wait()
        waiting = [
            asyncio.create_task(self.presence.process(presence)),
            asyncio.create_task(self.commands.process(commands)),
        ]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, *waiting)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(messaging.asyncio, "sleep", no_wait)


async def test_a_batch_alone_is_handled_at_once_as_before() -> None:
    s = Service()
    await s.commands.process([s.accept_record("o-1")])
    assert s.ledger.calls == ["accept o-1", "after", "committed"]
    assert s.coalescer.transactions == 0 and s.transactions == 1


async def test_batches_ready_together_share_one_transaction_and_one_of_each_hook() -> None:
    locked: list[list[str]] = []

    async def lock(uow: Any, payloads: list[Any]) -> None:
        locked.append([type(p).__name__ for p in payloads])

    s = Service(before=lock)
    await s.both_at_once([s.accept_record("o-2")], [s.presence_record("busy")])
    # the leading batch alone; then the two that waited, together: one lock call for both, first
    assert locked == [["AcceptOffer"], ["PresenceChanged", "AcceptOffer"]]
    assert s.ledger.calls == ["accept lead", "after", "committed", "presence busy", "accept o-2", "after", "committed"]
    assert s.transactions == 2 and (s.coalescer.transactions, s.coalescer.batches) == (1, 2)
    assert s.commands.stats.handled == 2 and s.presence.stats.handled == 1
    # the inbox holds each event under its own consumer: a redelivery is a duplicate for that consumer only
    assert ("test:" + topics.PRESENCE, "p-busy") in s.db.inbox
    await s.presence.process([s.presence_record("busy")])
    assert s.presence.stats.duplicates == 1


async def test_a_refusal_among_batches_together_sends_each_batch_its_own_way() -> None:
    s = Service(savepoints=True)
    await s.both_at_once([s.accept_record("refused-1")], [s.presence_record("busy")])
    emitted = [c.CloudEvent.model_validate_json(row.payload) for row in s.db.outbox]
    assert [(ev.type, ev.data.get("command_id")) for ev in emitted] == [("command.rejected", "cmd-refused-1")]
    assert s.coalescer.transactions == 0  # rolled back, then one by one
    assert s.presence.stats.handled == 1 and s.commands.stats.rejected == 1
    # what the rolled-back attempt did is gone: the presence change is recorded once
    assert ("test:" + topics.PRESENCE, "p-busy") in s.db.inbox


async def test_different_lock_hooks_are_never_run_in_one_transaction() -> None:
    async def lock_a(uow: Any, payloads: list[Any]) -> None:
        return None

    async def lock_b(uow: Any, payloads: list[Any]) -> None:
        return None

    s = Service(befores=(lock_a, lock_b))
    await s.both_at_once([s.accept_record("o-3")], [s.presence_record("away")])
    assert s.coalescer.transactions == 0 and s.transactions == 3


async def test_a_batch_that_must_be_rewound_raises_in_its_own_consumer() -> None:
    s = Service()

    async def broken(uow: Any, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
        raise ConnectionResetError("database went away")

    s.presence.handlers["presence.changed"] = broken
    with pytest.raises(ConnectionResetError):
        await s.both_at_once([s.accept_record("o-4")], [s.presence_record("busy")])
    assert s.commands.stats.handled == 2  # the other batch is handled, on its own
