"""The pure parts of following conversations."""

from __future__ import annotations

from assist.followup import rounds
from assist.store import Holding, Releasing


def test_rounds_name_each_conversation_once_and_keep_its_order() -> None:
    a1 = Holding("c-1", "a-1", "summary:new_agent:a-1")
    b1 = Holding("c-2", "a-2", "summary:new_agent:a-2")
    a2 = Releasing("c-1", "a-1", "case:closed:a-1", forget=True)
    a3 = Holding("c-1", "a-3", "summary:new_agent:a-3")
    b2 = Releasing("c-2", None, "case:escalated:")
    c1 = Releasing("c-3", "a-1", "case:closed:a-1")
    assert rounds([a1, b1, a2, a3, b2, c1]) == [[a1, b1, c1], [a2, b2], [a3]]
    assert rounds([]) == []
