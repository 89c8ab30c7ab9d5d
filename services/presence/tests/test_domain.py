from __future__ import annotations

from presence import domain


def test_automatic_status_from_load() -> None:
    assert domain.automatic_status(domain.Load(0)) == "available"
    assert domain.automatic_status(domain.Load(1)) == "busy"
    assert domain.automatic_status(domain.Load(3, full=True)) == "busy_dnd"
    assert domain.automatic_status(domain.Load(1, exclusive_held=True)) == "busy_dnd"


def test_manual_choices_are_not_overwritten() -> None:
    assert not domain.automation_applies("away", manual=True)
    assert domain.automation_applies("busy", manual=False)
    assert domain.automation_applies("inactive", manual=False)


def test_inactive_is_for_the_system_only() -> None:
    assert domain.set_refusal("inactive") == "inactive is set by the system only"
    assert "unknown presence" in (domain.set_refusal("napping") or "")
    assert domain.set_refusal("away") is None
