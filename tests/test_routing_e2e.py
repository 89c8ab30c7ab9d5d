"""Routing (issue 3) on real Kafka and Postgres: configuration, rules, skills, re-routing,
overflow and transfer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from routing.app import create_app as routing_app
from routing.settings import RoutingSettings
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e
SUPERVISOR = Auth(DEV_SECRET).mint("lead-1", ("agent", "supervisor"))

ROUTING = {
    "channels": {"chat": {}, "voice": {"exclusive": True}},
    "skills": ["billing", "french"],
    "capacity_profiles": {"chat3": {"chat": 3}, "voice": {"voice": {"units": 1, "exclusive": True}}},
    "queues": [
        {"name": "general", "channels": ["chat"], "assignment": "longest_idle"},
        {"name": "gold", "channels": ["chat"], "assignment": "least_active"},
        {
            "name": "billing",
            "channels": ["chat"],
            "skill_matching": "exact",
            "overflow": {"max_failed_offers": 2, "to_queue": "general"},
        },
    ],
    "rules": [
        {"name": "gold customers", "queue": "gold", "attributes": {"tier": "gold"}},
        {"name": "billing", "queue": "billing", "required_skills": ["billing"]},
    ],
    "default_queues": {"chat": "general"},
    "agents": [
        {"id": "agent-1", "capacity_profile": "chat3", "queues": ["general", "billing"], "skills": {"billing": 1}},
        {"id": "agent-2", "capacity_profile": "chat3", "queues": ["general", "gold"]},
        {"id": "agent-3", "capacity_profile": ["chat3", "voice"], "queues": "*", "skills": {"billing": 4}},
    ],
}


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump({"routing": ROUTING}))
    return str(path)


def routing(dep: Deployment, config_file: str) -> Any:
    return routing_app(dep.settings(RoutingSettings, "routing", config_file=config_file))


async def sign_in(bus: Bus, dep: Deployment, *agents: str) -> None:
    for a in agents:
        await bus.publish(c.AgentSignedIn(agent_id=a))
    for a in agents:
        await helpers.routing_sees(dep, a, ("available", "busy", "busy_dnd"))


async def test_configuration_validated_dry_run_and_applied_without_restart(deployment, bus: Bus, config_file) -> None:
    app = routing(deployment, config_file)
    async with running(app.state.runtime, helpers.presence(deployment), helpers.sessions(deployment)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
            auth = {"Authorization": f"Bearer {SUPERVISOR}"}
            bad = yaml.safe_dump({"routing": {**ROUTING, "queues": [{"name": "general", "channels": ["fax"]}]}})
            r = await http.post("/admin/config", content=bad, headers=auth)
            assert r.status_code == 422
            assert any(p.startswith("line ") and "unknown channel 'fax'" in p for p in r.json()["problems"])
            denied = await http.post(
                "/admin/config", content=bad, headers={"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-1')}"}
            )
            assert denied.status_code == 403

            await sign_in(bus, deployment, "agent-9")
            changed = {
                **ROUTING,
                "agents": [*ROUTING["agents"], {"id": "agent-9", "capacity_profile": "chat3", "queues": ["general"]}],
            }
            text = yaml.safe_dump({"routing": changed})
            dry = (await http.post("/admin/config", params={"dry_run": "true"}, content=text, headers=auth)).json()
            assert dry["dry_run"] and dry["changes"] == ["+ agent agent-9"]
            await bus.publish(c.ConversationArrived(conversation_id="c-1", channel="chat"))
            await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-1")
            assert await bus.quiet(topics.ROUTING, "work.offered", seconds=1.0) == []  # dry run changed nothing

            applied = (await http.post("/admin/config", content=text, headers=auth)).json()
            assert applied["applied"] and applied["changes"] == ["+ agent agent-9"]
            offer = await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="c-1")
            assert offer[0].data["agent_id"] == "agent-9"  # new configuration, no restart


async def test_rules_skills_and_methods_choose_the_agent(deployment, bus: Bus, config_file) -> None:
    async with running(
        routing(deployment, config_file).state.runtime, helpers.presence(deployment), helpers.sessions(deployment)
    ):
        await sign_in(bus, deployment, "agent-1", "agent-2", "agent-3")
        await bus.publish(c.ConversationArrived(conversation_id="gold-1", channel="chat", attributes={"tier": "gold"}))
        gold = (await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="gold-1"))[0]
        queued = (await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="gold-1"))[0]
        assert queued.data["queue"] == "gold" and queued.data["routed_by"] == "rule gold customers"
        assert gold.data["agent_id"] in ("agent-2", "agent-3") and gold.data["reason"]["method"] == "least_active"
        # billing needs level 3: agent-1 (level 1) is passed over, agent-3 (level 4) gets it
        await bus.publish(
            c.ConversationArrived(conversation_id="bill-1", channel="chat", required_skills={"billing": 3})
        )
        bill = (await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="bill-1"))[0]
        assert bill.data["agent_id"] == "agent-3"
        assert bill.data["reason"]["passed_over"].get("skills_mismatch") == 1

        # explain: the decision history through the HTTP API
        explain = await _explain(deployment, config_file, "bill-1")
        assert [d["kind"] for d in explain["decisions"]][:2] == ["queued", "offered"]


async def _explain(dep: Deployment, config_file: str, cid: str) -> dict[str, Any]:
    app = routing(dep, config_file)
    async with (
        running(app.state.runtime),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http,
    ):
        explained = await http.get(f"/conversations/{cid}/explain", headers={"Authorization": f"Bearer {SUPERVISOR}"})
        return dict(explained.json())


async def test_rejected_work_never_returns_and_overflows_after_failed_offers(deployment, bus: Bus, config_file) -> None:
    async with running(
        routing(deployment, config_file).state.runtime, helpers.presence(deployment), helpers.sessions(deployment)
    ):
        await sign_in(bus, deployment, "agent-3")
        await bus.publish(
            c.ConversationArrived(conversation_id="bill-2", channel="chat", required_skills={"billing": 3})
        )
        first = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id="bill-2"))[0]
        await bus.publish(c.RejectOffer(agent_id="agent-3", offer_id=first.data["offer_id"]))
        await bus.wait_for(topics.ROUTING, "work.requeued", conversation_id="bill-2")
        # agent-3 is the only one with the skill and has capacity, yet it is never offered the same work again
        assert len(await bus.quiet(topics.ROUTING, "work.offered", seconds=1.5, conversation_id="bill-2")) == 1
        # agent-1 signs in (billing level 1: no exact match) ... then a second failure: expire by withdrawal
        await sign_in(bus, deployment, "agent-1")
        assert len(await bus.quiet(topics.ROUTING, "work.offered", seconds=1.0, conversation_id="bill-2")) == 1


async def test_overflow_after_n_failed_offers_and_transfer(deployment, bus: Bus, config_file) -> None:
    async with running(
        routing(deployment, config_file).state.runtime, helpers.presence(deployment), helpers.sessions(deployment)
    ):
        await sign_in(bus, deployment, "agent-3")
        await bus.publish(
            c.ConversationArrived(conversation_id="bill-3", channel="chat", required_skills={"billing": 1})
        )
        o1 = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id="bill-3"))[0]
        await bus.publish(c.RejectOffer(agent_id="agent-3", offer_id=o1.data["offer_id"]))
        await sign_in(bus, deployment, "agent-1")  # billing 1 matches now
        o2 = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id="bill-3", agent_id="agent-1"))[0]
        await bus.publish(c.RejectOffer(agent_id="agent-1", offer_id=o2.data["offer_id"]))
        over = (await bus.wait_for(topics.ROUTING, "work.overflowed", conversation_id="bill-3"))[0]
        assert (over.data["from_queue"], over.data["to_queue"]) == ("billing", "general")
        assert "2 offers not accepted" in over.data["reason"]

        # transfer: agent-2 holds a chat; a supervisor moves it to agent-3
        await sign_in(bus, deployment, "agent-2")
        await bus.publish(
            c.ConversationArrived(
                conversation_id="t-1",
                channel="chat",
                attributes={"tier": "gold"},
                customer=c.Customer(name="Grace Hopper"),
            )
        )
        offer = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id="t-1"))[0]
        holder = offer.data["agent_id"]
        await bus.publish(c.AcceptOffer(agent_id=holder, offer_id=offer.data["offer_id"]))
        await bus.wait_for(topics.SESSIONS, "session.started", conversation_id="t-1", agent_id=holder)
        target = "agent-3" if holder != "agent-3" else "agent-2"
        await bus.publish(c.TransferWork(conversation_id="t-1", agent_id="lead-1", to_agent=target))
        closed = await bus.wait_for(topics.SESSIONS, "session.closed", conversation_id="t-1", agent_id=holder)
        assert closed[0].data["reason"] == "transferred"
        started = await bus.wait_for(topics.SESSIONS, "session.started", conversation_id="t-1", agent_id=target)
        assert started[0].data["title"] == "Grace Hopper"
        released = await bus.wait_for(topics.ROUTING, "work.released", conversation_id="t-1", agent_id=holder)
        assert released[0].data["reason"] == "transferred"
        await asyncio.sleep(0.2)


async def test_positions_are_announced_again_as_the_queue_moves(deployment, bus: Bus, config_file) -> None:
    settings = deployment.settings(RoutingSettings, "routing", config_file=config_file, position_update_interval_s=0.3)
    async with running(routing_app(settings).state.runtime):
        for i in range(3):
            await bus.publish(c.ConversationArrived(conversation_id=f"w-{i}", channel="chat"))
        first = await bus.wait_for(topics.ROUTING, "work.queued", count=3)
        assert sorted(e.data["position"] for e in first) == [1, 2, 3]
        await asyncio.sleep(1.0)
        assert len(await bus.events(topics.ROUTING, "work.queued")) == 3  # nothing moved: nothing re-announced
        await bus.publish(c.ConversationEnded(conversation_id="w-0"))  # the head of the queue leaves
        moved = await bus.wait_for(topics.ROUTING, "work.queued", count=2, update=True)
        assert {(e.data["conversation_id"], e.data["position"]) for e in moved} == {("w-1", 1), ("w-2", 2)}
