"""A batch whose first statements run ahead (`Consumer.ahead`) ends as the same records handled one
batch each: the same events, in the same order, for the same agents, and the same store. In memory,
with the fake store, whose statements mirror the SQL's; the store contract checks that each `*_many`
answers as its one-by-one call does against PostgreSQL."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiokafka import ConsumerRecord

from sessions.app import build_runtime
from sessions.settings import SessionsSettings
from sessions.store import FakeSessionsStore
from shared import contracts as c
from shared import topics
from shared.tx import MemoryDatabase
from tools.testing import MemoryBus, in_memory

EXPIRES = datetime.now(UTC) + timedelta(minutes=5)


def offered(agent: str, cid: str) -> c.WorkOffered:
    conversation = {"conversation_id": cid, "customer": {"name": f"Customer {cid}"}}
    return c.WorkOffered(
        agent_id=agent, offer_id=f"o-{cid}", conversation_id=cid, channel="chat", queue="general",
        expires_at=EXPIRES, conversation=conversation,
    )  # fmt: skip


def assigned(agent: str, cid: str, *, visitor: bool = False, **kw: Any) -> c.WorkAssigned:
    customer = {"authenticated": False} if visitor else {"name": f"Customer {cid}"}
    return c.WorkAssigned(
        agent_id=agent, conversation_id=cid, channel="chat", queue="general", offer_id=f"o-{cid}",
        conversation={"conversation_id": cid, "customer": customer}, **kw,
    )  # fmt: skip


def queued(cid: str) -> c.WorkQueued:
    return c.WorkQueued(conversation_id=cid, channel="chat", queue="general", position=1)


def released(agent: str, cid: str) -> c.WorkReleased:
    return c.WorkReleased(agent_id=agent, conversation_id=cid, channel="chat")


def close(agent: str, cid: str, **kw: Any) -> c.CloseSession:
    return c.CloseSession(agent_id=agent, session_id=f"conv-{cid}", confirmed=True, **kw)


# Before: a-8 and a-9 hold c-8 and c-9 (their sessions open); a-10 holds c-12, which the batch
# transfers to a-2.
SETUP: list[c.Payload] = [assigned("a-8", "c-8"), assigned("a-9", "c-9"), assigned("a-10", "c-12")]

# routing.v1 in one batch. A record about an agent or a conversation named before it runs ahead in
# a later round trip when what came before it was all its handler did (c-1 queued, offered to a-1,
# assigned to a-1: three round trips), in its turn otherwise (c-20 queued again after its assignment,
# whose handler goes on to open the session). The rest runs ahead in the first.
ROUTING: list[c.Payload] = [
    queued("c-1"),
    offered("a-1", "c-1"),
    offered("a-4", "c-4"),
    queued("c-3"),
    assigned("a-1", "c-1"),
    offered("a-5", "c-5"),
    offered("a-3", "c-3"),
    assigned("a-6", "c-6"),
    assigned("a-7", "c-7", visitor=True),
    assigned("a-11", "c-13"),
    assigned("a-20", "c-20"),
    released("a-8", "c-8"),
    queued("c-10"),
    released("a-9", "c-9"),
    queued("c-11"),
    queued("c-20"),  # back in a queue after its assignment: in its turn, after it
    assigned("a-2", "c-12", previous_agent_id="a-10", how="transferred"),
]

# sessions.commands.v1 in one batch: a-4 and a-5 accept (ahead); a-6 and a-7 close theirs (ahead,
# a-7's with a note); a-1 closes with a disposition (in its turn: its refusal is read first).
COMMANDS: list[c.Payload] = [
    c.AcceptOffer(agent_id="a-4", offer_id="o-c-4"),
    close("a-6", "c-6"),
    c.AcceptOffer(agent_id="a-5", offer_id="o-c-5"),
    close("a-7", "c-7", note="called back"),
    close("a-1", "c-1", disposition="resolved"),
]


def settings(tmp_path: Path) -> SessionsSettings:
    path = tmp_path / "switchboard.yaml"
    config = {"sessions": {"dispositions": [{"code": "resolved", "label": "Resolved"}]}}
    path.write_text(yaml.safe_dump(config))
    return SessionsSettings(config_file=str(path))


def record(topic: str, payload: c.Payload, n: int) -> ConsumerRecord[Any, Any]:
    ev = c.event(payload, source="/test", id=f"ev-{topic}-{n}")
    value = ev.to_bytes()
    return ConsumerRecord(topic, 0, n, 0, 0, c.key_of(payload).encode(), value, None, 0, len(value), [])


class Counted(FakeSessionsStore):
    """The fake, counting what ran ahead: (method, how many) per call."""

    def __init__(self, ahead: list[tuple[str, int]]) -> None:
        super().__init__()
        self._ahead = ahead  # not rolled back with the rows: nothing in these batches rolls back

    async def receive_offers(self, offers: Any) -> Any:
        self._ahead.append(("receive_offers", len(offers)))
        return await super().receive_offers(offers)

    async def assign_many(self, assignments: Any) -> Any:
        self._ahead.append(("assign_many", len(assignments)))
        return await super().assign_many(assignments)

    async def open_sessions(self, opens: Any) -> Any:
        self._ahead.append(("open_sessions", len(opens)))
        return await super().open_sessions(opens)

    async def release_assignments(self, releases: Any) -> Any:
        self._ahead.append(("release_assignments", len(releases)))
        return await super().release_assignments(releases)

    async def upsert_waiting_works(self, works: Any) -> Any:
        self._ahead.append(("upsert_waiting_works", len(works)))
        return await super().upsert_waiting_works(works)

    async def answer_offers(self, answers: Any) -> Any:
        self._ahead.append(("answer_offers", len(answers)))
        return await super().answer_offers(answers)

    async def close_and_unfocus_many(self, closes: Any) -> Any:
        self._ahead.append(("close_and_unfocus_many", len(closes)))
        return await super().close_and_unfocus_many(closes)


AHEAD: list[tuple[str, int]] = []


async def run(tmp_path: Path, together: bool) -> tuple[list[tuple[str, str | None, dict[str, Any]]], Any]:
    """The events committed (type, subject, data without times and ids) and the fake's rows."""
    AHEAD.clear()
    fake = Counted(AHEAD)
    async with in_memory(build_runtime(settings(tmp_path), database=MemoryDatabase(fake))) as bus:
        for payload in SETUP:
            await bus.send(payload)
        AHEAD.clear()
        consumers = {consumer.topic: consumer for consumer in bus.runtime.consumers}
        if not together:
            for consumer in consumers.values():
                consumer.ahead = {}  # every statement in its handler's turn
        for topic, payloads in ((topics.ROUTING, ROUTING), (topics.SESSIONS_COMMANDS, COMMANDS)):
            records = [record(topic, p, n) for n, p in enumerate(payloads)]
            for batch in [records] if together else [[r] for r in records]:
                await consumers[topic].process(batch)
        return events(bus), rows(fake)


def events(bus: MemoryBus) -> list[tuple[str, str | None, dict[str, Any]]]:
    timeless = {"expires_at", "time", "opened_at", "closed_at", "command_id"}
    return [
        (e.type, e.subject, {k: v for k, v in e.data.items() if k not in timeless})
        for e in bus.emitted()
    ]  # fmt: skip


def rows(fake: FakeSessionsStore) -> Any:
    return timeless(copy.deepcopy({k: v for k, v in vars(fake).items() if k != "_ahead"}))


def timeless(value: Any) -> Any:
    """`value` with every time in it replaced (each run has its own now)."""
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(timeless(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, timeless(dataclasses.asdict(value)))
    return value


async def test_a_batch_run_ahead_ends_as_its_records_handled_one_by_one(tmp_path: Path) -> None:
    apart_events, apart_rows = await run(tmp_path, together=False)
    assert AHEAD == []
    together_events, together_rows = await run(tmp_path, together=True)
    assert sorted(AHEAD) == [
        ("answer_offers", 2),  # a-4, a-5
        ("assign_many", 1),  # third: c-1's assignment to a-1, after its offer, after its queueing
        ("assign_many", 5),  # a-6, a-7, a-11, a-20 and the transfer to a-2 (nothing before named a-2, a-10, c-12)
        ("close_and_unfocus_many", 2),  # a-6, a-7
        ("open_sessions", 1),  # a-1's
        ("open_sessions", 3),  # a-6's, a-11's, a-20's: a-7's title needs a visitor number, c-12 was a-10's
        ("receive_offers", 2),  # first: a-4, a-5
        ("receive_offers", 2),  # second: c-1's to a-1 and c-3's to a-3, each after its queueing
        ("release_assignments", 2),  # c-8, c-9
        ("upsert_waiting_works", 4),  # c-1, c-3, c-10, c-11; c-20's in its turn, after its assignment
    ]
    assert [t for t, _, _ in together_events].count("session.started") == 9  # 3 set up; c-1, c-6, c-7, c-13, c-20, c-12
    assert together_events == apart_events
    assert together_rows == apart_rows
