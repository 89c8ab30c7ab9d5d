"""One contract for presence's store: the same cases against the fake and against PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from presence import domain
from presence.store import FakePresenceStore, PgPresenceStore, PresenceStore
from tools import testing

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(infra: testing.Infrastructure) -> AsyncIterator[asyncpg.Pool]:
    async with testing.store_database(infra, "presence") as pool:
        yield pool


@pytest.fixture
async def pg_store(pool: asyncpg.Pool) -> AsyncIterator[PresenceStore]:
    async with testing.rolled_back(pool) as conn:
        yield PgPresenceStore(conn)


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest) -> PresenceStore:
    if request.param == "fake":
        return FakePresenceStore()
    pg: PresenceStore = request.getfixturevalue("pg_store")
    return pg


async def test_an_agent_is_created_offline_on_first_sight(store: PresenceStore) -> None:
    assert await store.find_presence("a-1") is None
    state = await store.lock_agent("a-1")
    assert state == domain.AgentState()
    assert await store.lock_agent("a-1") == state
    record = await store.find_presence("a-1")
    assert record is not None
    assert (record.status, record.base, record.manual, record.team, record.profile) == (
        "offline",
        "offline",
        False,
        None,
        "default",
    )
    assert (record.closed_channels, record.idle, record.devices) == ((), False, ())


async def test_state_changes_are_read_back(store: PresenceStore) -> None:
    await store.upsert_status(domain.Status("lunch", "away", "#f80", custom=True))
    await store.lock_agent("a-1")
    assert await store.set_status("a-1", "lunch", True) == domain.Status("lunch", "away", "#f80")
    await store.remember_before("a-1", "busy", True, T0)
    await store.set_idle("a-1", True)
    await store.set_closed_channels("a-1", ["chat", "voice"])
    assert await store.lock_agent("a-1") == domain.AgentState(
        "lunch", "away", True, "busy", True, T0, True, ("chat", "voice"), "default"
    )
    await store.remember_before("a-1", None, False, None)
    await store.set_closed_channels("a-1", [])
    state = await store.lock_agent("a-1")
    assert (state.status_before, state.manual_before, state.disconnected_at, state.closed_channels) == (
        None,
        False,
        None,
        (),
    )


async def test_updates_of_an_unknown_agent_change_nothing(store: PresenceStore) -> None:
    assert await store.set_status("ghost", "busy", False) == domain.Status("busy", "busy")
    await store.set_idle("ghost", True)
    await store.remember_before("ghost", "busy", False, T0)
    await store.set_closed_channels("ghost", ["chat"])
    assert await store.find_presence("ghost") is None


async def test_history_is_newest_first_and_limited(store: PresenceStore) -> None:
    await store.lock_agent("a-1")
    await store.lock_agent("a-2")
    await store.set_status("a-1", "available", False, previous="offline", source="device", reason="signed in")
    await store.set_status("a-2", "busy", False, previous="available", source="automatic")
    await store.set_status("a-1", "away", True, previous="available", source="manual", reason="chosen")
    await store.set_status("a-1", "away", False)  # no source: not in the history
    await store.set_status("a-1", "available", False, previous="away", source="manual")
    entries = await store.list_history("a-1", 2)
    assert [(e.status, e.previous, e.source, e.reason) for e in entries] == [
        ("available", "away", "manual", None),
        ("away", "available", "manual", "chosen"),
    ]
    assert all(isinstance(e.at, datetime) for e in entries)
    assert len(await store.list_history("a-1", 10)) == 3
    assert await store.list_history("nobody", 10) == []


async def test_loads_are_kept_and_agents_locked_at_once(store: PresenceStore) -> None:
    assert await store.find_load("a-1") is None
    locked = await store.lock_agents(["a-2", "a-1", "a-2"], {"a-1": domain.Load(2, False, True)})
    assert locked == {"a-1": (domain.AgentState(), None), "a-2": (domain.AgentState(), None)}
    assert await store.find_load("a-1") == domain.Load(2, False, True) and await store.find_load("a-2") is None
    await store.set_status("a-1", "busy", False)
    await store.lock_agents(["a-1"], {"a-1": domain.Load(3, True, False)})
    await store.lock_agents(["a-1"], {"a-1": domain.Load(3, True, False)})
    assert await store.find_load("a-1") == domain.Load(3, True, False)
    lenient = domain.Rules(full="busy")
    await store.upsert_profile("desk", lenient)
    await store.assign_agent("a-1", "desk", None)
    locked = await store.lock_agents(["a-1", "a-3"], {"a-3": domain.Load(1, False, False)})
    (state, rules), (other, none) = locked["a-1"], locked["a-3"]
    assert (state.status, state.profile, rules) == ("busy", "desk", lenient)
    assert (other, none) == (domain.AgentState(), None)
    assert await store.find_load("a-1") == domain.Load(3, True, False)
    assert await store.find_load("a-3") == domain.Load(1, False, False)
    assert await store.lock_agents([], {}) == {}


async def test_status_changes_of_a_batch_in_order(store: PresenceStore) -> None:
    await store.upsert_status(domain.Status("lunch", "away", "#f80", custom=True))
    await store.lock_agents(["a-1", "a-2"], {})
    changes = [
        domain.StatusChange("a-1", "busy", False, "offline", "automatic", "capacity: 1 in use"),
        domain.StatusChange("a-2", "lunch", True, "offline", "manual"),
        domain.StatusChange("a-1", "busy_dnd", False, "busy", "automatic", "capacity: 3 in use, full"),
        domain.StatusChange("a-2", "available", False),  # no source: not in the history
    ]
    assert await store.set_statuses(changes) == [
        domain.Status("busy", "busy"),
        domain.Status("lunch", "away", "#f80"),
        domain.Status("busy_dnd", "busy_dnd"),
        domain.Status("available", "available"),
    ]
    one, two = await store.lock_agent("a-1"), await store.lock_agent("a-2")
    assert (one.status, one.base, one.manual) == ("busy_dnd", "busy_dnd", False)
    assert (two.status, two.manual) == ("available", False)
    assert [(e.status, e.previous, e.reason) for e in await store.list_history("a-1", 5)] == [
        ("busy_dnd", "busy", "capacity: 3 in use, full"),
        ("busy", "offline", "capacity: 1 in use"),
    ]
    assert [(e.status, e.source) for e in await store.list_history("a-2", 5)] == [("lunch", "manual")]
    assert await store.set_statuses([]) == []


async def test_devices_live_signed_out_and_lost(store: PresenceStore) -> None:
    await store.device_seen("a-1", "phone", None, T0)
    await store.device_seen("a-1", "desktop", 12.5, T0)
    await store.device_seen("a-2", "desk", None, T0)
    live = await store.list_live_devices("a-1")
    assert live == [
        domain.Device("a-1", "desktop", True, T0, 12.5, False),
        domain.Device("a-1", "phone", True, T0, None, False),
    ]
    await store.sign_out_device("a-1", "phone")
    await store.sign_out_device("a-1", "tablet")  # never seen: nothing happens
    await store.mark_device_lost("a-1", "desktop")
    assert await store.list_live_devices("a-1") == []
    await store.device_seen("a-1", "desktop", None, T0 + timedelta(seconds=5))  # seen again: live again
    assert await store.list_live_devices("a-1") == [
        domain.Device("a-1", "desktop", True, T0 + timedelta(seconds=5), None, False)
    ]


async def test_silent_devices_count_from_the_grace_time(store: PresenceStore) -> None:
    await store.device_seen("a-2", "desk", None, T0)
    await store.device_seen("a-1", "phone", None, T0)
    await store.device_seen("a-1", "desktop", None, T0 + timedelta(seconds=30))
    await store.device_seen("a-3", "desk", None, T0)
    await store.sign_out_device("a-3", "desk")
    early = T0 - timedelta(hours=1)
    assert await store.list_silent_devices(60, early, T0 + timedelta(seconds=60)) == []
    silent = await store.list_silent_devices(60, early, T0 + timedelta(seconds=61))
    assert [(d.agent_id, d.device_id) for d in silent] == [("a-1", "phone"), ("a-2", "desk")]
    silent = await store.list_silent_devices(60, early, T0 + timedelta(seconds=91))
    assert [(d.agent_id, d.device_id) for d in silent] == [("a-1", "desktop"), ("a-1", "phone"), ("a-2", "desk")]
    # started at T0 + 50 s: nobody is silent before T0 + 110 s
    assert await store.list_silent_devices(60, T0 + timedelta(seconds=50), T0 + timedelta(seconds=100)) == []
    await store.mark_device_lost("a-1", "phone")
    silent = await store.list_silent_devices(60, early, T0 + timedelta(seconds=91))
    assert [(d.agent_id, d.device_id) for d in silent] == [("a-1", "desktop"), ("a-2", "desk")]


async def test_statuses_by_name_replaced_on_upsert(store: PresenceStore) -> None:
    await store.upsert_status(domain.Status("training", "busy_dnd", "#7b61ff", True))
    await store.upsert_status(domain.Status("lunch", "away", None, True))
    await store.upsert_status(domain.Status("lunch", "away", "#f5a623", True))
    assert await store.list_statuses() == [
        domain.Status("lunch", "away", "#f5a623", True),
        domain.Status("training", "busy_dnd", "#7b61ff", True),
    ]


async def test_a_status_needs_a_base_presence(store: PresenceStore) -> None:
    with pytest.raises((ValueError, asyncpg.CheckViolationError)):
        await store.upsert_status(domain.Status("nap", "lunchbreak"))


async def test_profile_rules_round_trip(store: PresenceStore) -> None:
    assert await store.find_rules("desk") is None
    await store.upsert_profile("desk", domain.Rules(idle_after_s=300))
    lenient = domain.Rules(full="busy", missed_offer=None, rejected_offer="busy_dnd")
    await store.upsert_profile("desk", lenient)
    assert await store.find_rules("desk") == lenient


async def test_assigning_agents_to_profiles_and_teams(store: PresenceStore) -> None:
    await store.lock_agent("a-1")
    await store.set_status("a-1", "busy", False)
    await store.assign_agent("a-1", "desk", "tier-1")
    await store.assign_agent("a-2", "default", "tier-1")
    await store.assign_agent("a-0", "default", "tier-2")
    await store.assign_agent("a-2", "default", None)
    state = await store.lock_agent("a-1")
    assert (state.status, state.profile) == ("busy", "desk")
    assert [m.agent_id for m in await store.list_team("tier-1")] == ["a-1"]
    await store.assign_agent("a-2", "escalation", "tier-1")
    members = await store.list_team("tier-1")
    assert [(m.agent_id, m.status, m.base, m.manual, m.closed_channels) for m in members] == [
        ("a-1", "busy", "busy", False, ()),
        ("a-2", "offline", "offline", False, ()),
    ]
    assert await store.list_team("nobody") == []


async def test_the_presence_record_lists_every_device(store: PresenceStore) -> None:
    await store.assign_agent("a-1", "desk", "tier-1")
    await store.device_seen("a-1", "phone", 4.0, T0)
    await store.device_seen("a-1", "desktop", None, T0)
    await store.sign_out_device("a-1", "phone")
    await store.device_seen("a-2", "desk", None, T0)
    record = await store.find_presence("a-1")
    assert record is not None
    assert (record.team, record.profile) == ("tier-1", "desk")
    assert record.devices == (
        domain.Device("a-1", "desktop", True, T0, None, False),
        domain.Device("a-1", "phone", False, T0, 4.0, False),
    )


async def test_every_agent_is_listed_with_its_latest_change(store: PresenceStore) -> None:
    assert await store.list_agents() == []
    await store.lock_agent("a-2")
    await store.upsert_status(domain.Status("lunch", "away", custom=True))
    await store.lock_agent("a-1")
    await store.set_status("a-1", "available", False, previous="offline", source="device")
    await store.set_status("a-1", "lunch", True, previous="available", source="manual", reason="chosen")
    await store.set_closed_channels("a-1", ["voice"])
    await store.assign_agent("a-1", "default", "tier-1")
    await store.set_status("a-3", "busy", False, previous="available", source="automatic")  # never seen: history only
    agents = await store.list_agents()
    assert [(a.agent_id, a.status, a.base, a.source, a.closed_channels, a.team) for a in agents] == [
        ("a-1", "lunch", "away", "manual", ("voice",), "tier-1"),
        ("a-2", "offline", "offline", None, (), None),
    ]
    assert all(isinstance(a.since, datetime) for a in agents)
