"""Two sessions replicas in one consumer group, on real Kafka and PostgreSQL: conversations for many
agents at once, offered, accepted and closed, while presence follows the load. Each agent's events
stay numbered without a gap or a repeat, and the replicas never deadlock on each other's agents
(every batch locks the agents it is about first, in sorted order: `sessions.service.lock_agents`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from shared import contracts as c
from shared import topics
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e

AGENTS = [f"agent-{i:02}" for i in range(1, 31)]
CONVERSATIONS = 240  # eight rounds of every agent's 3 chat slots, arriving while others close


def config(tmp_path: Path) -> str:
    agents = "".join(f"    - {{id: {a}, capacity_profile: chats, queues: '*'}}\n" for a in AGENTS)
    path = tmp_path / "replicas.yaml"
    path.write_text(
        "routing:\n  channels:\n    chat: {}\n  capacity_profiles:\n    chats: {chat: 3}\n"
        "  queues:\n    - {name: general, channels: [chat], offer_timeout_s: 120}\n"
        f"  default_queues: {{chat: general}}\n  agents:\n{agents}"
    )
    return str(path)


async def test_two_sessions_replicas_keep_each_agents_order_and_never_deadlock(
    deployment: Deployment, bus: Bus, tmp_path: Path
) -> None:
    routing = helpers.routing(deployment, config_file=config(tmp_path))
    replicas = [helpers.sessions(deployment), helpers.sessions(deployment)]
    async with running(routing, *replicas, helpers.presence(deployment)):
        for agent in AGENTS:
            await bus.publish(c.AgentSignedIn(agent_id=agent))

        closed: set[str] = set()

        async def agents_at_work() -> None:
            """Every offer is accepted and every session closed as soon as seen: many agents' commands
            at once, in the order they come, while routing offers and presence follows the load."""
            answered: set[str] = set()
            while len(closed) < CONVERSATIONS:
                events = await bus.events(topics.SESSIONS)
                closed.update(ev.data["conversation_id"] for ev in events if ev.type == "session.closed")
                todo: list[c.Payload] = []
                for ev in events:
                    if ev.id in answered or ev.type not in ("offer.received", "session.started"):
                        continue
                    answered.add(ev.id)
                    d = ev.data
                    if ev.type == "offer.received":
                        todo.append(c.AcceptOffer(agent_id=d["agent_id"], offer_id=d["offer_id"]))
                    else:
                        todo.append(c.CloseSession(agent_id=d["agent_id"], session_id=d["session_id"], confirmed=True))
                await asyncio.gather(*(bus.publish(p) for p in todo))
                await asyncio.sleep(0.02)

        client = asyncio.create_task(agents_at_work())
        for i in range(CONVERSATIONS):
            await bus.publish(c.ConversationArrived(conversation_id=f"c-{i:03}", channel="chat"))
        try:
            await asyncio.wait_for(client, timeout=240)
        except TimeoutError:
            raise AssertionError(f"{len(closed)} of {CONVERSATIONS} conversations were closed in 4 minutes") from None
        events = await bus.events(topics.SESSIONS)
    seqs: dict[str, list[int]] = defaultdict(list)
    for ev in events:  # one partition per agent: read in the order they were written
        seqs[ev.data["agent_id"]].append(ev.data["seq"])
    assert set(seqs) == set(AGENTS)
    for agent, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"{agent}: {numbers}"
    assert len({ev.data["conversation_id"] for ev in events if ev.type == "session.started"}) == CONVERSATIONS
    # each replica handled its share of the topics' partitions
    assert all(any(co.stats.handled for co in rt.consumers) for rt in replicas)
    # no batch of either replica was retried: a deadlock between them is a retry (sqlstate 40P01)
    retried = {co.consumer_name: co.stats.transient_retries for rt in replicas for co in rt.consumers}
    assert sum(retried.values()) == 0, retried
