"""No event lost, none handled twice, bad input dead-lettered: on a real broker and database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

import asyncpg
import pytest

from shared import contracts as c
from shared import topics
from tests import helpers
from tools import stack
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e


async def _work_items(dep: Deployment, conversation_id: str) -> int:
    conn = await asyncpg.connect(dep.database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM routing.work_items WHERE conversation_id = $1", conversation_id
        )
    finally:
        await conn.close()


async def test_same_arrival_twice_makes_one_work_item(deployment: Deployment, bus: Bus) -> None:
    async with running(helpers.routing(deployment)):
        arrival = c.ConversationArrived(conversation_id="c-dup", channel="chat")
        first = await bus.publish(arrival)
        await bus.publish(arrival, id=first.id)  # the same event redelivered
        await bus.publish(arrival)  # the same conversation under a new event id (a producer retry)
        await bus.publish(c.ConversationArrived(conversation_id="c-after", channel="chat"))
        await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-after")
        await asyncio.sleep(0.5)
        assert len(await bus.events(topics.ROUTING, "work.queued", conversation_id="c-dup")) == 1
        assert await _work_items(deployment, "c-dup") == 1


async def test_bad_arrivals_go_to_the_dlq_and_the_next_good_one_is_routed(deployment: Deployment, bus: Bus) -> None:
    async with running(helpers.routing(deployment), helpers.presence(deployment), helpers.sessions(deployment)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.send_raw(topics.CONVERSATIONS, b"{not json", key="c-bad")
        await bus.send_raw(
            topics.CONVERSATIONS,
            json.dumps(
                {"specversion": "1.0", "source": "/x", "type": "conversation.arrived", "data": {"channel": "chat"}}
            ).encode(),
            key="c-nocid",
        )
        await bus.publish(c.ConversationArrived(conversation_id="c-fax", channel="fax"))
        await bus.send_raw(
            topics.CONVERSATIONS,
            json.dumps({"specversion": "1.0", "source": "/x", "type": "conversation.teleported", "data": {}}).encode(),
            key="c-odd",
        )
        await bus.publish(
            c.ConversationArrived(conversation_id="c-good", channel="chat", customer=c.Customer(name="Grace Hopper"))
        )
        offer = await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id="c-good")
        assert offer[0].data["title"] == "Grace Hopper"

        # Each consumer of conversations.v1 judges a record on its own and names itself in the headers:
        # routing refuses all four; sessions (Home's waiting-work list) the three it cannot parse.
        every: list[Any] = []
        for _ in range(100):
            every = await bus.records(topics.dlq(topics.CONVERSATIONS))
            if len(every) >= 7:
                break
            await asyncio.sleep(0.1)
        by_consumer = Counter(dict(r.headers)["dlq.consumer"].decode() for r in every)
        assert by_consumer == {"routing:conversations.v1": 4, "sessions:conversations.v1": 3}, by_consumer
        dead = [r for r in every if dict(r.headers)["dlq.consumer"] == b"routing:conversations.v1"]
        reasons = {dict(r.headers)["dlq.reason"].decode() for r in dead}
        assert len(dead) == 4, reasons
        assert any(r.startswith("not JSON") for r in reasons)
        assert any("conversation_id: Field required" in r for r in reasons)
        assert any("unknown channel 'fax'" in r and "chat" in r for r in reasons)
        assert any("unknown type 'conversation.teleported'" in r for r in reasons)
        for rec in dead:
            h = {k: v.decode() for k, v in rec.headers}
            assert h["dlq.original_topic"] == deployment.topic(topics.CONVERSATIONS)
            assert int(h["dlq.original_offset"]) >= 0 and h["dlq.original_partition"].isdigit()
            assert h["dlq.consumer"] == "routing:conversations.v1"
        assert {r.value for r in dead} >= {b"{not json"}  # the original record, untouched


async def test_killed_between_commit_and_publish_publishes_after_restart(deployment: Deployment, bus: Bus) -> None:
    """A real routing process exits hard right after its outbox commit; its successor publishes."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": deployment.infra.bootstrap,
        "DATABASE_URL": deployment.database_url,
        "SWITCHBOARD_TOPIC_PREFIX": deployment.prefix,
        "ROUTING_DB_USER": stack.service_role("routing"),
        "ROUTING_DB_PASSWORD": stack.DB_PASSWORD,
        "ROUTING_CONFIG_FILE": helpers.DEMO_CONFIG,
        "ROUTING_FAULT_CRASH_BEFORE_PUBLISH": "true",
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "routing.main", "--port", "0"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await bus.publish(c.ConversationArrived(conversation_id="c-crash", channel="chat"))
        code = await asyncio.to_thread(proc.wait, 60)
        assert code == 137, proc.stderr.read().decode()[-2000:] if proc.stderr else code
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    conn = await asyncpg.connect(deployment.database_url)
    try:
        pending = await conn.fetchval("SELECT count(*) FROM routing.outbox")
    finally:
        await conn.close()
    assert pending >= 1, "the state change and its events were committed before the crash"
    assert await bus.events(topics.ROUTING, "work.queued", conversation_id="c-crash") == []

    async with running(helpers.routing(deployment)):
        await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-crash")
    assert len(await bus.events(topics.ROUTING, "work.queued", conversation_id="c-crash")) == 1
    assert await _work_items(deployment, "c-crash") == 1


async def test_impossible_commands_are_rejected_and_change_nothing(deployment: Deployment, bus: Bus) -> None:
    async with running(helpers.sessions(deployment)):
        unconfirmed = await bus.publish(c.CloseSession(agent_id="agent-7", session_id="conv-x"))
        home = await bus.publish(c.CloseSession(agent_id="agent-7", session_id="home", confirmed=True))
        other = await bus.publish(c.AcceptOffer(agent_id="agent-7", offer_id="nope"), subject="agent-8")
        await bus.send_raw(topics.SESSIONS_COMMANDS, b"garbage", key="agent-7")
        rejected = await bus.wait_for(topics.SESSIONS, "command.rejected", count=3, agent_id="agent-7")
        by_id = {e.data["command_id"]: e.data["reason"] for e in rejected}
        assert "no session 'conv-x'" in by_id[unconfirmed.id]
        assert by_id[home.id] == "the Home session cannot be closed"
        assert "acts on its own workspace only" in by_id[other.id]
        dead = await bus.records(topics.dlq(topics.SESSIONS_COMMANDS))
        for _ in range(50):
            if dead:
                break
            await asyncio.sleep(0.1)
            dead = await bus.records(topics.dlq(topics.SESSIONS_COMMANDS))
        assert dead and dead[0].value == b"garbage"
