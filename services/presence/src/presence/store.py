"""presence's state: the `PresenceStore` interface, on PostgreSQL (named queries in sql/) and in
memory for handler tests. Both return domain objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from presence import domain
from shared.contracts import BASE_PRESENCES
from shared.db import Conn, Queries, columns

Q = Queries("presence")


@dataclasses.dataclass(frozen=True)
class AgentPresence:
    """One agent's presence for the supervisor view: `source` is that of the latest change."""

    agent_id: str
    status: str
    base: str
    since: datetime
    source: str | None
    closed_channels: tuple[str, ...]
    team: str | None


class PresenceStore(Protocol):
    async def lock_agent(self, agent_id: str) -> domain.AgentState:
        """The agent's state, locked for this transaction (a first sight creates it offline)."""
        ...

    async def lock_agents(
        self, agent_ids: Sequence[str], loads: dict[str, domain.Load]
    ) -> dict[str, tuple[domain.AgentState, domain.Rules | None]]:
        """Keep routing's capacity for the agents in `loads`; every agent's state locked as
        `lock_agent` gives it (in agent order), with its profile's automatic rules (None: the defaults)."""
        ...

    async def set_status(
        self,
        agent_id: str,
        status: str,
        manual: bool,
        *,
        previous: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> domain.Status:
        """Set the status, resolved to the configured status of that name (else a base presence, its
        own base); with a `source`, record the change in the history. Returns the status resolved."""
        ...

    async def set_statuses(self, changes: Sequence[domain.StatusChange]) -> list[domain.Status]:
        """`set_status` for each change, in order (an agent ends with its last); the statuses resolved."""
        ...

    async def remember_before(
        self, agent_id: str, status: str | None, manual: bool, disconnected_at: datetime | None
    ) -> None:
        """What to restore after idleness or a disconnect (None forgets it)."""
        ...

    async def set_idle(self, agent_id: str, idle: bool) -> None: ...

    async def set_closed_channels(self, agent_id: str, channels: Sequence[str]) -> None: ...

    async def list_history(self, agent_id: str, limit: int) -> list[domain.HistoryEntry]:
        """Newest first."""
        ...

    async def find_load(self, agent_id: str) -> domain.Load | None: ...

    async def device_seen(self, agent_id: str, device_id: str, idle_s: float | None, at: datetime) -> None:
        """The device is signed in and alive at `at` (it is no longer lost)."""
        ...

    async def sign_out_device(self, agent_id: str, device_id: str) -> None: ...

    async def list_live_devices(self, agent_id: str) -> list[domain.Device]:
        """Signed in and not lost, by device id."""
        ...

    async def list_silent_devices(self, timeout_s: float, grace_from: datetime, now: datetime) -> list[domain.Device]:
        """Live devices not seen for `timeout_s` before `now` (counting from `grace_from` at the
        earliest), by agent and device; rows another transaction holds are skipped."""
        ...

    async def mark_device_lost(self, agent_id: str, device_id: str) -> None: ...

    async def list_statuses(self) -> list[domain.Status]:
        """The configured (custom) statuses, by name."""
        ...

    async def upsert_status(self, status: domain.Status) -> None: ...

    async def find_rules(self, profile: str) -> domain.Rules | None: ...

    async def upsert_profile(self, name: str, rules: domain.Rules) -> None: ...

    async def assign_agent(self, agent_id: str, profile: str, team: str | None) -> None: ...

    async def find_presence(self, agent_id: str) -> domain.PresenceRecord | None: ...

    async def list_team(self, team: str) -> list[domain.TeamMember]:
        """By agent id."""
        ...

    async def list_agents(self) -> list[AgentPresence]:
        """Every agent presence knows, by agent id."""
        ...


# --- PostgreSQL --------------------------------------------------------------------------------


def _device(r: asyncpg.Record) -> domain.Device:
    return domain.Device(r["agent_id"], r["device_id"], r["signed_in"], r["last_seen"], r["idle_s"], r["lost"])


def _state(r: asyncpg.Record) -> domain.AgentState:
    return domain.AgentState(
        r["status"],
        r["base"],
        r["manual"],
        r["status_before"],
        r["manual_before"],
        r["disconnected_at"],
        r["idle"],
        tuple(r["closed_channels"]),
        r["profile"],
    )


class PgPresenceStore:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def lock_agent(self, agent_id: str) -> domain.AgentState:
        r = await self.conn.fetchrow(Q.lock_agent, agent_id)
        if r is None:  # created by another transaction since this statement's snapshot: now it is there
            r = await self.conn.fetchrow(Q.lock_agent, agent_id)
        assert r is not None
        return _state(r)

    async def lock_agents(
        self, agent_ids: Sequence[str], loads: dict[str, domain.Load]
    ) -> dict[str, tuple[domain.AgentState, domain.Rules | None]]:
        ids = sorted(set(agent_ids))
        loaded = sorted(loads)
        args = (
            ids,
            loaded,
            [loads[a].total_used for a in loaded],
            [loads[a].full for a in loaded],
            [loads[a].exclusive_held for a in loaded],
        )
        rows = await self.conn.fetch(Q.lock_agents, *args)
        if len(rows) < len(ids):  # as in lock_agent: the loads are written, every row now visible
            rows = await self.conn.fetch(Q.lock_agents, *args)
        return {
            r["agent_id"]: (_state(r), None if r["rules"] is None else domain.Rules.from_config(r["rules"]))
            for r in rows
        }

    async def set_status(
        self,
        agent_id: str,
        status: str,
        manual: bool,
        *,
        previous: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> domain.Status:
        r = await self.conn.fetchrow(Q.set_status, agent_id, status, manual, source, previous, reason)
        assert r is not None
        return domain.Status(status, r["base"], r["colour"])

    async def set_statuses(self, changes: Sequence[domain.StatusChange]) -> list[domain.Status]:
        fields = ("agent_id", "status", "manual", "previous", "source", "reason")
        rows = await self.conn.fetch(Q.set_statuses, *columns(changes, *fields))
        return [domain.Status(x.status, r["base"], r["colour"]) for x, r in zip(changes, rows, strict=True)]

    async def remember_before(
        self, agent_id: str, status: str | None, manual: bool, disconnected_at: datetime | None
    ) -> None:
        await self.conn.execute(Q.remember_before, agent_id, status, manual, disconnected_at)

    async def set_idle(self, agent_id: str, idle: bool) -> None:
        await self.conn.execute(Q.set_idle, agent_id, idle)

    async def set_closed_channels(self, agent_id: str, channels: Sequence[str]) -> None:
        await self.conn.execute(Q.set_closed_channels, agent_id, list(channels))

    async def list_history(self, agent_id: str, limit: int) -> list[domain.HistoryEntry]:
        rows = await self.conn.fetch(Q.list_history, agent_id, limit)
        return [domain.HistoryEntry(r["status"], r["previous"], r["source"], r["reason"], r["at"]) for r in rows]

    async def find_load(self, agent_id: str) -> domain.Load | None:
        r = await self.conn.fetchrow(Q.find_load, agent_id)
        return domain.Load(r["total_used"], r["is_full"], r["exclusive_held"]) if r else None

    async def device_seen(self, agent_id: str, device_id: str, idle_s: float | None, at: datetime) -> None:
        await self.conn.execute(Q.device_seen, agent_id, device_id, idle_s, at)

    async def sign_out_device(self, agent_id: str, device_id: str) -> None:
        await self.conn.execute(Q.sign_out_device, agent_id, device_id)

    async def list_live_devices(self, agent_id: str) -> list[domain.Device]:
        return [_device(r) for r in await self.conn.fetch(Q.list_live_devices, agent_id)]

    async def list_silent_devices(self, timeout_s: float, grace_from: datetime, now: datetime) -> list[domain.Device]:
        return [_device(r) for r in await self.conn.fetch(Q.list_silent_devices, timeout_s, grace_from, now)]

    async def mark_device_lost(self, agent_id: str, device_id: str) -> None:
        await self.conn.execute(Q.mark_device_lost, agent_id, device_id)

    async def list_statuses(self) -> list[domain.Status]:
        rows = await self.conn.fetch(Q.list_statuses)
        return [domain.Status(r["name"], r["base"], r["colour"], r["custom"]) for r in rows]

    async def upsert_status(self, status: domain.Status) -> None:
        await self.conn.execute(Q.upsert_status, status.name, status.base, status.colour, status.custom)

    async def find_rules(self, profile: str) -> domain.Rules | None:
        rules = await self.conn.fetchval(Q.find_profile_rules, profile)
        return None if rules is None else domain.Rules.from_config(rules)

    async def upsert_profile(self, name: str, rules: domain.Rules) -> None:
        await self.conn.execute(Q.upsert_profile, name, dataclasses.asdict(rules))

    async def assign_agent(self, agent_id: str, profile: str, team: str | None) -> None:
        await self.conn.execute(Q.assign_agent, agent_id, profile, team)

    async def find_presence(self, agent_id: str) -> domain.PresenceRecord | None:
        r = await self.conn.fetchrow(Q.find_presence, agent_id)
        if r is None:
            return None
        devices = tuple(_device(d) for d in await self.conn.fetch(Q.list_devices, agent_id))
        return domain.PresenceRecord(
            r["agent_id"],
            r["status"],
            r["base"],
            r["manual"],
            r["team"],
            r["profile"],
            tuple(r["closed_channels"]),
            r["idle"],
            r["updated_at"],
            devices,
        )

    async def list_team(self, team: str) -> list[domain.TeamMember]:
        return [
            domain.TeamMember(
                r["agent_id"], r["status"], r["base"], r["manual"], tuple(r["closed_channels"]), r["updated_at"]
            )
            for r in await self.conn.fetch(Q.list_team, team)
        ]

    async def list_agents(self) -> list[AgentPresence]:
        return [
            AgentPresence(
                r["agent_id"],
                r["status"],
                r["base"],
                r["updated_at"],
                r["source"],
                tuple(r["closed_channels"]),
                r["team"],
            )
            for r in await self.conn.fetch(Q.list_agents)
        ]


# --- in memory ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Agent:
    state: domain.AgentState
    team: str | None
    updated_at: datetime


class FakePresenceStore:
    """The same semantics in plain instance attributes (MemoryDatabase snapshots them)."""

    def __init__(self) -> None:
        self.agents: dict[str, _Agent] = {}
        self.history: list[tuple[str, domain.HistoryEntry]] = []
        self.loads: dict[str, domain.Load] = {}
        self.devices: dict[tuple[str, str], domain.Device] = {}
        self.statuses: dict[str, domain.Status] = {}
        self.profiles: dict[str, domain.Rules] = {}

    def _agent(self, agent_id: str) -> _Agent:
        if agent_id not in self.agents:
            self.agents[agent_id] = _Agent(domain.AgentState(), None, _now())
        return self.agents[agent_id]

    def _update(self, agent_id: str, **changes: Any) -> None:
        if agent_id in self.agents:  # an UPDATE of a missing row changes nothing
            row = self.agents[agent_id]
            row.state = dataclasses.replace(row.state, **changes)

    async def lock_agent(self, agent_id: str) -> domain.AgentState:
        return self._agent(agent_id).state

    async def lock_agents(
        self, agent_ids: Sequence[str], loads: dict[str, domain.Load]
    ) -> dict[str, tuple[domain.AgentState, domain.Rules | None]]:
        self.loads.update(loads)
        out = {}
        for agent_id in sorted(set(agent_ids)):
            state = self._agent(agent_id).state
            out[agent_id] = (state, self.profiles.get(state.profile))
        return out

    async def set_status(
        self,
        agent_id: str,
        status: str,
        manual: bool,
        *,
        previous: str | None = None,
        source: str | None = None,
        reason: str | None = None,
    ) -> domain.Status:
        known = self.statuses.get(status)
        resolved = domain.Status(status, known.base if known else status, known.colour if known else None)
        self._update(agent_id, status=status, base=resolved.base, manual=manual)
        if agent_id in self.agents:
            self.agents[agent_id].updated_at = _now()
        if source is not None:
            self.history.append((agent_id, domain.HistoryEntry(status, previous, source, reason, _now())))
        return resolved

    async def set_statuses(self, changes: Sequence[domain.StatusChange]) -> list[domain.Status]:
        return [
            await self.set_status(x.agent_id, x.status, x.manual, previous=x.previous, source=x.source, reason=x.reason)
            for x in changes
        ]

    async def remember_before(
        self, agent_id: str, status: str | None, manual: bool, disconnected_at: datetime | None
    ) -> None:
        self._update(agent_id, status_before=status, manual_before=manual, disconnected_at=disconnected_at)

    async def set_idle(self, agent_id: str, idle: bool) -> None:
        self._update(agent_id, idle=idle)

    async def set_closed_channels(self, agent_id: str, channels: Sequence[str]) -> None:
        self._update(agent_id, closed_channels=tuple(channels))

    async def list_history(self, agent_id: str, limit: int) -> list[domain.HistoryEntry]:
        return [entry for agent, entry in reversed(self.history) if agent == agent_id][:limit]

    async def find_load(self, agent_id: str) -> domain.Load | None:
        return self.loads.get(agent_id)

    async def device_seen(self, agent_id: str, device_id: str, idle_s: float | None, at: datetime) -> None:
        self.devices[agent_id, device_id] = domain.Device(agent_id, device_id, True, at, idle_s, False)

    async def sign_out_device(self, agent_id: str, device_id: str) -> None:
        if (agent_id, device_id) in self.devices:
            self.devices[agent_id, device_id] = dataclasses.replace(self.devices[agent_id, device_id], signed_in=False)

    async def list_live_devices(self, agent_id: str) -> list[domain.Device]:
        return sorted(
            (d for d in self.devices.values() if d.agent_id == agent_id and d.signed_in and not d.lost),
            key=lambda d: d.device_id,
        )

    async def list_silent_devices(self, timeout_s: float, grace_from: datetime, now: datetime) -> list[domain.Device]:
        cutoff = now - timedelta(seconds=timeout_s)
        return sorted(
            (d for d in self.devices.values() if d.signed_in and not d.lost and max(d.last_seen, grace_from) < cutoff),
            key=lambda d: (d.agent_id, d.device_id),
        )

    async def mark_device_lost(self, agent_id: str, device_id: str) -> None:
        if (agent_id, device_id) in self.devices:
            self.devices[agent_id, device_id] = dataclasses.replace(self.devices[agent_id, device_id], lost=True)

    async def list_statuses(self) -> list[domain.Status]:
        return [self.statuses[name] for name in sorted(self.statuses)]

    async def upsert_status(self, status: domain.Status) -> None:
        if status.base not in BASE_PRESENCES:  # the table's CHECK constraint
            raise ValueError(f"status {status.name!r}: base {status.base!r} is not a base presence")
        self.statuses[status.name] = status

    async def find_rules(self, profile: str) -> domain.Rules | None:
        return self.profiles.get(profile)

    async def upsert_profile(self, name: str, rules: domain.Rules) -> None:
        self.profiles[name] = rules

    async def assign_agent(self, agent_id: str, profile: str, team: str | None) -> None:
        row = self._agent(agent_id)
        row.state = dataclasses.replace(row.state, profile=profile)
        row.team = team

    async def find_presence(self, agent_id: str) -> domain.PresenceRecord | None:
        row = self.agents.get(agent_id)
        if row is None:
            return None
        s = row.state
        devices = tuple(sorted((d for d in self.devices.values() if d.agent_id == agent_id), key=lambda d: d.device_id))
        return domain.PresenceRecord(
            agent_id,
            s.status,
            s.base,
            s.manual,
            row.team,
            s.profile,
            s.closed_channels,
            s.idle,
            row.updated_at,
            devices,
        )

    async def list_team(self, team: str) -> list[domain.TeamMember]:
        return [
            domain.TeamMember(a, r.state.status, r.state.base, r.state.manual, r.state.closed_channels, r.updated_at)
            for a, r in sorted(self.agents.items())
            if r.team == team
        ]

    async def list_agents(self) -> list[AgentPresence]:
        latest = {agent: entry.source for agent, entry in self.history}
        return [
            AgentPresence(a, r.state.status, r.state.base, r.updated_at, latest.get(a), r.state.closed_channels, r.team)
            for a, r in sorted(self.agents.items())
        ]


def _now() -> datetime:
    return datetime.now(UTC)
