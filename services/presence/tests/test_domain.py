from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from presence import domain

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_automatic_status_from_load_and_profile() -> None:
    assert domain.automatic_status(domain.Load(0)) == "available"
    assert domain.automatic_status(domain.Load(1)) == "busy"
    assert domain.automatic_status(domain.Load(3, full=True)) == "busy_dnd"
    assert domain.automatic_status(domain.Load(1, exclusive_held=True)) == "busy_dnd"
    lenient = domain.Rules(full="busy")
    assert domain.automatic_status(domain.Load(3, full=True), lenient) == "busy"


def test_manual_choices_are_not_overwritten() -> None:
    assert not domain.automation_applies(domain.AgentState("away", "away", manual=True))
    assert domain.automation_applies(domain.AgentState("busy", "busy", manual=False))
    assert not domain.automation_applies(domain.AgentState("offline", "offline"))
    assert not domain.automation_applies(domain.AgentState("away", "away", idle=True))


def test_resolving_a_manual_choice() -> None:
    statuses = {**domain.base_statuses(), "lunch": domain.Status("lunch", "away", "#f5a623", custom=True)}
    assert domain.resolve_manual("inactive", statuses) == "inactive is set by the system only"
    assert "unknown presence 'napping'" in str(domain.resolve_manual("napping", statuses))
    lunch, manual = domain.resolve_manual("lunch", statuses)  # type: ignore[misc]
    assert lunch.base == "away" and manual
    available, manual = domain.resolve_manual("available", statuses)  # type: ignore[misc]
    assert available.name == "available" and not manual
    _, manual = domain.resolve_manual("busy_dnd", statuses)  # type: ignore[misc]
    assert manual


def test_restore_only_within_the_window() -> None:
    dropped = domain.AgentState("offline", "offline", status_before="busy_dnd", manual_before=True, disconnected_at=NOW)
    assert domain.restore_after_reconnect(dropped, NOW + timedelta(seconds=149)) == ("busy_dnd", True)
    assert domain.restore_after_reconnect(dropped, NOW + timedelta(seconds=151)) is None
    assert domain.restore_after_reconnect(domain.AgentState(), NOW) is None


@pytest.mark.parametrize(
    ("idle", "after", "expected"),
    [
        ([600.0, 700.0], 300.0, True),
        ([600.0, 5.0], 300.0, False),  # input on one device is enough
        ([None], 300.0, False),
        ([600.0], None, False),  # idle detection off
        ([], 300.0, False),
    ],
)
def test_idle_needs_every_device_idle(idle: list[float | None], after: float | None, expected: bool) -> None:
    assert domain.all_idle(idle, after) is expected


def test_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown presence rule"):
        domain.Rules.from_config({"when_tired": "away"})


def test_a_new_load_asks_for_the_automatic_status_while_automation_applies() -> None:
    busy = domain.AgentState("available", "available")
    change = domain.after_load("a-1", busy, domain.Load(3, True, False), domain.Rules(), "capacity: 3 in use, full")
    assert change == domain.StatusChange("a-1", "busy_dnd", False, None, "automatic", "capacity: 3 in use, full")
    chosen = domain.AgentState("away", "away", manual=True)
    inactive = domain.AgentState("inactive", "inactive")
    for state in (chosen, inactive, domain.AgentState()):  # by hand, after a missed offer, offline
        assert domain.after_load("a-1", state, domain.Load(1), domain.Rules(), "") is None


def test_a_missed_or_rejected_offer_asks_for_the_profiles_status() -> None:
    state = domain.AgentState("available", "available")
    missed = domain.after_offer("a-1", state, domain.Rules(), "expired", "o-1")
    assert missed == domain.StatusChange("a-1", "inactive", False, None, "system", "missed offer o-1")
    assert domain.after_offer("a-1", state, domain.Rules(), "rejected", "o-1") is None
    lenient = domain.Rules(missed_offer=None, rejected_offer="busy_dnd")
    rejected = domain.after_offer("a-1", state, lenient, "rejected", "o-2")
    assert rejected == domain.StatusChange("a-1", "busy_dnd", False, None, "automatic", "rejected offer o-2")
    assert domain.after_offer("a-1", domain.AgentState(), domain.Rules(), "expired", "o-1") is None  # offline
