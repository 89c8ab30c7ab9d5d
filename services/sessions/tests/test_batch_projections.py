"""Presences and arrivals are stored once per batch (one statement each), with the batch's last word
per agent and per conversation, in the batch's transaction."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from sessions import service
from sessions.app import build_runtime
from sessions.settings import SessionsSettings
from sessions.store import FakeSessionsStore
from shared import contracts as c
from shared.tx import MemoryDatabase
from tools.testing import in_memory


class Counting(FakeSessionsStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, list[str]]] = []

    async def upsert_presences(self, presences: list[Any]) -> None:
        self.writes.append(("presences", [p.agent_id for p in presences]))
        await super().upsert_presences(presences)

    async def upsert_conversations(self, infos: list[Any]) -> None:
        self.writes.append(("conversations", [i.conversation_id for i in infos]))
        await super().upsert_conversations(infos)


async def test_a_batch_stores_its_presences_and_arrivals_in_one_write_each_last_word_winning() -> None:
    fake = Counting()
    runtime = build_runtime(SessionsSettings(), database=MemoryDatabase(fake))
    async with in_memory(runtime) as bus:
        by_topic = {co.topic: co for co in runtime.consumers}

        def record(offset: int, payload: c.Payload) -> ConsumerRecord[bytes, bytes]:
            value = c.event(payload, source="/test").to_bytes()
            return ConsumerRecord(runtime.names(payload.TOPIC), 0, offset, 0, 0, b"k", value, None, 1, len(value), [])

        await by_topic[c.PresenceChanged.TOPIC].process(
            [
                record(1, c.PresenceChanged(agent_id="agent-2", status="available", source="manual")),
                record(2, c.PresenceChanged(agent_id="agent-1", status="available", source="manual")),
                record(3, c.PresenceChanged(agent_id="agent-2", status="busy", source="automatic", base="busy")),
            ]
        )
        assert fake.writes == [("presences", ["agent-2", "agent-1"])]
        assert (await fake.find_presence("agent-2")).status == "busy"  # type: ignore[union-attr]
        assert await fake.find_session("agent-1", "home") is not None  # the agent exists, with its Home
        # every change is still announced on the agent's topic, in order
        assert [(e.data["agent_id"], e.data["status"]) for e in bus.emitted("presence.updated")] == [
            ("agent-2", "available"),
            ("agent-1", "available"),
            ("agent-2", "busy"),
        ]

        fake.writes.clear()
        await fake.upsert_waiting_work("c-1", "chat", "general", "waiting", service._now())
        await by_topic[c.ConversationArrived.TOPIC].process(
            [
                record(1, c.ConversationArrived(conversation_id="c-1", channel="chat")),
                record(2, c.ConversationArrived(conversation_id="c-2", channel="chat", subject="Refund")),
                record(3, c.ConversationEnded(conversation_id="c-1")),  # ended after arriving, in the batch
            ]
        )
        assert fake.writes == [("conversations", ["c-2"])]
        assert "c-1" not in fake.conversations and "c-1" not in fake.waiting
        assert fake.conversations["c-2"].title == "Refund"

        fake.writes.clear()
        await by_topic[c.ConversationArrived.TOPIC].process([record(4, c.ConversationEnded(conversation_id="c-2"))])
        assert fake.writes == [] and "c-2" not in fake.conversations  # nothing pending: no write
