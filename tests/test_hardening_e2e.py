"""Hostile input on the real broker and database (issue 12): refused at the edge with a reason, and
nothing stops a consumer or the outbox relay."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import contracts as c
from shared import topics
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e

FIVE_KB = 5 * 1024


async def dead_letters(bus: Bus, topic: str, count: int, consumer: str, timeout: float = 30.0) -> list[Any]:
    """The DLQ records of `topic` written by `consumer`, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    mine: list[ConsumerRecord[Any, Any]] = []
    while time.monotonic() < deadline:
        mine = [r for r in await bus.records(topics.dlq(topic)) if header(r, "dlq.consumer") == consumer]
        if len(mine) >= count:
            return mine
        await asyncio.sleep(0.1)
    raise AssertionError(f"waited {timeout}s for {count} dead letters of {topic} from {consumer}; saw {len(mine)}")


def header(rec: ConsumerRecord[Any, Any], name: str) -> str | None:
    value = dict(rec.headers or ()).get(name)
    return value.decode() if value is not None else None


def raw_command(type_: str, data: dict[str, Any], *, id: str) -> bytes:
    return json.dumps({"specversion": "1.0", "id": id, "source": "/tests", "type": type_, "data": data}).encode()


async def test_twelve_commands_with_5kb_ids_are_refused_and_sessions_handles_the_next(
    deployment: Deployment, bus: Bus
) -> None:
    runtime = helpers.sessions(deployment)
    commands = next(cons for cons in runtime.consumers if cons.topic == topics.SESSIONS_COMMANDS)
    assert commands.on_invalid is not None, (
        "sessions' command consumer must answer refused commands: pass on_invalid=contracts.reject_invalid_command"
    )
    async with running(runtime):
        agent = "agent-7"
        sent: list[tuple[str, str]] = []  # (command id as sent, the field refused)
        for i in range(4):
            big_id = f"id{i}-" + "x" * FIVE_KB
            await bus.send_raw(
                topics.SESSIONS_COMMANDS,
                raw_command("offer.accept", {"agent_id": agent, "offer_id": "o-1"}, id=big_id),
                key=agent,
            )
            sent.append((big_id, "id"))
            record_id = f"rec{i}"
            record = {"type": "case", "id": "r" * FIVE_KB}
            await bus.send_raw(
                topics.SESSIONS_COMMANDS,
                raw_command("record.link", {"agent_id": agent, "session_id": "home", "record": record}, id=record_id),
                key=agent,
            )
            sent.append((record_id, "record.id"))
            tab_id = f"tab{i}"
            await bus.send_raw(
                topics.SESSIONS_COMMANDS,
                raw_command("tab.open", {"agent_id": agent, "session_id": "home", "kind": "k" * FIVE_KB}, id=tab_id),
                key=agent,
            )
            sent.append((tab_id, "kind"))

        rejected = await bus.wait_for(topics.SESSIONS, "command.rejected", count=12, agent_id=agent)
        by_id = {e.data["command_id"]: e.data["reason"] for e in rejected}
        for command_id, field in sent:
            reason = by_id[command_id[: c.MAX_ID_CHARS]]
            assert f"{field}: String should have at most" in reason, reason

        dead = await dead_letters(bus, topics.SESSIONS_COMMANDS, 12, "sessions:sessions.commands.v1")
        assert len(dead) == 12
        for rec in dead:
            assert header(rec, "dlq.kind") == "poison"
            assert "should have at most" in (header(rec, "dlq.reason") or "")
            assert header(rec, "dlq.original_topic") == deployment.topic(topics.SESSIONS_COMMANDS)

        # still up, still handling: the next command is answered
        home = await bus.publish(c.CloseSession(agent_id=agent, session_id="home", confirmed=True))
        answer = await bus.wait_for(topics.SESSIONS, "command.rejected", command_id=home.id)
        assert answer[0].data["reason"] == "the Home session cannot be closed"
        assert commands.stats.consecutive_failures == 0


async def test_an_arrival_without_id_and_a_900kb_name_go_to_the_dlq_with_reasons(
    deployment: Deployment, bus: Bus
) -> None:
    async with running(helpers.routing(deployment)):
        no_id = {"specversion": "1.0", "source": "/x", "type": "conversation.arrived"}
        no_id["data"] = {"conversation_id": "c-noid", "channel": "chat"}  # type: ignore[assignment]
        await bus.send_raw(topics.CONVERSATIONS, json.dumps(no_id).encode(), key="c-noid")
        huge = c.event(c.ConversationArrived(conversation_id="c-huge", channel="chat"), source="/tests").model_dump(
            mode="json"
        )
        huge["data"]["customer"] = {"name": "n" * 900_000}
        await bus.send_raw(topics.CONVERSATIONS, json.dumps(huge).encode(), key="c-huge")
        long_name = c.event(c.ConversationArrived(conversation_id="c-long", channel="chat"), source="/tests")
        doc = long_name.model_dump(mode="json")
        doc["data"]["customer"] = {"name": "n" * 10_000}
        await bus.send_raw(topics.CONVERSATIONS, json.dumps(doc).encode(), key="c-long")
        await bus.publish(c.ConversationArrived(conversation_id="c-fine", channel="chat"))

        await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-fine")
        dead = await dead_letters(bus, topics.CONVERSATIONS, 3, "routing:conversations.v1")
        reasons = {header(r, "dlq.reason") for r in dead}
        assert "invalid CloudEvent envelope: id: Field required" in reasons, reasons
        assert any(r and r.startswith("record is ") and "limited to 524,288 bytes" in r for r in reasons), reasons
        assert any(r and "customer.name: String should have at most 200 characters" in r for r in reasons), reasons
        for cid in ("c-noid", "c-huge", "c-long"):
            assert await bus.events(topics.ROUTING, conversation_id=cid) == []


async def _outbox_row(conn: asyncpg.Connection, dep: Deployment, payload: bytes, key: str, type_: str) -> int:
    return await conn.fetchval(
        "INSERT INTO routing.outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
        dep.topic(topics.ROUTING),
        key,
        payload,
        json.dumps({"ce_type": type_}),
    )


def _queued(cid: str) -> bytes:
    payload = c.WorkQueued(conversation_id=cid, channel="chat", queue="chat", position=1)
    return c.event(payload, source="/tests").to_bytes()


async def _wait_dead(conn: asyncpg.Connection, row_id: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await conn.fetchrow("SELECT dead_at, dead_reason FROM routing.outbox WHERE id = $1", row_id)
        if row is not None and row["dead_at"] is not None:
            return str(row["dead_reason"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"outbox row {row_id} was never marked dead")


async def _wait_gone(conn: asyncpg.Connection, ids: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await conn.fetchval("SELECT count(*) FROM routing.outbox WHERE id = ANY($1::bigint[])", ids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"outbox rows {ids} were never deleted after publishing")


async def test_an_outbox_row_too_large_for_the_producer_is_dead_lettered_and_the_relay_goes_on(
    deployment: Deployment, bus: Bus
) -> None:
    async with running(helpers.routing(deployment)):
        conn = await asyncpg.connect(deployment.database_url)
        try:
            async with conn.transaction():  # one commit: the relay sees all three rows in order
                before = await _outbox_row(conn, deployment, _queued("c-before"), "c-before", "work.queued")
                big = await _outbox_row(conn, deployment, b"{" + b" " * 1_500_000 + b"}", "c-big", "work.queued")
                after = await _outbox_row(conn, deployment, _queued("c-after"), "c-after", "work.queued")
            await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-after")
            assert await bus.events(topics.ROUTING, "work.queued", conversation_id="c-before")
            reason = await _wait_dead(conn, big)
            assert "the producer sends at most 1,048,576" in reason, reason
            await _wait_gone(conn, [before, after])  # published rows are deleted; the dead one stays
        finally:
            await conn.close()
        [notice] = await dead_letters(bus, topics.ROUTING, 1, "routing:outbox")
        assert header(notice, "dlq.kind") == "outbox_oversize"
        assert header(notice, "dlq.outbox_id") == str(big)
        body = json.loads(notice.value)
        assert body["outbox_id"] == big and body["size_bytes"] == 1_500_002 and body["type"] == "work.queued"
        assert notice.key == b"c-big"


async def test_an_outbox_row_the_topic_refuses_is_dead_lettered_and_the_relay_goes_on(
    deployment: Deployment, bus: Bus
) -> None:
    """The broker, not the producer, refuses the row: the topic takes at most 300 KB per record."""
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.infra.bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, deployment.topic(topics.ROUTING), {"max.message.bytes": "300000"}
                )
            ]
        )
    finally:
        await admin.close()
    async with running(helpers.routing(deployment)):
        conn = await asyncpg.connect(deployment.database_url)
        try:
            async with conn.transaction():
                await _outbox_row(conn, deployment, _queued("c-one"), "c-one", "work.queued")
                big = await _outbox_row(conn, deployment, b"{" + b" " * 400_000 + b"}", "c-one", "work.queued")
                await _outbox_row(conn, deployment, _queued("c-two"), "c-one", "work.queued")
            await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-two")
            assert await bus.events(topics.ROUTING, "work.queued", conversation_id="c-one")
            reason = await _wait_dead(conn, big)
            assert "max.message.bytes" in reason, reason
        finally:
            await conn.close()
        [notice] = await dead_letters(bus, topics.ROUTING, 1, "routing:outbox")
        assert header(notice, "dlq.outbox_id") == str(big)
