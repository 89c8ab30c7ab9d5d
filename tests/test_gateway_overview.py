"""The supervisor overview's composition and flags (pure: no service, no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime

from sessions.supervisor import Limits, compose, flags_of

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def work(**kw: object) -> dict[str, object]:
    item: dict[str, object] = {
        "conversation_id": "c-1",
        "channel": "chat",
        "queue": "chat",
        "state": "waiting",
        "agent_id": None,
        "customer_name": "Ada",
        "waited_s": 10.0,
        "handle_s": None,
        "overflowed": False,
        "transfers": 0,
    }
    item.update(kw)
    return item


def test_waiting_is_too_long_past_twice_the_threshold_or_two_minutes() -> None:
    assert flags_of(work(waited_s=41), threshold_s=20, signals=[]) == ["waited_too_long"]
    assert flags_of(work(waited_s=39), threshold_s=20, signals=[]) == []
    assert flags_of(work(waited_s=121), threshold_s=None, signals=[]) == ["waited_too_long"]
    assert flags_of(work(waited_s=121, state="offered"), threshold_s=600, signals=[]) == ["waited_too_long"]
    # once assigned, the wait is history
    assert flags_of(work(waited_s=500, state="assigned", handle_s=10), threshold_s=20, signals=[]) == []


def test_handling_transfers_overflow_and_escalations_are_flagged_in_order() -> None:
    item = work(state="assigned", agent_id="agent-1", handle_s=901, overflowed=True, transfers=2)
    assert flags_of(item, 20, ["upset", "asks_for_manager"]) == [
        "handled_too_long",
        "overflowed",
        "transferred_repeatedly",
        "asks_for_manager",
        "upset",
    ]
    assert flags_of(work(transfers=1), 20, []) == []
    assert flags_of(work(state="assigned", handle_s=100), 20, [], Limits(handle_s=60)) == ["handled_too_long"]


def test_agents_join_routing_and_presence_and_count_open_sessions() -> None:
    queues = [{"name": "chat", "service_level_threshold_s": 20, "waiting": 1}]
    routing_agents = [
        {"agent_id": "agent-1", "presence": "busy", "queues": ["chat"], "capacity": {"chat": {"used": 1, "limit": 3}}}
    ]
    presence = [
        {"agent_id": "agent-1", "status": "busy", "base": "busy", "since": "2026-11-21T11:59:00Z", "team": "t1"},
        {"agent_id": "agent-9", "status": "lunch", "base": "away", "since": "2026-11-21T11:00:00Z", "team": None},
    ]
    body = compose(
        queues,
        routing_agents,
        [work(waited_s=50), work(conversation_id="c-2", state="assigned", agent_id="agent-1", handle_s=5)],
        presence,
        {"agent-1": 1},
        {"c-2": ["asks_for_manager"]},
        NOW,
    )
    assert body["server_time"] == NOW.isoformat() and body["queues"] == queues
    assert body["agents"] == [
        {
            "agent_id": "agent-1",
            "presence": {"status": "busy", "base": "busy", "since": "2026-11-21T11:59:00Z"},
            "load": {"chat": {"used": 1, "limit": 3}},
            "queues": ["chat"],
            "team": "t1",
            "sessions": 1,
        },
        {
            "agent_id": "agent-9",
            "presence": {"status": "lunch", "base": "away", "since": "2026-11-21T11:00:00Z"},
            "load": {},
            "queues": [],
            "team": None,
            "sessions": 0,
        },
    ]
    flags = {conv["conversation_id"]: conv["flags"] for conv in body["conversations"]}
    assert flags == {"c-1": ["waited_too_long"], "c-2": ["asks_for_manager"]}
    assert body["conversations"][0]["customer"] == "Ada"
