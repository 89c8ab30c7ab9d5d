from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sessions import domain


@pytest.mark.parametrize(
    ("conversation", "visitor", "title"),
    [
        ({"customer": {"name": "Grace Hopper"}}, None, "Grace Hopper"),
        (
            {"customer": {"name": " "}, "record": {"type": "case", "id": "1", "title": "Broken modem"}},
            None,
            "Broken modem",
        ),
        ({"customer": {"authenticated": False}}, 4, "Visitor 4"),
        ({}, 1, "Visitor 1"),
    ],
)
def test_title(conversation: dict, visitor: int | None, title: str) -> None:
    assert domain.title_for(conversation, visitor) == title


def test_badge_caps_at_nine() -> None:
    assert [domain.badge(n) for n in (0, 1, 9, 10, 42)] == ["", "1", "9", "9+", "9+"]


def test_close_refusals() -> None:
    open_session = domain.Session("agent-1", "conv-1", "conversation", "Ada", "Ad")
    assert domain.close_refusal(open_session, "home", True) == "the Home session cannot be closed"
    assert "needs confirmation" in (domain.close_refusal(open_session, "conv-1", False) or "")
    assert "no session" in (domain.close_refusal(None, "conv-1", True) or "")
    assert "already closed" in (domain.close_refusal(replace(open_session, status="closed"), "conv-1", True) or "")
    assert domain.close_refusal(open_session, "conv-1", True) is None


T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "record", "subject", "title"),
    [
        ("Grace", "Case 9", "Invoice", "Grace"),
        (" ", "Case 9", "Invoice", "Case 9"),
        (None, None, " Invoice ", "Invoice"),
        (None, "", None, None),
    ],
)
def test_arrival_title(name: str | None, record: str | None, subject: str | None, title: str | None) -> None:
    assert domain.arrival_title(name, record, subject) == title


def test_a_transcript_page_is_the_newest_messages_oldest_first() -> None:
    messages = [domain.Message("c-1", f"m-{i}", "customer", str(i), T0, ordinal=i) for i in range(1, 5)]
    page, more = domain.transcript_page(messages, 3)
    assert ([m["message_id"] for m in page], more) == (["m-2", "m-3", "m-4"], True)
    page, more = domain.transcript_page(messages[:3], 3)
    assert ([m["message_id"] for m in page], more) == (["m-1", "m-2", "m-3"], False)
    assert domain.transcript_page([], 3) == ([], False)


def test_the_dashboard_orders_waiting_work_by_priority_then_wait() -> None:
    waiting = [
        domain.WaitingWork("c-1", "chat", "general", "waiting", T0, "Ada"),
        domain.WaitingWork("c-2", "chat", "general", "offered", T0 + timedelta(seconds=30), None, 5),
        domain.WaitingWork("c-3", "chat", "general", "waiting", T0 - timedelta(seconds=30)),
    ]
    mine = domain.Session("a-1", "conv-c-9", "conversation", "Grace", "Gr", "c-9", "chat", opened_at=T0)
    done = replace(mine, session_id="conv-c-8", conversation_id="c-8", status="closed", closed_at=T0)
    board = domain.dashboard_view(
        [domain.Session("a-1", "home", "home", "Home", "Ho"), mine, done], {"c-9": "vip"}, waiting, T0
    )
    assert [(w["conversation_id"], w["title"], w["waiting_s"]) for w in board["queue_work"]] == [
        ("c-2", "Visitor", 0.0),
        ("c-3", "Visitor", 30.0),
        ("c-1", "Ada", 0.0),
    ]
    assert [(w["conversation_id"], w["queue"]) for w in board["my_work"]] == [("c-9", "vip")]
    assert [w["conversation_id"] for w in board["closed"]] == ["c-8"]


def test_channels_seen_follow_the_standard_ones() -> None:
    voice = domain.Session("a-1", "conv-1", "conversation", "A", "A", "c-1", "voice")
    fax = replace(voice, channel="fax")
    assert domain.channels_seen([voice, fax, fax], []) == ["chat", "voice", "email", "sms", "case", "fax"]


def test_the_pane_always_shows_an_escalation() -> None:
    pane = {"summary": {"summary": "x"}, "replies": {}, "escalation": {"signals": ["upset"]}}
    view = domain.pane_view(pane, ["summary"], "conversation")
    assert view == {
        "tools": ["summary"],
        "focused_tool": "summary",
        "summary": {"summary": "x"},
        "escalation": {"signals": ["upset"]},
    }


def test_supervisor_details_read_as_a_sentence() -> None:
    assert domain.supervisor_detail("sup-1", "force_transfer", "Ada", to_queue="billing", reason="too long") == (
        "sup-1 transferred Ada to queue billing (too long)"
    )
    assert domain.supervisor_detail("sup-1", "set_presence", None, status="away") == "sup-1 set your status to away"
    assert domain.supervisor_detail("sup-1", "observe", None) == "sup-1 is observing the conversation"


def test_a_long_whisper_is_quoted_in_short() -> None:
    detail = domain.supervisor_detail("sup-1", "whisper", "Ada", text="x" * 8000)
    assert len(detail) < 300 and detail.endswith("x…")
