"""Presence rules as plain functions over plain data: no IO."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.contracts import BASE_PRESENCES

# Chosen by hand, these stay until the agent changes them: automation never overwrites them.
MANUAL_BASES = ("away", "busy_dnd", "offline")
RESTORE_WITHIN_S = 150


@dataclass(frozen=True)
class Load:
    total_used: int = 0
    full: bool = False
    exclusive_held: bool = False


@dataclass(frozen=True)
class Rules:
    """Automatic rules of an agent experience profile; None switches a rule off."""

    no_work: str = "available"
    some_work: str = "busy"
    full: str = "busy_dnd"
    missed_offer: str | None = "inactive"
    rejected_offer: str | None = None
    idle_after_s: float | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, object]) -> Rules:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(
                f"unknown presence rule(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return cls(**cfg)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Status:
    name: str
    base: str
    colour: str | None = None
    custom: bool = False


@dataclass(frozen=True)
class AgentState:
    status: str = "offline"
    base: str = "offline"
    manual: bool = False
    status_before: str | None = None  # held before a disconnect or idle, to restore
    manual_before: bool = False
    disconnected_at: datetime | None = None
    idle: bool = False
    closed_channels: tuple[str, ...] = field(default_factory=tuple)
    profile: str = "default"  # the agent experience profile whose automatic rules apply


@dataclass(frozen=True)
class Device:
    """One of an agent's devices: live while signed in and beating."""

    agent_id: str
    device_id: str
    signed_in: bool
    last_seen: datetime
    idle_s: float | None = None
    lost: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    status: str
    previous: str | None
    source: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class PresenceRecord:
    """What presence knows of one agent, for the read side."""

    agent_id: str
    status: str
    base: str
    manual: bool
    team: str | None
    profile: str
    closed_channels: tuple[str, ...]
    idle: bool
    updated_at: datetime
    devices: tuple[Device, ...] = ()


@dataclass(frozen=True)
class TeamMember:
    agent_id: str
    status: str
    base: str
    manual: bool
    closed_channels: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True)
class StatusChange:
    """A change of an agent's status to record: with a `source`, it joins the history."""

    agent_id: str
    status: str
    manual: bool
    previous: str | None = None
    source: str | None = None
    reason: str | None = None


def base_statuses() -> dict[str, Status]:
    return {b: Status(b, b) for b in BASE_PRESENCES}


def automatic_status(load: Load, rules: Rules = Rules()) -> str:
    """No work -> available; some -> busy; full or exclusive work held -> busy_dnd (per profile)."""
    if load.total_used <= 0:
        return rules.no_work
    if load.full or load.exclusive_held:
        return rules.full
    return rules.some_work


def automation_applies(state: AgentState) -> bool:
    """Automation may change the status: not chosen by hand, not offline, not idle-away."""
    return not state.manual and state.status != "offline" and not state.idle


def after_load(agent_id: str, state: AgentState, load: Load, rules: Rules, reason: str) -> StatusChange | None:
    """The profile's automatic status for the agent's new load, if automation applies (None: no
    rule applies; the status may be the agent's already)."""
    if not automation_applies(state):
        return None
    if state.status == "inactive":
        return None  # set by the system after a missed offer: it stays until the agent comes back by hand
    return StatusChange(agent_id, automatic_status(load, rules), False, source="automatic", reason=reason)


def after_offer(agent_id: str, state: AgentState, rules: Rules, cause: str, offer_id: str) -> StatusChange | None:
    """A missed (expired) or rejected offer: the profile's status for it, if it has one and
    automation applies."""
    if not automation_applies(state):
        return None
    target = rules.missed_offer if cause == "expired" else rules.rejected_offer
    if target is None:
        return None
    source = "system" if target == "inactive" else "automatic"
    reason = f"{'missed' if cause == 'expired' else 'rejected'} offer {offer_id}"
    return StatusChange(agent_id, target, False, source=source, reason=reason)


def resolve_manual(name: str, statuses: dict[str, Status]) -> tuple[Status, bool] | str:
    """What an agent's presence.set means: (status, chosen-by-hand) or a refusal a person can read."""
    if name == "inactive":
        return "inactive is set by the system only"
    status = statuses.get(name)
    if status is None:
        return f"unknown presence {name!r}; expected one of: {', '.join(sorted(statuses))}"
    manual = status.custom or status.base in MANUAL_BASES
    return status, manual


def restore_after_reconnect(
    state: AgentState, now: datetime, within_s: float = RESTORE_WITHIN_S
) -> tuple[str, bool] | None:
    """Back within the window after a disconnect: the status held before, else None (start afresh)."""
    if state.disconnected_at is None or state.status_before is None:
        return None
    if now - state.disconnected_at > timedelta(seconds=within_s):
        return None
    return state.status_before, state.manual_before


def all_idle(idle_seconds: list[float | None], after_s: float | None) -> bool:
    """Idle detection: no input on any live device for `after_s` (off when None)."""
    if after_s is None or not idle_seconds:
        return False
    return all(s is not None and s >= after_s for s in idle_seconds)
