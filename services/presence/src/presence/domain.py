"""Presence rules as plain functions."""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import BASE_PRESENCES

AUTOMATIC = ("available", "busy", "busy_dnd")
SETTABLE = tuple(p for p in BASE_PRESENCES if p != "inactive")


@dataclass(frozen=True)
class Load:
    total_used: int = 0
    full: bool = False
    exclusive_held: bool = False


def automatic_status(load: Load) -> str:
    """No work -> available; some -> busy; full or exclusive work held -> busy_dnd."""
    if load.total_used <= 0:
        return "available"
    if load.full or load.exclusive_held:
        return "busy_dnd"
    return "busy"


def automation_applies(status: str, manual: bool) -> bool:
    """A status chosen by hand is never overwritten by automation; automatic statuses are."""
    return not manual and status in (*AUTOMATIC, "inactive")


def set_refusal(status: str) -> str | None:
    if status == "inactive":
        return "inactive is set by the system only"
    if status not in SETTABLE:
        return f"unknown presence {status!r}; expected one of: {', '.join(SETTABLE)}"
    return None
