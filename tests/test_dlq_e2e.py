"""Dead letters an operator can act on (issue 12 item 5), on real Kafka and Postgres: a running
routing dead-letters what it cannot handle; `switchboard dlq` lists and shows it; once the
configuration is fixed, a replay is handled, and a second replay of the same record is not."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from routing import config
from routing.app import build_runtime
from routing.settings import RoutingSettings
from shared import contracts as c
from shared import topics
from tools import dlq
from tools.testing import Bus, Deployment, running

CHAT_ONLY = {
    "channels": {"chat": {}},
    "queues": [{"name": "general", "channels": ["chat"]}],
    "default_queues": {"chat": "general"},
}
WITH_SMS = {
    "channels": {"chat": {}, "sms": {}},
    "queues": [{"name": "general", "channels": ["chat", "sms"]}],
    "default_queues": {"chat": "general", "sms": "general"},
}


def target(dep: Deployment) -> dlq.Target:
    return dlq.Target(dep.infra.bootstrap, dep.prefix)


async def until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"waited {timeout}s for {what}")


async def committed(dep: Deployment, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offsets on `topic`, per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=dep.infra.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == dep.topic(topic)}


async def run_cli(dep: Deployment, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await dlq.run(dlq.build_parser().parse_args(["dlq", *argv]), target(dep))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.e2e
async def test_a_dead_letter_is_listed_shown_fixed_and_replayed_once(
    deployment: Deployment, bus: Bus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump({"routing": CHAT_ONLY}))
    runtime = build_runtime(deployment.settings(RoutingSettings, "routing", config_file=str(path)))
    async with running(runtime):
        await bus.send_raw(topics.CONVERSATIONS, b"{not json", key="c-garbled")
        sms = await bus.publish(c.ConversationArrived(conversation_id="c-sms", channel="sms"))
        dead = topics.dlq(topics.CONVERSATIONS)
        await until("two dead letters", lambda: _count(bus, dead, 2))
        source = {r.key: r for r in await until("the two records", lambda: _count(bus, topics.CONVERSATIONS, 2))}

        # list: where each came from, who dead-lettered it and why
        report = await dlq.list_dead_letters(target(deployment), topic=topics.CONVERSATIONS)
        listed = report["topics"][deployment.topic(dead)]
        assert (listed["retained"], listed["count"]) == (2, 2)
        by_key = {r["key"]: r for r in listed["records"]}
        garbled, unrouted = by_key["c-garbled"], by_key["c-sms"]
        for rec in (garbled, unrouted):
            original = source[rec["key"].encode()]
            assert rec["consumer"] == "routing:conversations.v1" and rec["kind"] == "poison"
            assert rec["original"] == {
                "topic": deployment.topic(topics.CONVERSATIONS),
                "partition": original.partition,
                "offset": original.offset,
            }
            assert abs(datetime.fromisoformat(rec["time"]) - datetime.now(UTC)) < timedelta(minutes=5)
        assert "not JSON" in garbled["reason"] and garbled["event_id"] is None
        assert "unknown channel 'sms'" in unrouted["reason"] and unrouted["event_id"] == sms.id
        code, out, _ = await run_cli(deployment, capsys, "list", "--topic", dead)
        assert code == 0 and "conversations.v1.dlq: 2 dead letters" in out and "unknown channel 'sms'" in out
        code, out, _ = await run_cli(
            deployment, capsys, "list", "--limit", "1", "--consumer", "routing:conversations.v1"
        )
        assert code == 0 and "... and 1 earlier (raise --limit" in out and out.count("reason:") == 1

        # show: headers and the body, pretty-printed when it is JSON
        shown = await dlq.show(target(deployment), dead, unrouted["partition"], unrouted["offset"])
        assert shown["body"]["data"]["channel"] == "sms" and shown["still_invalid"] is None
        assert shown["headers"]["dlq.original_offset"] == str(source[b"c-sms"].offset)
        code, out, _ = await run_cli(
            deployment, capsys, "show", dead, str(garbled["partition"]), str(garbled["offset"])
        )
        assert code == 0 and "{not json" in out and "still invalid: not JSON" in out

        # a dry run publishes nothing and says the garbled record would fail again
        before = len(await bus.records(topics.CONVERSATIONS))
        planned = await dlq.replay(target(deployment), consumer="routing:conversations.v1", dry_run=True)
        assert [r["event_id"] for r in planned.replayed] == [sms.id]
        assert [r["key"] for r in planned.skipped] == ["c-garbled"] and "not JSON" in planned.skipped[0]["skipped"]
        assert len(await bus.records(topics.CONVERSATIONS)) == before

        # the operator adds the channel, then replays: routing queues the conversation
        async with runtime.transaction() as uow:
            await config.apply(uow.store, config.parse(yaml.safe_dump({"routing": WITH_SMS})), source="test")
        done = await dlq.replay(target(deployment), consumer="routing:conversations.v1")
        assert [r["event_id"] for r in done.replayed] == [sms.id] and len(done.skipped) == 1
        await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-sms")
        replayed = (await until("the replayed record", lambda: _count(bus, topics.CONVERSATIONS, before + 1)))[before:]
        assert len(replayed) == 1 and replayed[0].key == b"c-sms" and replayed[0].value == source[b"c-sms"].value
        headers = dict(replayed[0].headers)
        assert (
            headers[dlq.REPLAYED_FROM].decode()
            == f"{deployment.topic(dead)}:{unrouted['partition']}:{unrouted['offset']}"
        )
        assert headers["ce_type"] == b"conversation.arrived"

        # replayed again: consumed (routing's group commits past it) but handled once
        code, out, _ = await run_cli(
            deployment, capsys, "replay", "--topic", dead, "--offset", f"{unrouted['partition']}:{unrouted['offset']}"
        )
        assert code == 0 and "1 replayed, 0 skipped" in out
        again = (await until("the second replay", lambda: _count(bus, topics.CONVERSATIONS, before + 2)))[-1]
        group = f"{deployment.prefix}routing.{topics.CONVERSATIONS}"
        await until(
            "routing to commit past the second replay",
            lambda: _past(deployment, group, again.partition, again.offset),
        )
        queued = await bus.events(topics.ROUTING, "work.queued", conversation_id="c-sms")
        assert len(queued) == 1
        assert len(await bus.records(dead)) == 2  # nothing dead-lettered by the replays


@pytest.mark.e2e
async def test_replay_writes_each_original_record_once_and_only_back_where_it_came_from(
    deployment: Deployment, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = topics.dlq(topics.CONVERSATIONS)
    arrival = c.event(c.ConversationArrived(conversation_id="c-7", channel="chat"), source="/tests")
    home = [("dlq.original_topic", deployment.topic(topics.CONVERSATIONS).encode())]
    at = [("dlq.original_partition", b"0"), ("dlq.original_offset", b"7")]
    # the same record dead-lettered by two consumers of the topic, and one whose header points elsewhere
    for consumer in (b"routing:conversations.v1", b"assist:conversations.v1"):
        await bus.send_raw(dead, arrival.to_bytes(), key="c-7", headers=[*home, *at, ("dlq.consumer", consumer)])
    forged = [("dlq.original_topic", deployment.topic(topics.SESSIONS_COMMANDS).encode())]
    command = c.event(c.AcceptOffer(agent_id="agent-1", offer_id="o-1"), source="/tests")
    await bus.send_raw(dead, command.to_bytes(), key="agent-1", headers=forged)
    await until("three dead letters", lambda: _count(bus, dead, 3))

    outcome = await dlq.replay(target(deployment), topic=topics.CONVERSATIONS, everything=True)
    assert [r["event_id"] for r in outcome.replayed] == [arrival.id]
    reasons = sorted(r["skipped"] for r in outcome.skipped)
    assert "replayed once" in reasons[-1] and "not " + deployment.topic(topics.CONVERSATIONS) in reasons[0]
    replayed = await until("the replay", lambda: _count(bus, topics.CONVERSATIONS, 1))
    assert [r.value for r in replayed] == [arrival.to_bytes()]
    code, out, _ = await run_cli(deployment, capsys, "list", "--since", "2999-01-01T00:00:00Z")
    assert code == 0 and out.strip().endswith("no dead letters match the filters")


@pytest.mark.e2e
async def test_dlq_commands_say_what_to_do(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(deployment, capsys, "list", "--topic", topics.PRESENCE_COMMANDS)
    empty = f"{deployment.topic(topics.dlq(topics.PRESENCE_COMMANDS))}: empty"
    assert code == 0 and out.strip().splitlines() == [empty, "no dead letters"]
    code, _, err = await run_cli(deployment, capsys, "list", "--topic", "orders.v1")
    assert code == 2 and "unknown topic 'orders.v1'" in err and "conversations.v1" in err
    code, _, err = await run_cli(deployment, capsys, "replay", "--topic", topics.CONVERSATIONS)
    assert code == 2 and "add --all" in err
    code, _, err = await run_cli(deployment, capsys, "replay", "--consumer", "routing:conversations.v1")
    assert code == 2 and "no dead letters by routing:conversations.v1" in err
    code, _, err = await run_cli(deployment, capsys, "show", topics.CONVERSATIONS, "0", "5")
    assert code == 2 and "no record at" in err and "no records" in err
    code, _, err = await run_cli(deployment, capsys, "list", "--since", "yesterday")
    assert code == 2 and "--since 'yesterday'" in err
    absent = dlq.Target(deployment.infra.bootstrap, "no-such-deployment.")
    code = await dlq.run(dlq.build_parser().parse_args(["dlq", "list"]), absent)
    assert code == 2 and "no DLQ topics" in capsys.readouterr().err


def test_since_and_positions_are_parsed_or_explained() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert dlq.parse_since("90m", now) == now - timedelta(minutes=90)
    assert dlq.parse_since("2026-11-21T10:00:00", now) == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert dlq.parse_position("3:17", 4) == (3, 17) and dlq.parse_position("17", 1) == (0, 17)
    with pytest.raises(dlq.DlqError, match="give PARTITION:OFFSET"):
        dlq.parse_position("17", 3)
    t = dlq.Target("localhost:1", "x.")
    assert dlq.dlq_topic(t, "routing.v1") == dlq.dlq_topic(t, "x.routing.v1.dlq") == "x.routing.v1.dlq"


async def _count(bus: Bus, topic: str, n: int) -> list[Any]:
    recs = await bus.records(topic)
    return recs if len(recs) >= n else []


async def _past(dep: Deployment, group: str, partition: int, offset: int) -> bool:
    return (await committed(dep, group, topics.CONVERSATIONS)).get(partition, -1) > offset
