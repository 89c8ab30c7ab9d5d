"""routing's main flows through its real consumers on FastStream's TestKafkaBroker, with the fake
store (no Kafka, no PostgreSQL). The drain loop is a background task, so the tests run its step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing import domain, service
from routing.app import build_runtime, create_app
from routing.service import RoutingRuntime
from routing.settings import RoutingSettings
from routing.store import FakeRoutingStore, Reservation
from shared import contracts as c
from shared.auth import DEV_SECRET, Auth
from shared.tx import MemoryDatabase
from tools.testing import MemoryBus, in_memory

CONFIG = """
routing:
  channels:
    chat: {}
    voice: {exclusive: true}
  capacity_profiles:
    standard: {chat: 3, voice: 1}
  queues:
    - {name: support, channels: [chat, voice], offer_timeout_s: 30}
    - {name: billing, channels: [chat]}
  default_queues: {chat: support, voice: support}
  agents:
    - {id: agent-1, capacity_profile: standard, queues: "*"}
    - {id: agent-2, capacity_profile: standard, queues: "*"}
"""


@dataclass
class Routing:
    bus: MemoryBus
    runtime: RoutingRuntime
    store: FakeRoutingStore

    async def arrive(self, cid: str, channel: str = "chat", **kw: Any) -> None:
        await self.bus.send(c.ConversationArrived(conversation_id=cid, channel=channel, **kw))

    async def presence(self, agent: str, status: str = "available") -> None:
        await self.bus.send(c.PresenceChanged(agent_id=agent, status=status, base=status, source="manual"))

    async def drain(self) -> int:
        return await service.drain_once(self.runtime)

    def events(self, type: str, **where: Any) -> list[dict[str, Any]]:
        return [e.data for e in self.bus.emitted(type) if all(e.data.get(k) == v for k, v in where.items())]

    def offer(self, cid: str) -> dict[str, Any]:
        return self.events("work.offered", conversation_id=cid)[-1]

    async def accept(self, cid: str) -> None:
        o = self.offer(cid)
        await self.bus.send(
            c.OfferAccepted(
                agent_id=o["agent_id"],
                offer_id=o["offer_id"],
                conversation_id=cid,
                channel=o["channel"],
                expires_at=o["expires_at"],
            )
        )

    def used(self, agent: str) -> dict[str, int]:
        return {ch: n for ch, n in self.store.agents[agent].used.items() if n}


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "switchboard.yaml"
    path.write_text(CONFIG)
    return str(path)


@pytest.fixture
async def routing(config_file: str) -> AsyncIterator[Routing]:
    fake = FakeRoutingStore()
    runtime = build_runtime(RoutingSettings(config_file=config_file), database=MemoryDatabase(fake))
    async with in_memory(runtime) as bus:  # applies the configuration file at start
        yield Routing(bus, runtime, fake)


async def test_an_arrival_is_queued_then_offered_to_an_available_agent(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("c-1")
    [queued] = routing.events("work.queued")
    assert queued["conversation_id"] == "c-1" and queued["queue"] == "support" and queued["position"] == 1
    # offered in the transaction that queued it: the drain loop has nothing left to place
    offer = routing.offer("c-1")
    assert offer["agent_id"] == "agent-1" and offer["queue"] == "support"
    assert routing.events("capacity.changed", agent_id="agent-1")[-1]["used"] == {"chat": 1}
    assert await routing.drain() == 0
    kinds = [d.kind for d in await routing.store.list_decisions("c-1")]
    assert kinds == ["queued", "offered"]


async def test_a_redelivered_arrival_is_handled_once(routing: Routing) -> None:
    payload = c.ConversationArrived(conversation_id="c-1", channel="chat")
    await routing.bus.send(payload, id="ev-1")
    await routing.bus.send(payload, id="ev-1")
    await routing.bus.send(payload, id="ev-2")  # same conversation, new event: a duplicate arrival
    assert len(routing.events("work.queued")) == 1


async def test_nobody_available_means_the_work_waits(routing: Routing) -> None:
    await routing.arrive("c-1")
    assert await routing.drain() == 0 and routing.events("work.offered") == []
    await routing.presence("agent-2")  # routable now: offered with that change
    assert routing.offer("c-1")["agent_id"] == "agent-2"
    assert await routing.drain() == 0


async def test_capacity_freed_by_a_withdrawn_offer_goes_to_waiting_work_at_once(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("c-1", channel="voice")  # exclusive: agent-1 can take nothing else
    await routing.arrive("c-2", channel="voice")
    assert routing.offer("c-1")["agent_id"] == "agent-1" and routing.events("work.offered", conversation_id="c-2") == []
    await routing.bus.send(c.ConversationEnded(conversation_id="c-1"))  # the caller hung up: offer withdrawn
    [withdrawn] = routing.events("work.offer_expired", conversation_id="c-1")
    assert withdrawn["cause"] == "withdrawn"
    # offered in the transaction that freed the unit, not at the drain loop's next safety pass
    assert routing.offer("c-2")["agent_id"] == "agent-1"


async def test_an_accepted_offer_assigns_the_work(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("c-1", subject="refund")
    await routing.drain()
    await routing.accept("c-1")
    [assigned] = routing.events("work.assigned")
    assert assigned["agent_id"] == "agent-1" and assigned["how"] == "accepted"
    assert assigned["conversation"]["subject"] == "refund"
    assert routing.store.work["c-1"].status == "assigned"


async def test_a_rejected_offer_is_requeued_and_offered_to_another_agent(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.presence("agent-2")
    await routing.arrive("c-1")
    await routing.drain()
    first = routing.offer("c-1")
    await routing.bus.send(
        c.OfferRejected(
            agent_id=first["agent_id"],
            offer_id=first["offer_id"],
            conversation_id="c-1",
            channel="chat",
            expires_at=first["expires_at"],
        )
    )
    assert routing.events("work.offer_expired")[-1]["cause"] == "rejected"
    assert routing.events("work.requeued", conversation_id="c-1")
    assert routing.used(first["agent_id"]) == {}
    second = routing.offer("c-1")  # offered again in the transaction that requeued it
    assert second["agent_id"] != first["agent_id"]


async def test_an_expired_offer_is_requeued_and_offered_to_another_agent(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.presence("agent-2")
    await routing.arrive("c-1")
    await routing.drain()
    first = routing.offer("c-1")
    assert await service.expire_once(routing.runtime) == 0  # not due yet
    row = routing.store.offers[first["offer_id"]]
    row.offer = replace(row.offer, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert await service.expire_once(routing.runtime) == 1
    assert routing.events("work.offer_expired")[-1]["cause"] == "expired"
    assert routing.events("work.requeued", conversation_id="c-1")
    await routing.drain()
    assert routing.offer("c-1")["agent_id"] != first["agent_id"]
    # a late accept of the expired offer opens nothing
    await routing.bus.send(
        c.OfferAccepted(
            agent_id=first["agent_id"],
            offer_id=first["offer_id"],
            conversation_id="c-1",
            channel="chat",
            expires_at=first["expires_at"],
        )
    )
    assert routing.events("work.assigned") == []


async def test_a_burst_never_exceeds_an_agents_chat_capacity(routing: Routing) -> None:
    await routing.presence("agent-1")
    for i in range(10):
        await routing.arrive(f"c-{i}")
    while await routing.drain():
        pass
    assert len(routing.events("work.offered")) == 3
    assert routing.used("agent-1") == {"chat": 3}
    # reserved in one step, told unit by unit
    told = [(e["used"], e["total_used"], e["full"]) for e in routing.events("capacity.changed")]
    assert told == [({"chat": 1}, 1, False), ({"chat": 2}, 2, False), ({"chat": 3}, 3, True)]


async def test_voice_is_exclusive(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("v-1", channel="voice")
    await routing.arrive("c-1")
    await routing.drain()
    assert [o["conversation_id"] for o in routing.events("work.offered")] == ["v-1"]
    assert routing.events("capacity.changed")[-1]["exclusive_held"] is True


async def test_a_release_frees_capacity_and_offers_the_oldest_waiting_work(routing: Routing) -> None:
    await routing.presence("agent-1")
    for i in range(5):
        await routing.arrive(f"c-{i}")
    await routing.drain()
    for i in range(3):
        await routing.accept(f"c-{i}")
    await routing.bus.send(c.SessionClosed(agent_id="agent-1", session_id="s-1", conversation_id="c-1"))
    [released] = routing.events("work.released")
    assert released["conversation_id"] == "c-1" and released["reason"] == "session_closed"
    # the freed slot goes to the oldest waiting item in the transaction that freed it
    assert routing.used("agent-1") == {"chat": 3}
    assert routing.events("work.offered")[-1]["conversation_id"] == "c-3"
    assert await routing.drain() == 0
    assert routing.store.stats["support"].handled == 1


async def test_a_batch_of_arrivals_is_queued_at_once_and_ends_in_order(routing: Routing) -> None:
    from aiokafka import ConsumerRecord

    def record(offset: int, payload: c.Payload, id: str | None = None) -> ConsumerRecord[bytes, bytes]:
        value = c.event(payload, source="/test", id=id).to_bytes()
        topic = routing.runtime.names(payload.TOPIC)
        return ConsumerRecord(topic, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])

    [consumer] = [co for co in routing.runtime.consumers if co.topic == c.ConversationArrived.TOPIC]
    await consumer.process(
        [
            record(1, c.ConversationArrived(conversation_id="c-1", channel="chat")),
            record(2, c.ConversationArrived(conversation_id="c-2", channel="chat")),
            record(3, c.ConversationEnded(conversation_id="c-1")),  # ends after its arrival, in the batch
            record(4, c.ConversationArrived(conversation_id="c-2", channel="chat")),  # sent twice
            record(5, c.ConversationArrived(conversation_id="c-3", channel="chat")),
        ]
    )
    assert routing.store.work["c-1"].status == "ended"
    queued = {e["conversation_id"]: e["position"] for e in routing.events("work.queued")}
    assert queued == {"c-1": 1, "c-2": 1, "c-3": 2}  # each announced once; c-1 ended: behind no one
    assert [d.kind for d in await routing.store.list_decisions("c-2")] == ["queued"]


async def test_a_conversation_path_is_explained_decision_by_decision(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("c-1")
    await routing.drain()
    await routing.accept("c-1")
    await routing.bus.send(c.SessionClosed(agent_id="agent-1", session_id="s-1", conversation_id="c-1"))
    decisions = await routing.store.list_decisions("c-1")
    assert [d.kind for d in decisions] == ["queued", "offered", "assigned", "released"]
    assert decisions[2].detail == {"agent_id": "agent-1", "how": "accepted"}
    assert decisions[3].detail == {"agent_id": "agent-1"}


async def test_the_drain_loop_is_woken_only_for_what_the_batch_could_not_place(config_file: str) -> None:
    fake = FakeRoutingStore()
    settings = RoutingSettings(config_file=config_file, drain_batch=2)  # a pass places two items at most
    runtime = build_runtime(settings, database=MemoryDatabase(fake))
    async with in_memory(runtime) as bus:
        routing = Routing(bus, runtime, fake)
        await routing.presence("agent-1")
        [consumer] = [co for co in runtime.consumers if co.topic == c.ConversationArrived.TOPIC]
        woken: list[bool] = []
        consumer.on_committed = lambda uow: woken.append(service.DRAIN in uow.flags)
        await routing.arrive("c-1")
        assert routing.offer("c-1")["agent_id"] == "agent-1" and woken == [False]  # all placed: no wake-up

        def record(offset: int, cid: str) -> Any:
            from aiokafka import ConsumerRecord

            value = c.event(c.ConversationArrived(conversation_id=cid, channel="chat"), source="/test").to_bytes()
            return ConsumerRecord(consumer.names(consumer.topic), 0, offset, 0, 0, b"k", value, None, 1, len(value), [])

        await routing.presence("agent-2")
        await consumer.process([record(10, "c-2"), record(11, "c-3"), record(12, "c-4")])
        assert woken == [False, True]  # the pass placed two of three: the loop places the rest
        assert len(routing.events("work.offered")) == 3
        await routing.drain()
        assert routing.offer("c-4")


async def test_a_pass_that_placed_all_it_saw_asks_for_no_second_pass(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("c-1")
    await routing.arrive("c-2")
    assert await service.drain_step(routing.runtime) == 0  # both offered: nothing is left to place
    assert {o["conversation_id"] for o in routing.events("work.offered")} == {"c-1", "c-2"}


async def test_the_drain_looks_past_the_first_idle_agents_when_none_of_them_fits(tmp_path: Path) -> None:
    # Fewer waiting items than agents: a pass first considers the longest-idle few; the only agent
    # with the skill is the least idle of many, so the pass must read them all.
    n = service.MIN_CANDIDATES + 4
    french = ", skills: {french: 3}"
    agents = "\n".join(
        f"    - {{id: agent-{i:02}, capacity_profile: standard, queues: '*'{french if i == n else ''}}}"
        for i in range(1, n + 1)
    )
    path = tmp_path / "switchboard.yaml"
    path.write_text(CONFIG.split("  agents:")[0] + "  skills: [french]\n  agents:\n" + agents + "\n")
    fake = FakeRoutingStore()
    runtime = build_runtime(RoutingSettings(config_file=str(path)), database=MemoryDatabase(fake))
    async with in_memory(runtime) as bus:
        routing = Routing(bus, runtime, fake)
        for i in range(1, n + 1):
            await routing.presence(f"agent-{i:02}")
        await routing.arrive("c-1", required_skills={"french": 2})
        await routing.arrive("c-2")
        assert routing.offer("c-1")["agent_id"] == f"agent-{n:02}"
        assert routing.offer("c-2")["agent_id"] == "agent-01"  # the longest idle


async def test_a_configuration_change_applies_to_the_next_arrival(config_file: str) -> None:
    fake = FakeRoutingStore()
    app = create_app(RoutingSettings(config_file=config_file), database=MemoryDatabase(fake))
    supervisor = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('lead-1', ('agent', 'supervisor'))}"}
    async with (
        in_memory(app.state.runtime) as bus,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as http,
    ):
        await bus.send(c.ConversationArrived(conversation_id="c-1", channel="chat"))
        billing = CONFIG.replace("default_queues: {chat: support", "default_queues: {chat: billing")
        assert (await http.post("/admin/config", content=billing, headers=supervisor)).json()["applied"]
        await bus.send(c.ConversationArrived(conversation_id="c-2", channel="chat"))
        assert [(e.data["conversation_id"], e.data["queue"]) for e in bus.emitted("work.queued")] == [
            ("c-1", "support"),
            ("c-2", "billing"),
        ]


async def test_an_agent_picks_waiting_work_within_its_capacity(routing: Routing) -> None:
    await routing.presence("agent-1", "away")  # not offered anything, but may pick
    await routing.arrive("v-1", channel="voice")
    await routing.arrive("c-1")
    await routing.bus.send(c.PickWork(agent_id="agent-1", conversation_id="v-1"))
    [assigned] = routing.events("work.assigned")
    assert assigned["how"] == "picked" and assigned["conversation_id"] == "v-1"
    await routing.bus.send(c.PickWork(agent_id="agent-1", conversation_id="c-1", command_id="cmd-2"))
    [refused] = routing.events("work.pick_refused")
    assert refused["command_id"] == "cmd-2" and "no free chat capacity" in refused["reason"]
    await routing.bus.send(c.PickWork(agent_id="agent-1", conversation_id="v-1"))
    assert "not waiting" in routing.events("work.pick_refused")[-1]["reason"]


async def test_transfer_to_an_agent_and_to_a_queue(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.presence("agent-2", "busy")
    await routing.arrive("c-1")
    await routing.drain()
    await routing.accept("c-1")
    await routing.bus.send(c.TransferWork(conversation_id="c-1", to_agent="agent-2"))
    assert routing.events("work.released")[-1]["agent_id"] == "agent-1"
    assigned = routing.events("work.assigned")[-1]
    assert assigned["agent_id"] == "agent-2" and assigned["how"] == "transferred"
    assert assigned["previous_agent_id"] == "agent-1"
    assert routing.used("agent-1") == {} and routing.used("agent-2") == {"chat": 1}

    await routing.bus.send(c.TransferWork(conversation_id="c-1", to_queue="billing"))
    queued = routing.events("work.queued")[-1]
    assert queued["queue"] == "billing" and queued["routed_by"] == "transfer from agent-2"
    assert routing.used("agent-2") == {}
    # queued, and offered in the same transaction to the one available agent
    assert routing.offer("c-1")["queue"] == "billing" and routing.offer("c-1")["agent_id"] == "agent-1"
    assert routing.store.work["c-1"].status == "offered"


async def test_an_ended_conversation_withdraws_its_offer(routing: Routing) -> None:
    await routing.presence("agent-1")
    await routing.arrive("c-1")
    await routing.drain()
    await routing.bus.send(c.ConversationEnded(conversation_id="c-1"))
    assert routing.events("work.offer_expired")[-1]["cause"] == "withdrawn"
    assert routing.used("agent-1") == {}
    assert routing.store.work["c-1"].status == "ended"


async def test_an_arrival_on_an_unknown_channel_is_not_queued(routing: Routing) -> None:
    await routing.arrive("x-1", channel="fax")
    assert routing.events("work.queued") == []
    assert "x-1" not in routing.store.work


async def test_positions_are_announced_when_they_move(routing: Routing) -> None:
    for i in range(5):
        await routing.arrive(f"c-{i}")
    assert [e["position"] for e in routing.events("work.queued")] == [1, 2, 3, 4, 5]
    await routing.presence("agent-1")
    await routing.drain()  # c-0..c-2 offered: c-3 and c-4 move up
    assert await service.announce_once(routing.runtime) == 0
    updates = [(e["conversation_id"], e["position"]) for e in routing.events("work.queued") if e.get("update")]
    assert updates == [("c-3", 1), ("c-4", 2)]
    await service.announce_once(routing.runtime)
    assert len([e for e in routing.events("work.queued") if e.get("update")]) == 2  # told once


async def test_explain_and_admin_config_over_http(config_file: str) -> None:
    fake = FakeRoutingStore()
    app = create_app(RoutingSettings(config_file=config_file), database=MemoryDatabase(fake))
    supervisor = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('lead-1', ('agent', 'supervisor'))}"}
    async with (
        in_memory(app.state.runtime) as bus,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as http,
    ):
        await bus.send(c.ConversationArrived(conversation_id="c-1", channel="chat"))
        assert (await http.get("/conversations/c-1/explain")).status_code == 401
        explained = (await http.get("/conversations/c-1/explain", headers=supervisor)).json()
        assert [d["kind"] for d in explained["decisions"]] == ["queued"]
        assert (await http.get("/conversations/c-2/explain", headers=supervisor)).status_code == 404

        applied = (await http.get("/admin/config", headers=supervisor)).json()["routing"]
        assert [q["name"] for q in applied["queues"]] == ["support", "billing"]
        smaller = CONFIG.replace("    - {name: billing, channels: [chat]}\n", "")
        dry = await http.post("/admin/config", params={"dry_run": "true"}, content=smaller, headers=supervisor)
        assert dry.json() == {"dry_run": True, "changes": ["- queue billing"]}
        assert "billing" in fake.queues
        r = await http.post("/admin/config", content=smaller, headers=supervisor)
        assert r.json() == {"applied": True, "changes": ["- queue billing"]}
        assert "billing" not in fake.queues
        bad = await http.post("/admin/config", content=smaller.replace("chat: 3", "chat: lots"), headers=supervisor)
        assert bad.status_code == 422 and "line" in bad.json()["problems"][0]


READS_CONFIG = """
routing:
  channels:
    chat: {}
    voice: {exclusive: true}
  capacity_profiles:
    standard: {chat: 2, voice: 1}
  queues:
    - {name: support, channels: [chat, voice], service_level_s: 30, overflow: {max_waiting: 2, to_queue: billing}}
    - {name: billing, channels: [chat]}
  default_queues: {chat: support, voice: support}
  agents:
    - {id: agent-1, capacity_profile: standard, queues: "*"}
    - {id: agent-2, capacity_profile: standard, queues: [billing]}
"""


async def test_supervisor_reads_agree_with_the_events(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(READS_CONFIG)
    fake = FakeRoutingStore()
    # work waits between the steps below: offers come from the drain loop only, when the test says
    settings = RoutingSettings(config_file=str(path), drain_with_batch=False)
    app = create_app(settings, database=MemoryDatabase(fake))
    auth = Auth(DEV_SECRET)
    supervisor = {"Authorization": f"Bearer {auth.mint('lead-1', ('agent', 'supervisor'))}"}
    agent_1 = {"Authorization": f"Bearer {auth.mint('agent-1')}"}
    async with (
        in_memory(app.state.runtime) as bus,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as http,
    ):
        r = Routing(bus, app.state.runtime, fake)
        await r.presence("agent-1")
        await r.presence("agent-2")
        await r.arrive("c-1", customer={"name": "Ada"}, subject="refund", priority=3)
        await r.arrive("c-2")
        await r.arrive("c-3")  # a third waiting in support: overflows to billing
        assert r.events("work.overflowed")[0]["conversation_id"] == "c-3"
        await r.drain()  # agent-1: c-1 and c-2 (support); agent-2: c-3 (billing)
        await r.accept("c-1")
        await r.accept("c-3")
        await r.bus.send(c.ConversationEnded(conversation_id="c-2"))  # ended while offered
        await r.arrive("c-4")
        await r.bus.send(c.ConversationEnded(conversation_id="c-4"))  # ended while waiting
        await r.arrive("c-5", channel="voice")
        fake.work["c-5"].enqueued_at -= timedelta(seconds=60)  # it waited a minute: over support's 30 s
        await r.bus.send(c.SessionClosed(agent_id="agent-1", session_id="s-1", conversation_id="c-1"))
        await r.bus.send(c.PickWork(agent_id="agent-1", conversation_id="c-5"))
        await r.bus.send(c.TransferWork(conversation_id="c-3", to_queue="support"))
        await r.arrive("c-6")
        await service.announce_once(r.runtime)  # refreshes the figures the wait estimate uses

        # the queues
        queues = await http.get("/queues", headers=supervisor)
        assert queues.status_code == 200
        body = queues.json()
        by_name = {q["name"]: q for q in body["queues"]}
        support, billing = by_name["support"], by_name["billing"]
        for name, q in by_name.items():
            assert q["offered_15m"] == len(r.events("work.offered", queue=name))
            assert q["assigned_15m"] == len(
                [e for e in r.events("work.assigned", queue=name) if e["how"] != "transferred"]
            )
            assert q["overflowed_15m"] == len(r.events("work.overflowed", from_queue=name))
        assert support["channels"] == ["chat", "voice"] and support["service_level_threshold_s"] == 30
        assert (support["offered_15m"], support["assigned_15m"]) == (2, 2)  # c-1 accepted, c-5 picked
        assert support["abandoned_15m"] == 2  # c-2 (offered) and c-4 (waiting) ended
        assert support["overflowed_15m"] == 1
        assert support["service_level"] == 0.5  # c-1 within 30 s, c-5 not
        assert support["waiting"] == 2  # c-3 transferred back in, c-6
        # c-3 kept its place in line (it arrived first); a new arrival would be third
        server_time = datetime.fromisoformat(body["server_time"])
        assert support["longest_wait_s"] == round((server_time - fake.work["c-3"].enqueued_at).total_seconds(), 1)
        figures = fake.stats["support"]
        assert support["estimated_wait_s"] == domain.estimated_wait_s(
            3, figures.handled, figures.handle_seconds, figures.staffed_slots, figures.arrivals_per_s
        )
        assert support["estimated_wait_s"] is not None and figures.handled == 1  # c-1's handle time
        assert (billing["offered_15m"], billing["assigned_15m"], billing["service_level"]) == (1, 1, 1.0)
        assert (billing["waiting"], billing["abandoned_15m"], billing["overflowed_15m"]) == (0, 0, 0)
        assert billing["service_level_threshold_s"] == 20 and billing["longest_wait_s"] == 0.0

        # the agents: routing's own projection, as capacity.changed last said
        agents = (await http.get("/agents", headers=supervisor)).json()["agents"]
        assert [a["agent_id"] for a in agents] == ["agent-1", "agent-2"]
        for a in agents:
            last = r.events("capacity.changed", agent_id=a["agent_id"])[-1]
            assert {ch: n["used"] for ch, n in a["capacity"].items() if n["used"]} == {
                ch: n for ch, n in last["used"].items() if n
            }
            assert a["total_used"] == last["total_used"] and a["exclusive_held"] == last["exclusive_held"]
        one = agents[0]
        assert one["presence"] == "available" and one["queues"] == ["billing", "support"]
        assert one["capacity"] == {"chat": {"used": 0, "limit": 2}, "voice": {"used": 1, "limit": 1}}
        assert one["exclusive_held"] is True and one["total_used"] == 1
        assert agents[1]["capacity"]["chat"] == {"used": 0, "limit": 2}  # c-3 transferred away
        own = await http.get("/agents/agent-1", headers=agent_1)
        assert own.status_code == 200 and own.json() == one
        assert (await http.get("/agents/agent-2", headers=supervisor)).json() == agents[1]

        # the work in progress
        work = {w["conversation_id"]: w for w in (await http.get("/work", headers=supervisor)).json()["work"]}
        assert set(work) == {"c-3", "c-5", "c-6"}  # c-1 closed, c-2 and c-4 ended
        c3, c5, c6 = work["c-3"], work["c-5"], work["c-6"]
        assert (c3["state"], c3["queue"], c3["agent_id"], c3["transfers"], c3["overflowed"]) == (
            "waiting",
            "support",
            None,
            1,
            True,
        )
        assert c3["assigned_at"] is None and c3["handle_s"] is None
        assert (c5["state"], c5["agent_id"], c5["channel"]) == ("assigned", "agent-1", "voice")
        assert c5["waited_s"] >= 60 and c5["handle_s"] >= 0 and c5["assigned_at"] is not None
        assert (c5["transfers"], c5["overflowed"]) == (0, False)
        assert c6["state"] == "waiting" and c6["customer_name"] is None and c6["subject"] is None
        assert list(c6) == [
            "conversation_id",
            "channel",
            "queue",
            "state",
            "agent_id",
            "customer_name",
            "subject",
            "priority",
            "arrived_at",
            "assigned_at",
            "waited_s",
            "handle_s",
            "overflowed",
            "transfers",
        ]
        assert len((await http.get("/work", params={"limit": 1}, headers=supervisor)).json()["work"]) == 1
        assert (await http.get("/work", params={"limit": "x"}, headers=supervisor)).status_code == 400


async def test_a_waiting_item_shows_who_it_is_and_an_offer_shows_its_agent(config_file: str) -> None:
    fake = FakeRoutingStore()
    app = create_app(RoutingSettings(config_file=config_file), database=MemoryDatabase(fake))
    supervisor = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('lead-1', ('supervisor',))}"}
    async with (
        in_memory(app.state.runtime) as bus,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as http,
    ):
        r = Routing(bus, app.state.runtime, fake)
        await r.arrive("c-1", customer={"name": "Ada"}, subject="refund", priority=3)
        [waiting] = (await http.get("/work", headers=supervisor)).json()["work"]
        assert (waiting["customer_name"], waiting["subject"], waiting["priority"]) == ("Ada", "refund", 3)
        assert waiting["state"] == "waiting" and waiting["agent_id"] is None and waiting["waited_s"] >= 0
        await r.presence("agent-1")
        await r.drain()
        [offered] = (await http.get("/work", headers=supervisor)).json()["work"]
        assert offered["state"] == "offered" and offered["agent_id"] == "agent-1"
        support = (await http.get("/queues", headers=supervisor)).json()["queues"][1]
        assert support["name"] == "support" and support["waiting"] == 1 and support["service_level"] is None
        assert support["service_level_threshold_s"] == 20


async def test_reads_need_the_right_token(config_file: str) -> None:
    fake = FakeRoutingStore()
    app = create_app(RoutingSettings(config_file=config_file), database=MemoryDatabase(fake))
    auth = Auth(DEV_SECRET)
    agent_1 = {"Authorization": f"Bearer {auth.mint('agent-1')}"}
    supervisor = {"Authorization": f"Bearer {auth.mint('lead-1', ('supervisor',))}"}
    async with (
        in_memory(app.state.runtime),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as http,
    ):
        for path in ("/queues", "/agents", "/work", "/agents/agent-1"):
            anonymous = await http.get(path)
            assert anonymous.status_code == 401 and "token" in anonymous.json()["error"]
            forged = await http.get(path, headers={"Authorization": "Bearer nonsense"})
            assert forged.status_code == 401 and "invalid token" in forged.json()["error"]
        for path in ("/queues", "/agents", "/work"):
            refused = await http.get(path, headers=agent_1)
            assert refused.status_code == 403 and "supervisor role" in refused.json()["error"]
        other = await http.get("/agents/agent-2", headers=agent_1)
        assert other.status_code == 403 and "agent-2's own token" in other.json()["error"]
        assert (await http.get("/agents/agent-1", headers=agent_1)).json()["agent_id"] == "agent-1"
        assert (await http.get("/agents/agent-1", params={"token": auth.mint("agent-1")})).status_code == 200
        missing = await http.get("/agents/nobody", headers=supervisor)
        assert missing.status_code == 404 and "nobody" in missing.json()["error"]


async def test_a_batch_locks_the_agents_it_changes_first_in_agent_order() -> None:
    """`lock_agents` runs before every batch's handlers (its effect on PostgreSQL: the store contract)."""
    locked: list[tuple[list[str], list[str]]] = []

    class Store:
        async def lock_agents(self, agents: list[str], conversations: list[str]) -> None:
            locked.append((agents, conversations))

    class Uow:
        store = Store()

    soon = datetime.now(UTC) + timedelta(seconds=30)
    batch: list[c.Payload] = [
        c.SessionClosed(agent_id="a-2", session_id="s-1", conversation_id="c-9"),
        c.OfferAccepted(agent_id="a-0", offer_id="o-1", conversation_id="c-8", channel="chat", expires_at=soon),
        c.OfferRejected(agent_id="a-1", offer_id="o-2", conversation_id="c-7", channel="chat", expires_at=soon),
        c.TransferWork(conversation_id="c-2", agent_id="a-2", to_agent="a-3"),
        c.ConversationEnded(conversation_id="c-1"),
        c.ConversationArrived(conversation_id="c-3", channel="chat"),
    ]
    await service.lock_agents(Uow(), batch)  # type: ignore[arg-type]
    # an acceptance changes no agent row; ended and transferred work's agents are found by the store
    assert locked == [(["a-1", "a-2", "a-3"], ["c-1", "c-2"])]
    await service.lock_agents(Uow(), [c.ConversationArrived(conversation_id="c-4", channel="chat")])  # type: ignore[arg-type]
    assert len(locked) == 1  # nothing to lock: no statement


async def test_a_pass_that_placed_nothing_for_want_of_a_held_agent_drains_again_soon(
    routing: Routing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a drain skips an agent another transaction holds (store contract); that holder
    may commit without asking for a drain, so the drain loop is woken again shortly after."""
    await routing.presence("agent-1")
    held = {"agent-1"}
    reserve = routing.store.reserve_units

    async def skipping_held(reservations: list[Reservation]) -> dict[str, Any]:
        return await reserve([r for r in reservations if r.agent_id not in held])

    monkeypatch.setattr(routing.store, "reserve_units", skipping_held)
    drainer = service.Drainer()
    await routing.arrive("c-1")
    assert routing.events("work.offered") == []  # the batch's own pass was refused
    assert await service.drain_step(routing.runtime, drainer=drainer) == 0
    assert not drainer.wake.is_set()  # not at once: the holder is still at work
    held.clear()  # its transaction ended
    await asyncio.wait_for(drainer.wake.wait(), 1)
    await service.drain_step(routing.runtime, drainer=drainer)
    assert routing.offer("c-1")["agent_id"] == "agent-1"


async def test_retries_for_a_held_agent_are_bounded(routing: Routing, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal that lasts (not a lock that ends) stops costing passes after DRAIN_RETRIES."""
    await routing.presence("agent-1")

    async def refuse_all(reservations: list[Reservation]) -> dict[str, Any]:
        return {}

    monkeypatch.setattr(routing.store, "reserve_units", refuse_all)
    monkeypatch.setattr(service, "DRAIN_RETRY_S", 0.001)
    drainer = service.Drainer()
    await routing.arrive("c-1")
    await service.drain_step(routing.runtime, drainer=drainer)
    passes = 1
    with pytest.raises(TimeoutError):
        while True:
            await asyncio.wait_for(drainer.wake.wait(), 0.5)
            drainer.wake.clear()
            await service.drain_step(routing.runtime, drainer=drainer)
            passes += 1
    assert passes == 1 + service.DRAIN_RETRIES
    assert routing.events("work.offered") == []
    # a pass that places work ends the run of refusals: the next refusal is retried again
    monkeypatch.undo()
    assert await service.drain_step(routing.runtime, drainer=drainer) == 0  # placed, nothing more
    assert routing.offer("c-1")["agent_id"] == "agent-1" and drainer.retries == 0
