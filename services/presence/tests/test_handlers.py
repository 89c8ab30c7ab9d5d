"""presence's flows through its real consumers on FastStream's TestKafkaBroker, with the fake store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from faststream.kafka import KafkaMessage

from presence import service
from presence.app import build_runtime, create_app
from presence.settings import PresenceSettings
from presence.store import FakePresenceStore
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from shared.tx import MemoryDatabase
from tools.testing import MemoryBus, in_memory

CONFIG = {
    "presence": {
        "statuses": [{"name": "lunch", "colour": "#f5a623", "base": "away"}],
        "profiles": {
            "default": {},
            "lenient": {"full": "busy", "missed_offer": None, "rejected_offer": "busy_dnd"},
            "desk": {"idle_after_s": 300},
        },
        "agents": {"agent-2": {"profile": "lenient"}, "agent-3": {"profile": "desk"}},
        "teams": {"tier-1": ["agent-1", "agent-2", "agent-3"]},
    }
}


@pytest.fixture
def settings(tmp_path: Path) -> PresenceSettings:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return PresenceSettings(config_file=str(path), device_timeout_s=60.0)


@pytest.fixture
def fake() -> FakePresenceStore:
    return FakePresenceStore()


@pytest.fixture
async def bus(settings: PresenceSettings, fake: FakePresenceStore) -> AsyncIterator[MemoryBus]:
    async with in_memory(build_runtime(settings, database=MemoryDatabase(fake))) as bus:
        yield bus


def changes(bus: MemoryBus, agent_id: str) -> list[tuple[str, str]]:
    return [
        (e.data["status"], e.data["source"]) for e in bus.emitted("presence.changed") if e.data["agent_id"] == agent_id
    ]


def capacity(agent_id: str, used: int, *, full: bool = False) -> c.CapacityChanged:
    return c.CapacityChanged(agent_id=agent_id, used={"chat": used}, limits={"chat": 3}, total_used=used, full=full)


def offer_expired(agent_id: str, cause: str) -> c.WorkOfferExpired:
    return c.WorkOfferExpired(
        agent_id=agent_id,
        offer_id="o-1",
        conversation_id="c-1",
        channel="chat",
        expires_at=datetime.now(UTC),
        cause=cause,  # type: ignore[arg-type]
    )


async def test_a_manual_choice_is_announced_as_manual(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1"))
    await bus.send(c.SetPresence(agent_id="agent-1", status="away"))
    assert changes(bus, "agent-1") == [("available", "device"), ("away", "manual")]
    away = bus.emitted("presence.changed")[-1]
    assert away.data["previous"] == "available" and away.data["base"] == "away"


async def test_a_custom_status_carries_its_base_and_colour(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1"))
    await bus.send(c.SetPresence(agent_id="agent-1", status="lunch"))
    lunch = bus.emitted("presence.changed")[-1].data
    assert (lunch["status"], lunch["base"], lunch["colour"], lunch["source"]) == ("lunch", "away", "#f5a623", "manual")


async def test_capacity_drives_the_status_by_profile_and_spares_manual_choices(bus: MemoryBus) -> None:
    for agent in ("agent-1", "agent-2"):
        await bus.send(c.AgentSignedIn(agent_id=agent))
        await bus.send(capacity(agent, 1))
        await bus.send(capacity(agent, 3, full=True))
        await bus.send(capacity(agent, 0))
    auto = [("available", "device"), ("busy", "automatic"), ("busy_dnd", "automatic"), ("available", "automatic")]
    assert changes(bus, "agent-1") == auto
    # agent-2's profile stays busy when full
    assert changes(bus, "agent-2") == [("available", "device"), ("busy", "automatic"), ("available", "automatic")]

    await bus.send(c.SetPresence(agent_id="agent-1", status="away"))
    await bus.send(capacity("agent-1", 3, full=True))
    await bus.send(capacity("agent-1", 0))
    assert changes(bus, "agent-1")[-1] == ("away", "manual")
    await bus.send(c.SetPresence(agent_id="agent-1", status="available"))
    assert changes(bus, "agent-1")[-1] == ("available", "manual")
    await bus.send(capacity("agent-1", 1))
    assert changes(bus, "agent-1")[-1] == ("busy", "automatic")


async def test_a_missed_offer_makes_the_agent_inactive_until_it_comes_back(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1"))
    await bus.send(offer_expired("agent-1", "withdrawn"))
    await bus.send(offer_expired("agent-1", "expired"))
    assert changes(bus, "agent-1") == [("available", "device"), ("inactive", "system")]
    await bus.send(capacity("agent-1", 0))  # automation leaves inactive alone
    assert changes(bus, "agent-1")[-1] == ("inactive", "system")
    await bus.send(c.SetPresence(agent_id="agent-1", status="available"))
    assert changes(bus, "agent-1")[-1] == ("available", "manual")

    await bus.send(c.AgentSignedIn(agent_id="agent-2"))  # lenient: missed offers change nothing,
    await bus.send(offer_expired("agent-2", "expired"))  # rejected ones make the agent busy_dnd
    await bus.send(offer_expired("agent-2", "rejected"))
    assert changes(bus, "agent-2") == [("available", "device"), ("busy_dnd", "automatic")]


async def test_devices_sign_in_beat_and_sign_out(bus: MemoryBus, fake: FakePresenceStore) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1", device_id="phone"))
    await bus.send(c.AgentSignedIn(agent_id="agent-1", device_id="desktop"))
    await bus.send(c.AgentHeartbeat(agent_id="agent-1", device_id="desktop", idle_s=3))
    await bus.send(c.AgentSignedOut(agent_id="agent-1", device_id="phone"))
    assert changes(bus, "agent-1") == [("available", "device")]
    await bus.send(c.AgentSignedOut(agent_id="agent-1", device_id="desktop"))
    assert changes(bus, "agent-1")[-1] == ("offline", "device")
    await bus.send(c.AgentHeartbeat(agent_id="agent-1", device_id="desktop"))
    assert changes(bus, "agent-1")[-1] == ("available", "device")
    assert [(d.device_id, d.signed_in) for d in fake.devices.values()] == [("phone", False), ("desktop", True)]


async def test_the_sweep_turns_a_silent_agent_offline_and_a_quick_return_restores(
    bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = service.DisconnectSweep(bus.runtime, timeout_s=60)
    for agent in ("agent-1", "agent-2"):
        await bus.send(c.AgentSignedIn(agent_id=agent, device_id="laptop"))
        await bus.send(c.SetPresence(agent_id=agent, status="busy_dnd"))
    now = datetime.now(UTC)
    assert await sweep.step(now + timedelta(seconds=30)) == 0
    assert await sweep.step(now + timedelta(seconds=61)) == 2
    assert await sweep.step(now + timedelta(seconds=62)) == 0  # lost devices are not swept twice
    assert changes(bus, "agent-1")[-1] == ("offline", "device")

    await bus.send(c.AgentHeartbeat(agent_id="agent-1", device_id="laptop"))  # back within 150 s
    back = bus.emitted("presence.changed")[-1].data
    assert (back["status"], back["source"]) == ("busy_dnd", "device") and "restored" in back["reason"]

    monkeypatch.setattr(service, "_now", lambda: now + timedelta(seconds=61 + 151))
    await bus.send(c.AgentHeartbeat(agent_id="agent-2", device_id="laptop"))  # too late: start afresh
    assert changes(bus, "agent-2")[-2:] == [("offline", "device"), ("available", "device")]


async def test_a_restart_grants_every_device_a_full_timeout(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1"))
    sweep = service.DisconnectSweep(bus.runtime, timeout_s=60)
    sweep.grace_from = datetime.now(UTC) + timedelta(seconds=100)  # presence (re)started later
    assert await sweep.step(datetime.now(UTC) + timedelta(seconds=120)) == 0
    assert await sweep.step(datetime.now(UTC) + timedelta(seconds=161)) == 1


async def test_idle_on_every_device_is_away_and_input_brings_the_agent_back(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-3", device_id="desk"))
    await bus.send(c.AgentHeartbeat(agent_id="agent-3", device_id="desk", idle_s=420))
    await bus.send(c.AgentHeartbeat(agent_id="agent-3", device_id="desk", idle_s=1))
    assert changes(bus, "agent-3") == [("available", "device"), ("away", "automatic"), ("available", "automatic")]


async def test_closing_a_channel_keeps_the_status_and_says_so(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1"))
    await bus.send(c.SetPresence(agent_id="agent-1", channels={"chat": "closed"}))
    last = bus.emitted("presence.changed")[-1].data
    assert (last["status"], last["closed_channels"]) == ("available", ["chat"])


@pytest.mark.parametrize(
    ("status", "reason"),
    [("napping", "unknown presence 'napping'"), ("inactive", "inactive is set by the system only")],
)
async def test_an_unknown_or_system_status_goes_to_the_dlq(
    settings: PresenceSettings, fake: FakePresenceStore, status: str, reason: str
) -> None:
    runtime = build_runtime(settings, database=MemoryDatabase(fake))
    dead: list[tuple[bytes, dict[str, str]]] = []

    @runtime.broker.subscriber(runtime.names(topics.dlq(topics.PRESENCE_COMMANDS)))
    async def dlq(body: Any, message: KafkaMessage) -> None:
        dead.append((message.body, dict(message.headers)))

    async with in_memory(runtime) as bus:
        await bus.send(c.AgentSignedIn(agent_id="agent-1"))
        await bus.send(c.SetPresence(agent_id="agent-1", status=status))
        assert changes(bus, "agent-1") == [("available", "device")]
    ((body, headers),) = dead
    assert c.CloudEvent.model_validate_json(body).data["status"] == status
    assert reason in headers["dlq.reason"] and headers["dlq.kind"] == "poison"


async def test_a_redelivered_command_is_handled_once(bus: MemoryBus) -> None:
    await bus.send(c.AgentSignedIn(agent_id="agent-1"))
    for _ in range(2):
        await bus.send(c.SetPresence(agent_id="agent-1", status="away"), id="same-id")
    await bus.send(c.SetPresence(agent_id="agent-1", status="available"))
    await bus.send(c.SetPresence(agent_id="agent-1", status="away"), id="same-id")
    assert changes(bus, "agent-1") == [("available", "device"), ("away", "manual"), ("available", "manual")]


async def test_the_read_side(settings: PresenceSettings, fake: FakePresenceStore) -> None:
    app = create_app(settings, database=MemoryDatabase(fake))
    async with (
        in_memory(app.state.runtime) as bus,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        await bus.send(c.AgentSignedIn(agent_id="agent-1", device_id="desk"))
        await bus.send(c.SetPresence(agent_id="agent-1", status="lunch"))
        auth = Auth(DEV_SECRET)
        own = {"Authorization": f"Bearer {auth.mint('agent-1')}"}
        lead = {"Authorization": f"Bearer {auth.mint('lead-1', ('supervisor',))}"}
        assert (await http.get("/agents/agent-1/presence")).status_code == 401
        assert (await http.get("/agents/agent-2/presence", headers=own)).status_code == 403
        assert (await http.get("/teams/tier-1/presence", headers=own)).status_code == 403
        me = (await http.get("/agents/agent-1/presence", headers=own)).json()
        assert (me["status"], me["base"], me["manual"], me["team"]) == ("lunch", "away", True, "tier-1")
        assert [h["status"] for h in me["history"]] == ["lunch", "available"]
        assert me["history"][0]["source"] == "manual"
        assert [(d["device_id"], d["signed_in"]) for d in me["devices"]] == [("desk", True)]
        team = (await http.get("/teams/tier-1/presence", headers=lead)).json()
        assert team["agents"] == 3 and team["by_status"] == {"lunch": 1, "offline": 2}
        assert [m["agent_id"] for m in team["members"]] == ["agent-1", "agent-2", "agent-3"]
        assert (await http.get("/agents/nobody/presence", headers=lead)).status_code == 404
        assert (await http.get("/teams/nobody/presence", headers=lead)).status_code == 404
