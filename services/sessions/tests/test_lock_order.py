"""Two sessions replicas must not deadlock on each other's agents: every batch about agents locks
them first, in sorted order (the end-to-end figure is the bench's `replicas` scenario)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sessions import service
from sessions.app import build_runtime
from sessions.settings import SessionsSettings
from sessions.store import FakeSessionsStore
from shared import contracts as c
from shared import topics
from shared.tx import MemoryDatabase


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, int]] = []

    async def bump_seqs(self, counts: dict[str, int]) -> dict[str, int]:
        self.calls.append(counts)
        return {}


async def test_a_batch_locks_its_agents_first_in_sorted_order_without_numbering_anything() -> None:
    store = Recorder()
    payloads: list[Any] = [
        c.AcceptOffer(agent_id="agent-9", offer_id="o-1"),
        c.PresenceChanged(agent_id="agent-10", status="busy", source="automatic"),
        c.ConversationArrived(conversation_id="c-1", channel="chat"),  # about no agent
        c.AcceptOffer(agent_id="agent-9", offer_id="o-2"),
    ]
    await service.lock_agents(SimpleNamespace(store=store), payloads)  # type: ignore[arg-type]
    assert store.calls == [{"agent-10": 0, "agent-9": 0}]
    assert list(store.calls[0]) == ["agent-10", "agent-9"]  # sorted: the order every replica takes
    await service.lock_agents(SimpleNamespace(store=store), [payloads[2]])  # type: ignore[arg-type]
    assert len(store.calls) == 1  # no agent: no statement


def test_every_consumer_of_an_agents_events_locks_them_first() -> None:
    runtime = build_runtime(SessionsSettings(), database=MemoryDatabase(FakeSessionsStore()))
    by_topic = {co.topic: co for co in runtime.consumers}
    for topic in (topics.ROUTING, topics.SESSIONS_COMMANDS, topics.PRESENCE):
        assert by_topic[topic].before_batch is service.lock_agents, topic


async def test_locking_an_agent_never_seen_numbers_nothing() -> None:
    fake = FakeSessionsStore()
    await fake.bump_seqs({"agent-1": 0})
    assert await fake.get_seq("agent-1") == 0
