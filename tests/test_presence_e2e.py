"""Presence (issue 5) on real Kafka and Postgres: automatic rules, manual choices, devices,
reconnects, per-channel presence, custom statuses, idle, read side, and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from presence.app import create_app as presence_app
from presence.settings import PresenceSettings
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e

CONFIG = {
    "presence": {
        "statuses": [{"name": "lunch", "colour": "#f5a623", "base": "away"}],
        "profiles": {"default": {}, "desk": {"idle_after_s": 300}},
        "agents": {"agent-3": {"profile": "desk"}},
        "teams": {"tier-1": ["agent-1", "agent-2", "agent-3"]},
    }
}


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return str(path)


def presence(dep: Deployment, config_file: str, **kw):  # type: ignore[no-untyped-def]
    settings = dep.settings(PresenceSettings, "presence", config_file=config_file, **kw)
    return presence_app(settings).state.runtime


async def statuses(bus: Bus, agent: str) -> list[str]:
    return [e.data["status"] for e in await bus.events(topics.PRESENCE, "presence.changed", agent_id=agent)]


async def test_full_capacity_is_busy_dnd_and_closing_returns_to_available(deployment, bus: Bus, config_file) -> None:
    async with running(helpers.routing(deployment), helpers.sessions(deployment), presence(deployment, config_file)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available")
        for i in range(3):
            await bus.publish(c.ConversationArrived(conversation_id=f"c-{i}", channel="chat"))
        offers = await bus.wait_for(topics.SESSIONS, "offer.received", count=3, agent_id="agent-1")
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="busy_dnd")
        for o in offers:
            await bus.publish(c.AcceptOffer(agent_id="agent-1", offer_id=o.data["offer_id"]))
        started = await bus.wait_for(topics.SESSIONS, "session.started", count=3, agent_id="agent-1")
        for s in started:
            await bus.publish(c.CloseSession(agent_id="agent-1", session_id=s.data["session_id"], confirmed=True))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available", count=2)
        last = (await bus.events(topics.PRESENCE, "presence.changed", agent_id="agent-1"))[-1]
        assert last.data["status"] == "available" and last.data["source"] == "automatic"
        assert last.data["previous"] in ("busy", "busy_dnd")


async def test_manual_away_is_never_offered_work_and_survives_automation(deployment, bus: Bus, config_file) -> None:
    async with running(helpers.routing(deployment), helpers.sessions(deployment), presence(deployment, config_file)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available")
        await bus.publish(c.SetPresence(agent_id="agent-1", status="away"))
        changed = await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="away")
        assert changed[0].data["source"] == "manual"
        await helpers.routing_sees(deployment, "agent-1", "away")
        await bus.publish(c.ConversationArrived(conversation_id="c-away", channel="chat"))
        await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-away")
        # automation keeps firing (capacity changes) and must not touch a status chosen by hand
        await bus.publish(c.CapacityChanged(agent_id="agent-1", used={"chat": 0}, limits={"chat": 3}, total_used=0))
        assert await bus.quiet(topics.ROUTING, "work.offered", seconds=2.0) == []
        assert (await statuses(bus, "agent-1"))[-1] == "away"
        await bus.publish(c.SetPresence(agent_id="agent-1", status="available"))
        await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="c-away", agent_id="agent-1")


async def test_one_silent_device_and_one_beating_keep_the_agent_online(deployment, bus: Bus, config_file) -> None:
    async with running(presence(deployment, config_file, device_timeout_s=1.0, device_sweep_interval_s=0.2)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1", device_id="phone"))
        await bus.publish(c.AgentSignedIn(agent_id="agent-1", device_id="desktop"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available")
        for _ in range(12):  # the phone is in the background; the desktop beats
            await bus.publish(c.AgentHeartbeat(agent_id="agent-1", device_id="desktop"))
            await asyncio.sleep(0.25)
        assert "offline" not in await statuses(bus, "agent-1")
        # now the desktop goes quiet too: offline after the timeout, said by the device rule
        gone = await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="offline", timeout=10)
        assert gone[0].data["source"] == "device"


async def test_a_disconnect_and_return_within_150s_restores_the_status(deployment, bus: Bus, config_file) -> None:
    async with running(presence(deployment, config_file, device_timeout_s=1.0, device_sweep_interval_s=0.2)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-2", device_id="laptop"))
        await bus.publish(c.SetPresence(agent_id="agent-2", status="busy_dnd"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-2", status="busy_dnd")
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-2", status="offline", timeout=10)
        await bus.publish(c.AgentHeartbeat(agent_id="agent-2", device_id="laptop"))
        back = await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-2", status="busy_dnd", count=2)
        assert "restored" in back[-1].data["reason"]
        assert (await statuses(bus, "agent-2"))[-3:] == ["busy_dnd", "offline", "busy_dnd"]


async def test_a_restart_mid_stream_changes_nobody_wrongly(deployment, bus: Bus, config_file) -> None:
    kw = {"device_timeout_s": 1.5, "device_sweep_interval_s": 0.2}
    agents = ["agent-1", "agent-2"]

    async def beat(seconds: float) -> None:
        for _ in range(int(seconds / 0.3)):
            for a in agents:
                await bus.publish(c.AgentHeartbeat(agent_id=a, device_id="desk"))
            await asyncio.sleep(0.3)

    async with running(presence(deployment, config_file, **kw)):
        for a in agents:
            await bus.publish(c.AgentSignedIn(agent_id=a, device_id="desk"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", count=2, status="available")
        await beat(1.0)
    await beat(3.0)  # presence is down; heartbeats pile up in Kafka, older than the timeout by the restart
    async with running(presence(deployment, config_file, **kw)):
        await beat(3.0)
    for a in agents:
        assert await statuses(bus, a) == ["available"], "a restart must not turn a beating agent offline"


async def test_closing_a_channel_keeps_the_agent_open_for_others(deployment, bus: Bus, config_file) -> None:
    async with running(helpers.routing(deployment), helpers.sessions(deployment), presence(deployment, config_file)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available")
        await bus.publish(c.SetPresence(agent_id="agent-1", channels={"chat": "closed"}))
        closed = await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", count=2)
        assert closed[-1].data["closed_channels"] == ["chat"] and closed[-1].data["status"] == "available"
        await helpers.routing_sees(deployment, "agent-1", "available", closed=["chat"])
        await bus.publish(c.ConversationArrived(conversation_id="chat-1", channel="chat"))
        await bus.publish(c.ConversationArrived(conversation_id="voice-1", channel="voice"))
        await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="voice-1", agent_id="agent-1")
        assert await bus.quiet(topics.ROUTING, "work.offered", seconds=1.0, conversation_id="chat-1") == []


async def test_custom_status_idle_history_and_team_summary(deployment, bus: Bus, config_file) -> None:
    app = presence_app(deployment.settings(PresenceSettings, "presence", config_file=config_file))
    async with running(app.state.runtime):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await bus.publish(c.SetPresence(agent_id="agent-1", status="lunch"))
        lunch = await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="lunch")
        assert lunch[0].data["base"] == "away" and lunch[0].data["colour"] == "#f5a623"
        await bus.publish(c.SetPresence(agent_id="agent-1", status="inactive"))  # the system's only
        # agent-3's profile detects idleness: no input on any device for 300 s -> away, input -> back
        await bus.publish(c.AgentSignedIn(agent_id="agent-3", device_id="desk"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-3", status="available")
        await bus.publish(c.AgentHeartbeat(agent_id="agent-3", device_id="desk", idle_s=420))
        away = await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-3", status="away")
        assert away[0].data["source"] == "automatic"
        await bus.publish(c.AgentHeartbeat(agent_id="agent-3", device_id="desk", idle_s=1))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-3", status="available", count=2)

        dead = []
        for _ in range(50):
            dead = await bus.records(topics.dlq(topics.PRESENCE_COMMANDS))
            if dead:
                break
            await asyncio.sleep(0.1)
        assert "inactive is set by the system only" in dict(dead[0].headers)["dlq.reason"].decode()

        lead = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('lead-1', ('supervisor',))}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=lead) as http:
            me = (await http.get("/agents/agent-1/presence")).json()
            assert me["status"] == "lunch" and me["manual"] is True
            assert [h["status"] for h in me["history"]][:2] == ["lunch", "available"]
            assert me["history"][0]["source"] == "manual"
            team = (await http.get("/teams/tier-1/presence")).json()
            assert team["agents"] == 3 and team["by_status"]["lunch"] == 1
            assert (await http.get("/agents/nobody/presence")).status_code == 404
