"""Capacity invariants with two routing replicas in one consumer group, on real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from shared import contracts as c
from shared import topics
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e


async def _ledger(dep: Deployment) -> dict[str, dict[str, int]]:
    conn = await asyncpg.connect(dep.database_url)
    try:
        rows = await conn.fetch("SELECT agent_id, used FROM routing.agents WHERE configured")
        return {r["agent_id"]: {k: int(v) for k, v in json.loads(r["used"]).items()} for r in rows}
    finally:
        await conn.close()


async def test_burst_beyond_capacity_with_two_replicas(deployment: Deployment, bus: Bus) -> None:
    replicas = [helpers.routing(deployment), helpers.routing(deployment)]
    async with running(*replicas, helpers.sessions(deployment), helpers.presence(deployment)):
        # 20 chats wait while nobody is signed in ...
        for i in range(20):
            await bus.publish(c.ConversationArrived(conversation_id=f"c-{i:02d}", channel="chat"))
        await bus.wait_for(topics.ROUTING, "work.queued", count=20)
        # ... then two agents with 3 chat slots each sign in, and both replicas drain at once.
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.publish(c.AgentSignedIn(agent_id="agent-2"))
        offers = await bus.wait_for(topics.ROUTING, "work.offered", count=6)
        await asyncio.sleep(2.0)  # let any over-eager replica show itself
        offers = await bus.events(topics.ROUTING, "work.offered")
        assert len(offers) == 6
        assert sorted(o.data["conversation_id"] for o in offers) == [f"c-{i:02d}" for i in range(6)]
        per_agent: dict[str, int] = {}
        for o in offers:
            per_agent[o.data["agent_id"]] = per_agent.get(o.data["agent_id"], 0) + 1
        assert per_agent == {"agent-1": 3, "agent-2": 3}
        ledger = await _ledger(deployment)
        assert ledger["agent-1"]["chat"] == 3 and ledger["agent-2"]["chat"] == 3

        # A freed slot goes at once to the oldest waiting conversation that fits.
        first = next(o for o in offers if o.data["conversation_id"] == "c-00")
        offer = (await bus.wait_for(topics.SESSIONS, "offer.received", offer_id=first.data["offer_id"]))[0]
        await bus.publish(c.AcceptOffer(agent_id=offer.data["agent_id"], offer_id=offer.data["offer_id"]))
        started = await bus.wait_for(topics.SESSIONS, "session.started", conversation_id="c-00")
        await bus.publish(
            c.CloseSession(agent_id=offer.data["agent_id"], session_id=started[0].data["session_id"], confirmed=True)
        )
        nxt = await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="c-06")
        assert nxt[0].data["agent_id"] == offer.data["agent_id"]
        await asyncio.sleep(1.0)
        assert len(await bus.events(topics.ROUTING, "work.offered")) == 7


async def test_a_voice_call_blocks_every_other_offer(deployment: Deployment, bus: Bus) -> None:
    async with running(helpers.routing(deployment), helpers.sessions(deployment), helpers.presence(deployment)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1")
        await bus.publish(c.ConversationArrived(conversation_id="v-1", channel="voice"))
        await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="v-1", agent_id="agent-1")
        for i in range(3):
            await bus.publish(c.ConversationArrived(conversation_id=f"chat-{i}", channel="chat"))
        await bus.wait_for(topics.ROUTING, "work.queued", count=4)
        offered = {e.data["conversation_id"] for e in await bus.quiet(topics.ROUTING, "work.offered", seconds=2.0)}
        assert offered == {"v-1"}  # the reserved voice call is exclusive: no chat beside it
        ledger = await _ledger(deployment)
        assert ledger["agent-1"] == {"voice": 1}
