from __future__ import annotations

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
    open_session = {"status": "open"}
    assert domain.close_refusal(open_session, "home", True) == "the Home session cannot be closed"
    assert "needs confirmation" in (domain.close_refusal(open_session, "conv-1", False) or "")
    assert "no session" in (domain.close_refusal(None, "conv-1", True) or "")
    assert "already closed" in (domain.close_refusal({"status": "closed"}, "conv-1", True) or "")
    assert domain.close_refusal(open_session, "conv-1", True) is None
