"""Pure routing rules: unit and property-based tests (no IO)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import domain

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
CHAT = domain.Queue("chat", ("chat",))
VOICE = domain.Queue("voice", ("voice",))
QUEUES = {"chat": CHAT, "voice": VOICE}


def agent(
    aid: str,
    *,
    idle: int = 0,
    used: dict[str, int] | None = None,
    presence: str = "available",
    queues: tuple[str, ...] = ("chat", "voice"),
) -> domain.AgentView:
    used = used or {}
    return domain.AgentView(
        aid,
        presence,
        frozenset(queues),
        {"chat": 3, "voice": 1},
        used,
        exclusive=frozenset({"voice"}),
        total_used=sum(used.values()),
        exclusive_held=used.get("voice", 0) > 0,
        idle_since=T0 + timedelta(seconds=idle),
    )


def work(cid: str, channel: str = "chat", at: int = 0, passed_by: frozenset[str] = frozenset()) -> domain.WaitingWork:
    return domain.WaitingWork(cid, channel, channel, T0 + timedelta(seconds=at), passed_by=passed_by)


def test_longest_idle_agent_gets_the_work_and_the_reason_says_why() -> None:
    chosen, reason = domain.choose_agent(
        work("c1"), CHAT, [agent("a", idle=5), agent("b", idle=1), agent("c", presence="away")]
    )
    assert chosen and chosen.agent_id == "b"
    assert reason["method"] == "longest_idle" and reason["candidates"] == 2
    assert reason["passed_over"] == {"presence_away": 1}


def test_an_agent_that_was_offered_the_work_before_is_passed_over() -> None:
    chosen, reason = domain.choose_agent(work("c1", passed_by=frozenset({"b"})), CHAT, [agent("a", idle=5), agent("b")])
    assert chosen and chosen.agent_id == "a"
    assert reason["passed_over"] == {"offered_before": 1}


def test_voice_is_exclusive_both_ways() -> None:
    on_voice = agent("a", used={"voice": 1})
    assert on_voice.blocker("chat") == "exclusive_work_held"
    chatting = agent("b", used={"chat": 1})
    assert chatting.blocker("voice") == "exclusive_needs_idle_agent"
    assert agent("c").blocker("voice") is None


def test_plan_serves_oldest_first_and_spreads_by_idleness() -> None:
    waiting = [work(f"c{i}", at=i) for i in range(8)]
    now = T0 + timedelta(hours=1)
    choices = domain.plan(list(reversed(waiting)), QUEUES, [agent("a", idle=0), agent("b", idle=1)], now)
    assert [c.work.conversation_id for c in choices] == [f"c{i}" for i in range(6)]  # 2 agents x 3 chats
    assert Counter(c.agent_id for c in choices) == {"a": 3, "b": 3}
    assert [c.agent_id for c in choices[:2]] == ["a", "b"]


def test_route_to_queue_prefers_priority() -> None:
    queues = [domain.Queue("general", ("chat",)), domain.Queue("vip", ("chat",), priority=5)]
    assert domain.route_to_queue("chat", queues)[0].name == "vip"  # type: ignore[union-attr]
    assert domain.route_to_queue("fax", queues)[0] is None


def test_ordered_rules_then_default_queue() -> None:
    queues = [
        domain.Queue("general", ("chat",)),
        domain.Queue("billing-fr", ("chat",)),
        domain.Queue("gold", ("chat",)),
    ]
    rules = [
        domain.Rule("gold", "gold", {"attributes": {"tier": ["gold", "platinum"]}, "authenticated": True}),
        domain.Rule("billing fr", "billing-fr", {"language": ["fr"], "required_skills": ["billing"]}),
    ]
    gold = {"channel": "chat", "customer": {"authenticated": True}, "attributes": {"tier": "gold"}}
    q, why = domain.route_to_queue(gold, queues, rules, {"chat": "general"})
    assert (q.name, why) == ("gold", "rule gold")  # type: ignore[union-attr]
    anon_gold = {**gold, "customer": {"authenticated": False}}
    assert domain.route_to_queue(anon_gold, queues, rules, {"chat": "general"})[0].name == "general"  # type: ignore[union-attr]
    fr = {"channel": "chat", "language": "fr", "required_skills": {"billing": 2}}
    assert domain.route_to_queue(fr, queues, rules, {"chat": "general"})[1] == "rule billing fr"


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("longest_idle", "a"),  # idle the longest
        ("least_active", "c"),  # fewest items in progress
        ("highest_capacity", "c"),  # most free chat units
        ("round_robin", "b"),  # assigned the longest ago
    ],
)
def test_assignment_methods(method: str, expected: str) -> None:
    q = domain.Queue("chat", ("chat",), method=method)
    a = replace(agent("a", idle=0, used={"chat": 2}), last_assigned_at=T0 + timedelta(seconds=50))
    b = replace(agent("b", idle=30, used={"chat": 1}), last_assigned_at=T0 + timedelta(seconds=10))
    c = replace(agent("c", idle=60), last_assigned_at=T0 + timedelta(seconds=40))
    chosen, reason = domain.choose_agent(work("w"), q, [a, b, c])
    assert chosen and chosen.agent_id == expected and reason["method"] == method


def test_skills_exact_then_closest_after_the_wait() -> None:
    q = domain.Queue("chat", ("chat",), skill_matching="closest", closest_after_s=60)
    need = work("w", at=0)
    need = replace(need, required_skills={"billing": 3, "french": 2})
    novice = replace(agent("n"), skills={"billing": 1, "french": 2})
    good = replace(agent("g"), skills={"billing": 2, "french": 2})
    chosen, reason = domain.choose_agent(need, q, [novice, good], now=T0 + timedelta(seconds=10))
    assert chosen is None and reason["passed_over"] == {"skills_mismatch": 2}
    chosen, reason = domain.choose_agent(need, q, [novice, good], now=T0 + timedelta(seconds=61))
    assert chosen and chosen.agent_id == "g" and reason["matching"] == "closest"
    expert = replace(agent("e"), skills={"billing": 5, "french": 3})
    assert domain.choose_agent(need, q, [novice, expert], now=T0)[0].agent_id == "e"  # type: ignore[union-attr]


def test_operating_hours_and_overflow_on_arrival() -> None:
    hours = {"timezone": "Europe/Paris", "days": {"mon": ["09:00-17:00"]}}
    q = domain.Queue("chat", ("chat",), operating_hours=hours, overflow={"max_waiting": 5, "to_queue": "night"})
    monday_10_paris = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    monday_18_paris = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)
    assert domain.is_open(q, monday_10_paris) and not domain.is_open(q, monday_18_paris)
    assert domain.overflow_on_arrival(q, 3, None, monday_10_paris) is None
    assert domain.overflow_on_arrival(q, 6, None, monday_10_paris) == "6 waiting, over the limit of 5"
    assert domain.overflow_on_arrival(q, 1, None, monday_18_paris) == "outside operating hours"
    slow = domain.Queue("chat", ("chat",), overflow={"max_estimated_wait_s": 120})
    assert "estimated wait 300s" in (domain.overflow_on_arrival(slow, 1, 300.0, T0) or "")


def test_custom_prioritisation_then_fifo() -> None:
    q = domain.Queue(
        "chat",
        ("chat",),
        method="priority_fifo",
        prioritisation=(
            {"when": {"attributes": {"tier": "gold"}}, "boost": 10},
            {"when": {"waited_s_over": 300}, "boost": 5},
        ),
    )
    queues = {"chat": q}
    now = T0 + timedelta(seconds=400)
    old = work("old", at=0)  # waited 400 s: +5
    gold = replace(work("gold", at=350), attributes={"tier": "gold"})  # +10
    urgent = replace(work("urgent", at=390), priority=20)
    plain = work("plain", at=100)  # waited 300 s: not over
    order = sorted([plain, old, gold, urgent], key=lambda w: domain.waiting_order(w, queues, now))
    assert [w.conversation_id for w in order] == ["urgent", "gold", "old", "plain"]


def test_erlang_c() -> None:
    assert domain.erlang_c(1, 0.5) == pytest.approx(0.5)
    assert domain.erlang_c(10, 8) == pytest.approx(0.409, abs=0.001)
    assert domain.erlang_c(3, 3.5) == 1.0
    # thousands of slots lightly loaded (a large centre): the terms underflow early, the answer is 0
    assert domain.erlang_c(3000, 20.0) == 0.0
    assert domain.erlang_c(300, 250.0) < 0.01 and domain.erlang_c(300, 290.0) > 0.1
    # a lightly loaded queue: the next item hardly waits; a busy one waits longer
    assert domain.estimated_wait_s(1, 10, 600.0, 10, arrivals_per_s=0.01) < domain.estimated_wait_s(
        1, 10, 600.0, 10, arrivals_per_s=0.15
    )  # type: ignore[operator]


def test_estimated_wait_uses_observed_handle_time_and_staffing() -> None:
    assert domain.estimated_wait_s(1, 10, 600.0, 4) == 0.0
    assert domain.estimated_wait_s(5, 10, 600.0, 4) == 60.0
    assert domain.estimated_wait_s(5, 0, 0.0, 4) is None


agents_st = st.lists(
    st.builds(
        lambda i, chat, voice, idle, presence: agent(
            f"a{i}", idle=idle, used={"chat": chat} if not voice else {"voice": 1}, presence=presence
        ),
        st.integers(0, 10_000),
        st.integers(0, 3),
        st.booleans(),
        st.integers(0, 100),
        st.sampled_from(["available", "busy", "away", "offline"]),
    ),
    max_size=12,
    unique_by=lambda a: a.agent_id,
)
work_st = st.lists(
    st.builds(
        lambda i, ch, at: work(f"c{i}", ch, at),
        st.integers(0, 10_000),
        st.sampled_from(["chat", "voice"]),
        st.integers(0, 1000),
    ),
    max_size=40,
    unique_by=lambda w: w.conversation_id,
)


@settings(max_examples=300, deadline=None)
@given(agents_st, work_st)
def test_plan_never_exceeds_capacity_nor_breaks_exclusivity(
    agents: list[domain.AgentView], waiting: list[domain.WaitingWork]
) -> None:
    choices = domain.plan(waiting, QUEUES, agents, T0)
    by_agent = {a.agent_id: a for a in agents}
    taken: dict[str, Counter[str]] = {}
    for ch in choices:
        taken.setdefault(ch.agent_id, Counter())[ch.work.channel] += 1
    for aid, counts in taken.items():
        a = by_agent[aid]
        assert a.presence in ("available", "busy")
        for channel, n in counts.items():
            assert a.used.get(channel, 0) + n <= a.limits[channel]
        if counts["voice"]:
            assert a.total_used == 0 and sum(counts.values()) == 1  # voice alone, on an idle agent
    assert len({c.work.conversation_id for c in choices}) == len(choices)


@settings(max_examples=200, deadline=None)
@given(agents_st, work_st)
def test_plan_is_work_conserving(agents: list[domain.AgentView], waiting: list[domain.WaitingWork]) -> None:
    """After planning, no unplanned work could still go to an agent with free, allowed capacity."""
    choices = domain.plan(waiting, QUEUES, agents, T0)
    pool = {a.agent_id: a for a in agents}
    for ch in sorted(choices, key=lambda c: (c.work.enqueued_at, c.work.conversation_id)):
        pool[ch.agent_id] = pool[ch.agent_id].taking(ch.work.channel, T0)
    planned = {c.work.conversation_id for c in choices}
    for w in waiting:
        if w.conversation_id in planned:
            continue
        chosen, _ = domain.choose_agent(w, QUEUES[w.queue], pool.values())
        assert chosen is None


def test_preferred_agent_first_then_anyone_after_the_wait() -> None:
    q = domain.Queue("chat", ("chat",), preferred_wait_s=30)
    w = replace(work("w", at=0), preferred_agent="b")
    agents = [agent("a", idle=0), agent("b", idle=50)]
    soon = domain.plan([w], {"chat": q}, agents, T0 + timedelta(seconds=10))
    assert [(c.agent_id, c.reason["method"]) for c in soon] == [("b", "preferred_agent")]
    busy_b = [agent("a", idle=0), agent("b", idle=50, presence="away")]
    assert domain.plan([w], {"chat": q}, busy_b, T0 + timedelta(seconds=10)) == []  # waits for b
    late = domain.plan([w], {"chat": q}, busy_b, T0 + timedelta(seconds=31))
    assert [c.agent_id for c in late] == ["a"]  # then the queue's method decides
