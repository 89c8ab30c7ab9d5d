"""Pure routing rules: unit and property-based tests (no IO)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

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
    assert domain.route_to_queue("chat", queues).name == "vip"  # type: ignore[union-attr]
    assert domain.route_to_queue("fax", queues) is None


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
