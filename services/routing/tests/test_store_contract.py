"""One contract for routing's store, run against the fake and against PostgreSQL: a fake that
passes where the real store fails is a bug in the fake.

The PostgreSQL store runs without an explicit transaction here (each statement commits), so its
`now()` moves between calls as the fake's clock does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from routing import domain
from routing.store import (
    AgentProfile,
    Configuration,
    Decision,
    FakeRoutingStore,
    NewWork,
    Offer,
    PgRoutingStore,
    PresenceUpdate,
    Q,
    Reservation,
    RoutingStore,
)
from shared import db
from shared.settings import ServiceSettings
from tools import stack, testing

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SIGNED_IN = ["available", "busy"]


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.e2e)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RoutingStore]:
    if request.param == "fake":
        yield FakeRoutingStore()
        return
    infra: testing.Infrastructure = request.getfixturevalue("infra")
    async with testing.store_database(infra, "routing") as pool, pool.acquire() as conn:
        yield PgRoutingStore(conn)


def configuration(*agents: str, exclusive_voice: bool = True) -> Configuration:
    return Configuration(
        channels={"chat": False, "voice": exclusive_voice},
        queues=[
            domain.Queue(
                "support", ("chat", "voice"), offer_timeout_s=30, overflow={"max_waiting": 5}, service_level_s=30
            ),
            domain.Queue("vip", ("chat",), "priority_fifo", ("available",), 5, prioritisation=({"boost": 3},)),
        ],
        rules=[domain.Rule("vips", "vip", {"attributes": {"tier": "gold"}})],
        default_queues={"chat": "support"},
        agents=[
            AgentProfile(a, ["support", "vip"], [], {"chat": 3, "voice": 1}, ["voice"] if exclusive_voice else [], {})
            for a in agents
        ],
    )


async def configured(store: RoutingStore, *agents: str, presence: str = "available") -> None:
    await store.replace_configuration(configuration(*agents), "test", {"agents": list(agents)})
    for a in agents:
        await store.upsert_presence(a, presence, datetime.now(UTC), [])


async def test_configuration_round_trips(store: RoutingStore) -> None:
    assert await store.find_config_document() is None
    cfg = configuration("a-1", "a-2")
    await store.replace_configuration(cfg, "test", {"version": 1})
    assert await store.list_channels() == {"chat": False, "voice": True}
    queues = await store.list_queues()
    assert list(queues) == ["support", "vip"]
    assert queues["support"] == cfg.queues[0] and queues["vip"] == cfg.queues[1]
    assert await store.list_rules() == cfg.rules
    assert await store.list_default_queues() == {"chat": "support"}
    assert await store.find_config_document() == {"version": 1}
    assert [a.agent_id for a in await store.list_agents_by_id(["a-1", "a-2", "nobody"])] == ["a-1", "a-2"]

    smaller = Configuration({"chat": False}, [domain.Queue("support", ("chat",))], [], {}, [cfg.agents[1]])
    await store.replace_configuration(smaller, "test", {"version": 2})
    assert await store.list_channels() == {"chat": False}
    assert list(await store.list_queues()) == ["support"]
    assert await store.list_rules() == [] and await store.list_default_queues() == {}
    assert [a.agent_id for a in await store.list_agents_by_id(["a-1", "a-2"])] == ["a-2"]  # a-1 unconfigured
    assert await store.find_agent("a-1") is not None
    assert await store.find_config_document() == {"version": 2}


async def test_the_configuration_version_moves_with_every_change(store: RoutingStore) -> None:
    before = await store.find_config_version()
    await store.replace_configuration(configuration("a-1"), "test", {"version": 1})
    first = await store.find_config_version()
    await store.replace_configuration(configuration("a-1"), "test", {"version": 1})
    second = await store.find_config_version()
    assert len({before, first, second}) == 3
    # a presence change reads the version with it (routing re-reads its configuration only when it moved)
    change = await store.upsert_presence("a-1", "available", datetime.now(UTC), [])
    assert change is not None and change.config_version == second
    newer = await store.upsert_presence("a-1", "busy", datetime.now(UTC) + timedelta(seconds=1), [])
    assert newer is not None and newer.config_version == second and newer.previous == "available"


async def test_presence_upsert_returns_what_was_held_and_ignores_older_changes(store: RoutingStore) -> None:
    first = await store.upsert_presence("a-1", "available", T0, [])
    assert first is not None and first.previous == "offline" and first.previous_closed == frozenset()
    second = await store.upsert_presence("a-1", "busy", T0 + timedelta(seconds=2), ["voice"])
    assert second is not None and second.previous == "available"
    assert await store.upsert_presence("a-1", "away", T0 + timedelta(seconds=1), []) is None
    agent = await store.find_agent("a-1")
    assert agent is not None and agent.presence == "busy" and agent.closed_channels == frozenset({"voice"})
    again = await store.upsert_presence("a-1", "available", T0 + timedelta(seconds=2), [])
    assert again is not None and again.previous == "busy" and again.previous_closed == frozenset({"voice"})
    assert await store.find_agent("nobody") is None


async def test_presence_changes_of_a_batch_are_projected_at_once(store: RoutingStore) -> None:
    await store.upsert_presence("a-1", "available", T0, [])
    await store.upsert_presence("a-2", "busy", T0 + timedelta(seconds=5), ["chat"])
    changes = await store.upsert_presences(
        [
            PresenceUpdate("a-1", "away", T0 + timedelta(seconds=1), ("voice",)),
            PresenceUpdate("a-2", "available", T0 + timedelta(seconds=1)),  # older than what is held
            PresenceUpdate("a-3", "available", T0),  # unknown so far
        ]
    )
    assert set(changes) == {"a-1", "a-3"}
    assert changes["a-1"].previous == "available" and changes["a-1"].previous_closed == frozenset()
    assert changes["a-3"].previous == "offline"
    assert changes["a-1"].config_version == changes["a-3"].config_version == await store.find_config_version()
    a1, a2, a3 = [await store.find_agent(a) for a in ("a-1", "a-2", "a-3")]
    assert a1 is not None and a1.presence == "away" and a1.closed_channels == frozenset({"voice"})
    assert a2 is not None and a2.presence == "busy" and a2.closed_channels == frozenset({"chat"})
    assert a3 is not None and a3.presence == "available"
    assert await store.upsert_presences([]) == {}


async def test_units_of_a_drain_pass_are_reserved_all_or_none_per_agent(store: RoutingStore) -> None:
    await configured(store, "a-1", "a-2", "a-3", "a-4", "a-5")
    await store.upsert_presence("a-4", "available", datetime.now(UTC) + timedelta(seconds=1), ["chat"])
    await store.reserve_capacity("a-5", "chat", SIGNED_IN)
    taken = await store.reserve_units(
        [
            Reservation("a-1", {"chat": 2}, ("available",)),
            Reservation("a-2", {"chat": 4}, ("available",)),  # over its limit of 3: none of them
            Reservation("a-3", {"voice": 1}, ("available",)),  # exclusive, idle agent
            Reservation("a-4", {"chat": 1}, ("available",)),  # chat closed
            Reservation("a-5", {"voice": 1}, ("available",)),  # exclusive needs an idle agent
            Reservation("nobody", {"chat": 1}, ("available",)),
        ]
    )
    assert set(taken) == {"a-1", "a-3"}
    assert taken["a-1"].used == {"chat": 2} and taken["a-1"].total_used == 2 and not taken["a-1"].exclusive_held
    assert taken["a-3"].used == {"voice": 1} and taken["a-3"].exclusive_held
    assert await store.reserve_units([Reservation("a-1", {"chat": 1}, ("busy",))]) == {}  # presence not allowed
    again = await store.reserve_units([Reservation("a-1", {"chat": 1}, ("available", "busy"))])
    assert again["a-1"].used == {"chat": 3} and again["a-1"].total_used == 3
    assert await store.reserve_units([Reservation("a-1", {"chat": 1}, ("available",))]) == {}  # full
    assert await store.reserve_units([Reservation("a-3", {"chat": 1}, ("available",))]) == {}  # holds voice
    a2 = await store.find_agent("a-2")
    assert a2 is not None and a2.used.get("chat", 0) == 0 and a2.total_used == 0
    assert await store.reserve_units([]) == {}


async def test_reserve_up_to_the_limit_and_release(store: RoutingStore) -> None:
    await configured(store, "a-1")
    for n in (1, 2, 3):
        cap = await store.reserve_capacity("a-1", "chat", SIGNED_IN)
        assert cap is not None and cap.used["chat"] == n and cap.total_used == n
        assert cap.limits == {"chat": 3, "voice": 1} and not cap.exclusive_held
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is None  # 3 of 3
    cap = await store.release_capacity("a-1", "chat")
    assert cap is not None and cap.used["chat"] == 2 and cap.total_used == 2
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is not None
    for _ in range(3):
        assert await store.release_capacity("a-1", "chat") is not None
    assert await store.release_capacity("a-1", "chat") is None  # nothing held
    assert await store.release_capacity("nobody", "chat") is None


async def test_exclusive_voice_blocks_everything_else_and_needs_an_idle_agent(store: RoutingStore) -> None:
    await configured(store, "a-1")
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is not None
    assert await store.reserve_capacity("a-1", "voice", SIGNED_IN) is None  # busy with a chat
    await store.release_capacity("a-1", "chat")
    cap = await store.reserve_capacity("a-1", "voice", SIGNED_IN)
    assert cap is not None and cap.exclusive_held and cap.used["voice"] == 1
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is None  # voice held
    cap = await store.release_capacity("a-1", "voice")
    assert cap is not None and not cap.exclusive_held and cap.total_used == 0
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is not None


async def test_reserve_respects_presence_closed_channels_and_the_profile(store: RoutingStore) -> None:
    await configured(store, "a-1", presence="away")
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is None
    assert await store.reserve_capacity("a-1", "chat", ["away"]) is not None  # presences given are allowed
    await store.upsert_presence("a-1", "available", datetime.now(UTC) + timedelta(seconds=1), ["chat"])
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is None  # chat closed
    assert await store.reserve_capacity("a-1", "email", SIGNED_IN) is None  # not in the profile
    assert await store.reserve_capacity("nobody", "chat", SIGNED_IN) is None


async def test_candidate_agents_longest_idle_first_with_a_free_unit(store: RoutingStore) -> None:
    await configured(store, "a-1", "a-2", "a-3", "a-4", "a-5")
    await store.upsert_presence("a-3", "away", datetime.now(UTC) + timedelta(seconds=1), [])
    await store.upsert_presence("a-4", "available", datetime.now(UTC) + timedelta(seconds=1), ["chat"])
    await store.reserve_capacity("a-5", "voice", SIGNED_IN)  # exclusive held
    await store.upsert_presence("stranger", "available", datetime.now(UTC), [])  # not configured
    for _ in range(3):
        await store.reserve_capacity("a-2", "chat", SIGNED_IN)  # chat full
    ids = [a.agent_id for a in await store.list_candidate_agents(["available"], ["chat"], 10)]
    assert ids == ["a-1"]
    # a-2 still has voice; a-4 has voice open; most recently assigned last
    ids = [a.agent_id for a in await store.list_candidate_agents(["available"], ["chat", "voice"], 10)]
    assert ids == ["a-1", "a-4", "a-2"]
    assert [a.agent_id for a in await store.list_candidate_agents(["available"], ["chat", "voice"], 2)] == [
        "a-1",
        "a-4",
    ]
    [a2] = await store.list_agents_by_id(["a-2"])
    assert a2.used == {"chat": 3} and a2.total_used == 3 and a2.queues == frozenset({"support", "vip"})
    assert a2.exclusive == frozenset({"voice"}) and a2.last_assigned_at is not None


async def test_insert_work_is_idempotent(store: RoutingStore) -> None:
    arrival = {"conversation_id": "c-1", "channel": "chat", "required_skills": {"billing": 2}, "priority": 3}
    assert await store.insert_work("c-1", "chat", "support", 3, arrival, T0)
    assert not await store.insert_work("c-1", "voice", "vip", 0, {}, T0)
    work = await store.find_work("c-1")
    assert work is not None and (work.channel, work.queue, work.status) == ("chat", "support", "queued")
    assert work.arrival == arrival and work.failed_offers == 0 and not work.overflowed
    [waiting] = await store.list_waiting_work(10)
    assert waiting.required_skills == {"billing": 2} and waiting.priority == 3 and waiting.arrival == arrival
    assert await store.find_work("c-2") is None


async def test_waiting_work_oldest_first(store: RoutingStore) -> None:
    pref = {"preferred_agent_id": "a-9", "attributes": {"tier": "gold"}}
    await store.insert_work("c-b", "chat", "support", 0, {}, T0 + timedelta(seconds=2))
    await store.insert_work("c-c", "voice", "vip", 9, pref, T0 + timedelta(seconds=1))
    await store.insert_work("c-a", "chat", "support", 0, {}, T0 + timedelta(seconds=2))  # tie: by id
    await store.insert_work("c-d", "chat", "vip", 0, {}, T0 + timedelta(seconds=3))
    waiting = await store.list_waiting_work(10)
    assert [w.conversation_id for w in waiting] == ["c-c", "c-a", "c-b", "c-d"]
    assert waiting[0].preferred_agent == "a-9" and waiting[0].attributes == {"tier": "gold"}
    assert [w.conversation_id for w in await store.list_waiting_work(2)] == ["c-c", "c-a"]
    assert await store.count_waiting_by_channel(10) == {"chat": 3, "voice": 1}
    assert await store.count_waiting_by_channel(2) == {"chat": 2, "voice": 1}  # counted up to the cap
    assert await store.count_waiting("support") == 2 and await store.count_waiting("vip") == 2
    positions, figures = await store.record_positions(["c-a", "c-b", "c-d", "c-c"], ["support", "vip"])
    assert positions == {"c-a": 1, "c-b": 2, "c-c": 1, "c-d": 2}
    assert set(figures) == {"support", "vip"} and figures["vip"].handled == 0
    assert (await store.record_positions(["c-a", "c-d"], ["vip"]))[0] == {"c-d": 2}
    # recorded as told: nothing has moved since
    assert await store.list_position_changes(10) == []


async def test_arrivals_of_a_batch_are_inserted_at_once(store: RoutingStore) -> None:
    await store.insert_work("c-1", "chat", "support", 0, {}, T0)
    arrival = {"channel": "chat", "required_skills": {"billing": 2}}
    new = [
        NewWork("c-1", "chat", "support", 0, {}, T0),  # known already
        NewWork("c-2", "chat", "vip", 3, arrival, T0 + timedelta(seconds=1)),
        NewWork("c-2", "chat", "vip", 3, arrival, T0 + timedelta(seconds=1)),  # twice in the batch
        NewWork("c-3", "voice", "support", 0, {}, T0 + timedelta(seconds=2)),
    ]
    assert await store.insert_works(new) == {"c-2", "c-3"}
    waiting = {w.conversation_id: w for w in await store.list_waiting_work(10)}
    assert set(waiting) == {"c-1", "c-2", "c-3"}
    c2 = waiting["c-2"]
    assert (c2.queue, c2.priority, c2.required_skills, c2.arrival) == ("vip", 3, {"billing": 2}, arrival)
    assert c2.enqueued_at == T0 + timedelta(seconds=1)
    assert await store.insert_works([]) == set()


async def test_offers_are_created_ended_and_expire(store: RoutingStore) -> None:
    now = datetime.now(UTC)
    for cid in ("c-1", "c-2", "c-3"):
        await store.insert_work(cid, "chat", "support", 0, {}, T0)
    offers = [
        Offer("o-1", "c-1", "a-1", "chat", "support", now + timedelta(seconds=30)),
        Offer("o-2", "c-2", "a-1", "chat", "support", now - timedelta(seconds=5)),
        Offer("o-3", "c-3", "a-2", "chat", "support", now - timedelta(seconds=10)),
    ]
    await store.mark_offered(offers)
    work = await store.find_work("c-1")
    assert work is not None and (work.status, work.agent_id, work.offer_id) == ("offered", "a-1", "o-1")
    assert await store.list_waiting_work(10) == []
    assert [o.offer_id for o in await store.list_expired_offers(now, 10)] == ["o-3", "o-2"]
    assert [o.offer_id for o in await store.list_expired_offers(now, 1)] == ["o-3"]

    assert await store.accept_offer("o-1", "a-2", now) is None  # someone else's
    assert await store.accept_offer("o-2", "a-1", now) is None  # expired
    accepted = await store.accept_offer("o-1", "a-1", now)
    assert accepted is not None and accepted.offer == offers[0]
    assigned = accepted.work  # assigned with the acceptance
    assert assigned is not None and (assigned.status, assigned.agent_id, assigned.offer_id) == (
        "assigned",
        "a-1",
        "o-1",
    )
    assert assigned.assigned_at is not None
    assert await store.end_offer("o-1", "a-1", "withdrawn") is None  # no longer pending
    assert await store.mark_assigned("c-1", "a-1", "o-1", ["offered"]) is None
    [decision] = await store.list_decisions("c-1")  # recorded with the acceptance
    assert (decision.kind, decision.detail) == ("assigned", {"agent_id": "a-1", "how": "accepted"})

    assert await store.end_offer("o-2", "a-1", "expired") == offers[1]
    assert await store.end_offer("o-2", "a-1", "expired") is None
    assert [o.offer_id for o in await store.list_expired_offers(now, 10)] == ["o-3"]
    assert await store.requeue_work("c-2", "a-1", "o-other") is None  # another offer's
    requeued = await store.requeue_work("c-2", "a-1", "o-2")
    assert requeued is not None and requeued.status == "queued" and requeued.failed_offers == 1
    [again] = await store.list_waiting_work(10)
    assert again.conversation_id == "c-2" and again.passed_by == frozenset({"a-1"})
    assert await store.requeue_work("c-2", "a-1", "o-2") is None  # only once


async def test_accepts_and_closes_in_one_round_trip_answer_each_in_order(store: RoutingStore) -> None:
    """`accept_offers` and `close_works` (run ahead of a batch's handlers) answer as the one-by-one
    calls do, each in its input's place, refused ones included."""
    await configured(store, "a-1", "a-2")
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=30)
    for cid in ("c-1", "c-2", "c-3", "c-4"):
        await store.insert_work(cid, "chat", "support", 0, {}, T0)
    offers = [
        Offer("o-1", "c-1", "a-1", "chat", "support", soon),
        Offer("o-2", "c-2", "a-2", "chat", "support", soon),
        Offer("o-3", "c-3", "a-1", "chat", "support", now - timedelta(seconds=1)),
        Offer("o-4", "c-4", "a-2", "chat", "support", soon),
    ]
    await store.mark_offered(offers)
    for agent in ("a-1", "a-2"):
        assert await store.reserve_capacity(agent, "chat", SIGNED_IN) is not None
    assert await store.accept_offers([]) == []
    answers = await store.accept_offers(
        [("o-1", "a-1", now), ("o-3", "a-1", now), ("o-4", "a-1", now), ("o-2", "a-2", now)]
    )
    assert [a.offer.offer_id if a else None for a in answers] == ["o-1", None, None, "o-2"]  # expired; not a-1's
    assert [a.work.status if a and a.work else None for a in answers] == ["assigned", None, None, "assigned"]

    assert await store.close_works([]) == []
    closed = await store.close_works([("c-2", "a-2"), ("c-4", "a-2"), ("c-1", "a-1")])
    assert [c.work.conversation_id if c else None for c in closed] == ["c-2", None, "c-1"]  # c-4 was not assigned
    first = closed[0]
    assert first is not None and first.capacity is not None and first.capacity.agent_id == "a-2"
    assert first.capacity.used == {"chat": 0} and first.handled_s is not None
    assert await store.close_works([("c-1", "a-1")]) == [None]  # closed already


async def test_work_lifecycle_close_end_move_and_transfer(store: RoutingStore) -> None:
    await configured(store, "a-1")
    for cid in ("c-1", "c-2", "c-3", "c-4"):
        await store.insert_work(cid, "chat", "support", 0, {"n": cid}, T0)
    assert await store.reserve_capacity("a-1", "chat", SIGNED_IN) is not None
    await store.mark_assigned_many([("c-1", "a-1"), ("c-4", "a-1")])
    assert await store.close_work("c-1", "a-2") is None  # not theirs
    closed = await store.close_work("c-1", "a-1")
    assert closed is not None and closed.work.status == "closed" and closed.work.assigned_at is not None
    # the agent's unit is released with the close
    assert closed.capacity is not None and closed.capacity.used == {"chat": 0} and closed.capacity.total_used == 0
    # the handle time is the caller's to count, once per transaction
    assert closed.handled_s is not None and 0 <= closed.handled_s < 60
    assert (await store.get_queue_figures("support")).handled == 0
    await store.add_handled({"support": (1, closed.handled_s)})
    figures = await store.get_queue_figures("support")
    assert figures.handled == 1 and figures.handle_seconds == closed.handled_s
    assert [(d.kind, d.detail) for d in await store.list_decisions("c-1")] == [("released", {"agent_id": "a-1"})]
    assert await store.close_work("c-1", "a-1") is None
    nothing_held = await store.close_work("c-4", "a-1")  # closed, though the agent held no unit
    assert nothing_held is not None and nothing_held.capacity is None

    await store.move_work("c-2", "vip")
    moved = await store.find_work("c-2")
    assert moved is not None and moved.queue == "vip" and moved.overflowed
    await store.mark_overflowed("c-3")
    kept = await store.find_work("c-3")
    assert kept is not None and kept.queue == "support" and kept.overflowed

    transferred = await store.transfer_to_agent("c-2", "a-2", "support")
    assert transferred is not None and (transferred.status, transferred.agent_id) == ("assigned", "a-2")
    assert transferred.arrival == {"n": "c-2"}
    await store.transfer_to_queue("c-2", "vip")
    back = await store.find_work("c-2")
    assert back is not None and (back.status, back.agent_id, back.queue) == ("queued", None, "vip")

    await store.end_work("c-3")
    ended = await store.find_work("c-3")
    assert ended is not None and ended.status == "ended"
    await store.end_work("c-1")  # closed stays closed
    done = await store.find_work("c-1")
    assert done is not None and done.status == "closed"


async def test_queue_figures(store: RoutingStore) -> None:
    await configured(store, "a-1", "a-2")
    await store.upsert_presence("a-2", "away", datetime.now(UTC) + timedelta(seconds=1), [])
    assert (await store.get_queue_figures("support")).handled == 0
    for cid in ("c-8", "c-9"):
        await store.insert_work(cid, "chat", "support", 0, {}, T0)
    await store.mark_assigned_many([("c-8", "a-1"), ("c-9", "a-1")])
    await store.add_handled({})
    await store.add_handled({"support": (2, 7.5)})
    await store.add_handled({"support": (1, 0.5), "vip": (1, 3.0)})
    figures = await store.get_queue_figures("support")
    assert figures.handled == 3 and figures.handle_seconds == 8.0
    assert (await store.get_queue_figures("vip")).handled == 1
    await store.insert_work("c-1", "chat", "support", 0, {}, datetime.now(UTC))
    await store.refresh_queue_figures()
    figures = await store.get_queue_figures("support")
    assert figures.staffed_slots == 4  # a-1 only: chat 3 + voice 1
    assert figures.arrivals_per_s == pytest.approx(1 / 900)
    assert (await store.get_queue_figures("vip")).staffed_slots == 3
    assert (await store.get_queue_figures("unknown")).handled == 0


async def test_position_changes_are_reported_until_told(store: RoutingStore) -> None:
    assert await store.try_lock_positions()
    for i in range(12):
        await store.insert_work(f"c-{i:02}", "chat", "support", 0, {}, T0 + timedelta(seconds=i))
    changes = await store.list_position_changes(100)
    assert [(c.conversation_id, c.position) for c in changes][:2] == [("c-00", 1), ("c-01", 2)]
    assert len(changes) == 12 and len(await store.list_position_changes(5)) == 5
    await store.set_last_positions({c.conversation_id: c.position for c in changes})
    assert await store.list_position_changes(100) == []
    await store.end_work("c-00")  # everyone moves up one
    moved = {c.conversation_id: c.position for c in await store.list_position_changes(100)}
    # the first ten places hear every move; c-11 moved from 12 to 11, under a tenth
    assert moved == {f"c-{i:02}": i for i in range(1, 11)}


async def test_decisions_in_order(store: RoutingStore) -> None:
    await store.insert_decisions(
        [Decision("c-1", "queued", {"queue": "support"}), Decision("c-2", "queued", {}), Decision("c-1", "offered", {})]
    )
    await store.insert_decisions([])
    decisions = await store.list_decisions("c-1")
    assert [(d.kind, d.detail) for d in decisions] == [("queued", {"queue": "support"}), ("offered", {})]
    assert all(d.at is not None for d in decisions)
    assert await store.list_decisions("c-3") == []


# --- reads for the supervisor view and the agent's Home -----------------------------------------


async def test_queue_activity_counts_what_happened_since(store: RoutingStore) -> None:
    await configured(store, "a-1")
    now = datetime.now(UTC)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    await store.insert_work("c-1", "chat", "support", 0, {}, ago(5))
    await store.insert_work("c-2", "chat", "support", 0, {}, ago(100))
    await store.insert_work("c-3", "chat", "support", 0, {}, ago(10))
    await store.insert_work("c-4", "chat", "vip", 0, {}, ago(2))
    await store.insert_work("c-5", "chat", "support", 0, {}, ago(200))
    await store.insert_work("c-6", "chat", "support", 0, {}, ago(1))
    await store.insert_work("c-7", "chat", "support", 0, {}, ago(3))
    await store.mark_offered(
        [
            Offer("o-1", "c-1", "a-1", "chat", "support", now + timedelta(seconds=30)),
            Offer("o-7", "c-7", "a-1", "chat", "support", now + timedelta(seconds=30)),
        ]
    )
    await store.accept_offer("o-1", "a-1", now)  # assigned: waited 5 s, within support's 30 s
    await store.mark_assigned_many([("c-2", "a-1")])  # waited 100 s
    await store.end_work("c-3")  # abandoned while waiting
    await store.move_work("c-5", "vip")  # overflowed out of support
    await store.insert_decisions([Decision("c-5", "overflowed", {"from": "support", "to": "vip"})])
    closed = await store.close_work("c-1", "a-1")
    assert closed is not None and closed.handled_s is not None
    await store.add_handled({"support": (1, closed.handled_s)})

    support, vip = await store.list_queue_activity(now - timedelta(minutes=15))
    assert support.queue == "support" and vip.queue == "vip"
    assert (support.queued, support.offered_now, support.oldest_waiting_at) == (1, 1, ago(3))
    assert (support.offered, support.assigned, support.assigned_in_time) == (2, 2, 1)
    assert (support.abandoned, support.overflowed, support.service_level_s) == (1, 1, 30)
    assert support.figures.handled == 1 and 0 <= support.figures.handle_seconds < 60
    assert (vip.queued, vip.offered_now, vip.oldest_waiting_at) == (2, 0, ago(200))
    assert (vip.offered, vip.assigned, vip.abandoned, vip.overflowed, vip.service_level_s) == (0, 0, 0, 0, 20)

    [later, _] = await store.list_queue_activity(datetime.now(UTC) + timedelta(minutes=1))
    assert (later.offered, later.assigned, later.abandoned, later.overflowed) == (0, 0, 0, 0)
    assert (later.queued, later.offered_now) == (1, 1)  # what waits now does not depend on the window


async def test_open_work_lists_waiting_offered_and_assigned_with_transfers(store: RoutingStore) -> None:
    now = datetime.now(UTC)
    arrival = {"customer": {"name": "Ada"}, "subject": "refund"}
    await store.insert_work("c-1", "chat", "support", 4, arrival, now - timedelta(seconds=40))
    await store.insert_work("c-2", "chat", "support", 0, {}, now - timedelta(seconds=30))
    await store.insert_work("c-3", "voice", "support", 0, {}, now - timedelta(seconds=20))
    await store.insert_work("c-4", "chat", "support", 0, {}, now - timedelta(seconds=10))
    await store.mark_offered([Offer("o-2", "c-2", "a-1", "chat", "support", now + timedelta(seconds=30))])
    await store.mark_assigned_many([("c-3", "a-2")])
    await store.end_work("c-4")
    transferred = await store.transfer_to_agent("c-3", "a-1", "vip")
    assert transferred is not None and transferred.agent_id == "a-1"
    await store.transfer_to_queue("c-3", "support")
    await store.transfer_to_agent("c-3", "a-2", "support")

    work = await store.list_open_work(10)
    assert [(w.conversation_id, w.status, w.agent_id) for w in work] == [
        ("c-1", "queued", None),
        ("c-2", "offered", "a-1"),
        ("c-3", "assigned", "a-2"),
    ]
    c1, _, c3 = work
    assert c1.arrival == arrival and c1.priority == 4 and c1.enqueued_at == now - timedelta(seconds=40)
    assert c1.assigned_at is None and not c1.overflowed and c1.transfers == 0
    assert c3.channel == "voice" and c3.assigned_at is not None and c3.transfers == 3
    assert [w.conversation_id for w in await store.list_open_work(2)] == ["c-1", "c-2"]


async def test_list_agents_gives_configured_agents_with_their_ledger(store: RoutingStore) -> None:
    await configured(store, "a-2", "a-1")
    await store.upsert_presence("stranger", "available", datetime.now(UTC), [])  # not configured
    await store.reserve_capacity("a-2", "chat", SIGNED_IN)
    agents = await store.list_agents()
    assert [a.agent_id for a in agents] == ["a-1", "a-2"]
    a2 = agents[1]
    assert a2.presence == "available" and a2.used == {"chat": 1} and a2.limits == {"chat": 3, "voice": 1}
    assert a2.total_used == 1 and not a2.exclusive_held and a2.queues == frozenset({"support", "vip"})


async def test_old_assignments_are_pruned(store: RoutingStore) -> None:
    await configured(store, "a-1")
    await store.insert_work("c-1", "chat", "support", 0, {}, datetime.now(UTC))
    await store.mark_assigned_many([("c-1", "a-1")])
    await store.prune_assignments(datetime.now(UTC) - timedelta(hours=1))
    since = datetime.now(UTC) - timedelta(minutes=15)
    assert (await store.list_queue_activity(since))[0].assigned == 1
    await store.prune_assignments(datetime.now(UTC) + timedelta(seconds=1))
    assert (await store.list_queue_activity(since))[0].assigned == 0


# --- PostgreSQL only: two transactions at once (the fake runs one at a time) -------------------


@pytest.fixture
async def pool(infra: testing.Infrastructure) -> AsyncIterator[asyncpg.Pool]:
    async with testing.store_database(infra, "routing") as pool:
        yield pool


def chat(*agents: str) -> list[Reservation]:
    return [Reservation(a, {"chat": 1}, ("available",)) for a in agents]


@pytest.mark.e2e
async def test_a_drain_skips_an_agent_another_transaction_holds_instead_of_waiting(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as batch, pool.acquire() as drain:
        await configured(PgRoutingStore(batch), "a-1", "a-2")
        async with batch.transaction():
            await PgRoutingStore(batch).lock_agents(["a-1"])
            async with drain.transaction():
                # waiting here could close a cycle with the batch (a deadlock): the timeout fails it
                taken = await asyncio.wait_for(PgRoutingStore(drain).reserve_units(chat("a-1", "a-2")), 10)
            assert set(taken) == {"a-2"}
            # the batch's own drain takes the agents it holds
            assert set(await PgRoutingStore(batch).reserve_units(chat("a-1"))) == {"a-1"}
        assert set(await PgRoutingStore(drain).reserve_units(chat("a-1", "a-2"))) == {"a-1", "a-2"}


@pytest.mark.e2e
async def test_a_batch_locks_its_agents_and_those_offered_or_holding_its_conversations(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as batch, pool.acquire() as other:
        store = PgRoutingStore(batch)
        await configured(store, "a-1", "a-2", "a-3", "a-4", "a-5")
        now = datetime.now(UTC)
        for cid in ("c-1", "c-2", "c-3"):
            await store.insert_work(cid, "chat", "support", 0, {}, now)
        await store.mark_offered([Offer("o-1", "c-1", "a-2", "chat", "support", now + timedelta(seconds=30))])
        await store.mark_assigned_many([("c-2", "a-3"), ("c-3", "a-4")])
        await store.close_work("c-3", "a-4")  # closed: its agent is not the batch's business
        async with batch.transaction():
            await store.lock_agents(["a-1"], ["c-1", "c-2", "c-3", "unknown"])
            async with other.transaction():
                free = await asyncio.wait_for(PgRoutingStore(other).reserve_units(chat("a-1", "a-2", "a-3", "a-4")), 10)
            assert set(free) == {"a-4"}


@pytest.mark.e2e
async def test_after_a_sign_in_wave_the_candidates_come_from_the_idle_index(pool: asyncpg.Pool) -> None:
    """Statistics gathered while every agent was offline make PostgreSQL read and sort all the agents
    for each drain's few candidates; refreshed, it walks the longest-idle index and stops early."""
    agents = [f"a-{i:03}" for i in range(300)]
    async with pool.acquire() as conn:
        store = PgRoutingStore(conn)
        await store.replace_configuration(configuration(*agents), "test", {})
        await conn.execute("ANALYZE agents")  # as autovacuum saw them: no agent signed in
        await store.upsert_presences([PresenceUpdate(a, "available", datetime.now(UTC)) for a in agents])

        async def plan() -> str:
            rows = await conn.fetch("EXPLAIN " + Q.list_candidate_agents, ["available", "busy"], ["chat"], 16)
            return "\n".join(r[0] for r in rows)

        assert "agents_idle" not in await plan()  # what the drains met after a sign-in wave
        for _ in range(50):  # the server's activity counters reach the statistics view within a second
            await conn.execute("SELECT pg_stat_force_next_flush()")
            if await store.refresh_agent_statistics():
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("300 changed agents did not refresh the statistics")
        assert "agents_idle" in await plan() and "Sort" not in await plan()
        assert not await store.refresh_agent_statistics()  # fresh now: nothing to do


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", ()) for node in _plan_nodes(child))]


@pytest.mark.e2e
async def test_the_drains_reads_walk_an_index_when_the_backlog_outgrew_its_statistics(pool: asyncpg.Pool) -> None:
    """A surge: the statistics were gathered over a few waiting items, then thousands arrived before
    autovacuum looked again. The oldest waiting work is still an index walk that stops after the rows
    asked for (not a sort of the whole line), and the channels' count stops at its cap."""
    async with pool.acquire() as conn:
        cost = ServiceSettings.model_fields["db_random_page_cost"].default
        await conn.execute(f"SET random_page_cost = {cost}")  # as the services' connections have it
        store = PgRoutingStore(conn)

        def arrivals(first: int, n: int) -> list[NewWork]:
            return [
                NewWork(f"c-{i:05}", "voice" if i % 10 == 0 else "chat", "support", 0, {}, T0 + timedelta(seconds=i))
                for i in range(first, first + n)
            ]

        await store.insert_works(arrivals(0, 20))
        await conn.execute("ANALYZE work_items")
        await store.insert_works(arrivals(20, 3000))
        plan = (await conn.fetchval("EXPLAIN (FORMAT JSON) " + Q.list_waiting_work, 50))[0]["Plan"]
        nodes = _plan_nodes(plan)
        assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")], plan
        assert [n for n in nodes if n.get("Index Name") == "work_waiting" and n["Node Type"] == "Index Scan"], plan
        assert [w.conversation_id for w in await store.list_waiting_work(3)] == ["c-00000", "c-00001", "c-00002"]
        assert await store.count_waiting_by_channel(125) == {"chat": 125, "voice": 125}
        assert await store.count_waiting_by_channel(5000) == {"chat": 2718, "voice": 302}


@pytest.mark.e2e
async def test_a_burst_of_offers_is_accepted_and_closed_by_key_whatever_the_statistics(pool: asyncpg.Pool) -> None:
    """Statistics gathered while no offer was pending, then thousands were made: accepting one,
    closing its work and locking a batch's agents still read the offer and the work by their keys.
    With `status = 'pending'` the planner read the whole of the pending offers' index for each
    accept (1,600 rows in a bench)."""
    async with pool.acquire() as conn:
        cost = ServiceSettings.model_fields["db_random_page_cost"].default
        await conn.execute(f"SET random_page_cost = {cost}")  # as the services' connections have it
        store = PgRoutingStore(conn)
        expires = datetime.now(UTC) + timedelta(minutes=5)

        async def offered(first: int, n: int) -> None:
            ids = range(first, first + n)
            await store.insert_works([NewWork(f"c-{i:05}", "chat", "support", 0, {}, T0) for i in ids])
            await store.mark_offered([Offer(f"o-{i:05}", f"c-{i:05}", "a-1", "chat", "support", expires) for i in ids])

        await offered(0, 300)  # the warm-up's offers, ended before autovacuum came by
        await conn.execute("UPDATE offers SET status = 'expired'; UPDATE work_items SET status = 'ended'")
        await conn.execute("VACUUM ANALYZE offers, work_items")  # the partial indexes: pages, no rows
        await offered(300, 3000)
        await conn.execute("SET plan_cache_mode = force_generic_plan")  # as a prepared statement reused

        async def scans(query: str, *args: Any) -> list[tuple[str, str | None]]:
            plan = (await conn.fetchval("EXPLAIN (FORMAT JSON) " + query, *args))[0]["Plan"]
            return [(n["Relation Name"], n.get("Index Name")) for n in _plan_nodes(plan) if "Relation Name" in n]

        at = datetime.now(UTC)
        accept = await scans(Q.accept_offer, "o-00307", "a-1", at)
        assert ("offers", "offers_pkey") in accept and ("work_items", "work_items_pkey") in accept, accept
        close = await scans(Q.close_work, "c-00307", "a-1")
        assert ("work_items", "work_items_pkey") in close, close
        assert ("offers", "offers_pkey") in await scans(Q.end_offer, "o-00308", "a-1", "rejected")
        assert ("work_items", "work_items_pkey") in await scans(Q.end_work, "c-00309")
        assert ("work_items", "work_items_pkey") in await scans(Q.lock_agents, ["a-1"], ["c-00307", "c-00308"])
        accepted = await store.accept_offer("o-00307", "a-1", at)
        assert accepted is not None and accepted.work is not None and accepted.work.status == "assigned"


@pytest.mark.e2e
async def test_a_drain_does_not_skip_work_whose_place_in_line_is_being_announced(pool: asyncpg.Pool) -> None:
    """Announcing places in line holds what it records until its transaction commits; a drain
    meanwhile (which skips work another drain holds) still sees the oldest waiting work first."""
    async with pool.acquire() as announcer, pool.acquire() as drain:
        store = PgRoutingStore(announcer)
        line = [NewWork(f"c-{i}", "chat", "support", 0, {}, T0 + timedelta(seconds=i)) for i in (1, 2)]
        await store.insert_works(line)
        async with announcer.transaction():
            changes = await store.list_position_changes(10)
            await store.set_last_positions({ch.conversation_id: ch.position for ch in changes})
            await store.record_positions(["c-2"], ["support"])
            async with drain.transaction():
                waiting = await asyncio.wait_for(PgRoutingStore(drain).list_waiting_work(10), 10)
            assert [w.conversation_id for w in waiting] == ["c-1", "c-2"]
        assert await store.list_position_changes(10) == []  # told, and remembered


@pytest.mark.e2e
async def test_places_told_before_the_upgrade_are_kept_by_it(infra: testing.Infrastructure) -> None:
    """A database at migration 0009, with places told on the work rows, upgraded to 0010: the places
    move to told_positions, so no customer is told the same place again."""
    dep = await testing.create_deployment(infra)
    try:
        url = stack.service_database_url(dep.database_url, "routing")
        migrations = db.load_migrations("shared", "shared") + db.load_migrations("routing", "routing")
        before = [m for m in migrations if not (m.component == "routing" and m.version >= 10)]
        conn = await asyncpg.connect(url)
        try:
            await db.migrate(conn, "routing", before)
            await conn.execute("SET search_path TO routing, public")
            store = PgRoutingStore(conn)
            await store.insert_works([NewWork(f"c-{i}", "chat", "support", 0, {}, T0) for i in (1, 2)])
            await conn.execute("UPDATE work_items SET last_position = 1 WHERE conversation_id = 'c-1'")
            assert await db.migrate(conn, "routing", migrations) == ["routing/0010_told_positions"]
            assert [tuple(r) for r in await conn.fetch("SELECT * FROM told_positions")] == [("c-1", 1)]
            assert [ch.conversation_id for ch in await store.list_position_changes(10)] == ["c-2"]
        finally:
            await conn.close()
    finally:
        await testing.drop_deployment(dep)
