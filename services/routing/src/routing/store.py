"""routing's state: the `RoutingStore` interface, on PostgreSQL (`PgRoutingStore`, named queries in
sql/) and in memory (`FakeRoutingStore`, for handler tests). Both return domain objects.

PostgreSQL is the source of truth under concurrency: one conditional UPDATE decides each capacity
reservation, and replicas split waiting work and expired offers with SKIP LOCKED. The fake runs
one transaction at a time (MemoryDatabase), so it needs no locks, only the same conditions.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import orjson

from routing import domain
from shared.db import Conn, Queries, columns

Q = Queries("routing")
# The agents' statistics are gathered again after this many changes plus this share of the agents
# (autovacuum's own defaults, 50 and 10 %, checked every few seconds instead of every minute or more).
STALE_AFTER_CHANGES = 50
STALE_AFTER_SHARE = 0.1


@dataclass(frozen=True)
class Capacity:
    """An agent's capacity ledger right after a reservation or a release."""

    agent_id: str
    used: dict[str, int]
    limits: dict[str, int]
    total_used: int
    exclusive_held: bool


@dataclass(frozen=True)
class Reservation:
    """The units one agent takes in a drain pass, per channel, if it is in one of `presences`."""

    agent_id: str
    units: dict[str, int]
    presences: tuple[str, ...]


@dataclass(frozen=True)
class WorkItem:
    conversation_id: str
    channel: str
    queue: str
    status: str  # queued, offered, assigned, closed, ended
    agent_id: str | None = None
    offer_id: str | None = None
    arrival: dict[str, Any] = field(default_factory=dict)
    failed_offers: int = 0
    overflowed: bool = False
    assigned_at: datetime | None = None


@dataclass(frozen=True)
class NewWork:
    """A conversation to queue, as insert_work takes it."""

    conversation_id: str
    channel: str
    queue: str
    priority: int
    arrival: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class Offer:
    offer_id: str
    conversation_id: str
    agent_id: str
    channel: str
    queue: str
    expires_at: datetime


@dataclass(frozen=True)
class Accepted:
    """An offer accepted, and its work assigned (None when the work was no longer offered)."""

    offer: Offer
    work: WorkItem | None


@dataclass(frozen=True)
class Closed:
    """Work closed by its agent, and the agent's ledger after its unit was released (None when the
    agent held none of the channel)."""

    work: WorkItem
    capacity: Capacity | None
    handled_s: float | None = None  # how long the agent held it (None when never assigned)


@dataclass(frozen=True)
class PresenceUpdate:
    """A presence change as routing projects it."""

    agent_id: str
    presence: str
    at: datetime
    closed_channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class PresenceChange:
    """What routing held for an agent before a presence change it accepted."""

    previous: str
    previous_closed: frozenset[str]
    config_version: str  # read with the change (routing's configuration version, as find_config_version)


@dataclass(frozen=True)
class QueueFigures:
    """What a queue's wait estimate is computed from."""

    handled: int = 0
    handle_seconds: float = 0.0
    staffed_slots: int = 0
    arrivals_per_s: float = 0.0


@dataclass(frozen=True)
class PositionChange:
    conversation_id: str
    channel: str
    queue: str
    position: int


@dataclass(frozen=True)
class Decision:
    """One entry of a conversation's routing history (`explain`)."""

    conversation_id: str
    kind: str
    detail: dict[str, Any]
    at: datetime | None = None


@dataclass(frozen=True)
class QueueActivity:
    """A queue now and over a recent window (`since`): what the supervisor's queue figures use."""

    queue: str
    queued: int = 0  # waiting for an offer
    offered_now: int = 0  # offered to an agent, not yet accepted
    oldest_waiting_at: datetime | None = None  # arrival of the oldest queued or offered item
    offered: int = 0  # offers made since
    assigned: int = 0  # answered from the queue since (accepted, auto-accepted or picked)
    assigned_in_time: int = 0  # of those, waited at most the queue's service_level_s
    abandoned: int = 0  # ended (conversation.ended) while waiting or offered, since
    overflowed: int = 0  # overflowed out of (or kept in) this queue, since
    service_level_s: int = 20
    figures: QueueFigures = QueueFigures()


@dataclass(frozen=True)
class OpenWork:
    """Work waiting, offered or assigned, as the supervisor's work list shows it."""

    conversation_id: str
    channel: str
    queue: str
    status: str  # queued, offered, assigned
    agent_id: str | None
    arrival: dict[str, Any]
    priority: int
    enqueued_at: datetime
    assigned_at: datetime | None
    overflowed: bool
    transfers: int


@dataclass(frozen=True)
class AgentProfile:
    """A configured agent: what it serves and how much it can hold."""

    agent_id: str
    queues: list[str]
    auto_accept: list[str]
    limits: dict[str, int]
    exclusive: list[str]
    skills: dict[str, int]


@dataclass(frozen=True)
class Configuration:
    """Everything the configuration file sets, as stored."""

    channels: dict[str, bool]
    queues: list[domain.Queue]
    rules: list[domain.Rule]
    default_queues: dict[str, str]
    agents: list[AgentProfile]


class RoutingStore(Protocol):
    # configuration
    async def list_channels(self) -> dict[str, bool]: ...
    async def list_queues(self) -> dict[str, domain.Queue]: ...
    async def list_rules(self) -> list[domain.Rule]: ...
    async def list_default_queues(self) -> dict[str, str]: ...
    async def find_config_document(self) -> dict[str, Any] | None: ...
    async def find_config_version(self) -> str:
        """Changes with every configuration applied (a configuration read again when it moved)."""
        ...

    async def replace_configuration(self, cfg: Configuration, source: str, document: dict[str, Any]) -> None:
        """Make `cfg` the whole configuration; agents left out stay known but unconfigured."""
        ...

    # agents: presence projection and capacity
    async def upsert_presence(
        self, agent_id: str, presence: str, at: datetime, closed_channels: Sequence[str]
    ) -> PresenceChange | None:
        """None when the change is older than the one held."""
        ...

    async def upsert_presences(self, updates: Sequence[PresenceUpdate]) -> dict[str, PresenceChange]:
        """upsert_presence for agents with one update each; an agent left out: an older change."""
        ...

    async def find_agent(self, agent_id: str) -> domain.AgentView | None: ...
    async def list_candidate_agents(
        self, presences: Sequence[str], channels: Sequence[str], limit: int
    ) -> list[domain.AgentView]:
        """The `limit` longest-idle configured agents with a free unit in one of `channels`."""
        ...

    async def list_agents_by_id(self, agent_ids: Sequence[str]) -> list[domain.AgentView]:
        """Configured agents among `agent_ids`, by id."""
        ...

    async def list_agents(self) -> list[domain.AgentView]:
        """Every configured agent, by id."""
        ...

    async def lock_agents(self, agent_ids: Sequence[str], conversation_ids: Sequence[str] = ()) -> None:
        """Lock `agent_ids` and the agents offered or holding `conversation_ids`' work, in agent order,
        until the transaction ends."""
        ...

    async def reserve_capacity(self, agent_id: str, channel: str, presences: Sequence[str]) -> Capacity | None:
        """Take one unit of `channel` if the agent is in one of `presences` and has room for it."""
        ...

    async def reserve_units(self, reservations: Sequence[Reservation]) -> dict[str, Capacity]:
        """reserve_capacity for several agents in one step: each agent gets all its units or none, and
        one another transaction has locked gets none (it is not waited for). Returns the ledgers of the
        agents that got theirs."""
        ...

    async def release_capacity(self, agent_id: str, channel: str) -> Capacity | None: ...

    # work items
    async def insert_work(
        self, conversation_id: str, channel: str, queue: str, priority: int, arrival: dict[str, Any], at: datetime
    ) -> bool:
        """False when the conversation is already known."""
        ...

    async def insert_works(self, items: Sequence[NewWork]) -> set[str]:
        """insert_work for several conversations in one step: the ids of those that were new."""
        ...

    async def find_work(self, conversation_id: str) -> WorkItem | None: ...
    async def count_waiting(self, queue: str) -> int: ...
    async def count_waiting_by_channel(self, cap: int) -> dict[str, int]:
        """Waiting work per channel, each count at most `cap` (channels with none left out)."""
        ...

    async def list_waiting_work(self, limit: int) -> list[domain.WaitingWork]:
        """Oldest first; rows another replica is draining are skipped."""
        ...

    async def mark_offered(self, offers: Sequence[Offer]) -> None:
        """Record pending offers and mark their (waiting) work offered."""
        ...

    async def mark_assigned(
        self, conversation_id: str, agent_id: str, offer_id: str | None, from_statuses: Sequence[str]
    ) -> WorkItem | None: ...
    async def mark_assigned_many(self, assignments: Sequence[tuple[str, str]]) -> None:
        """(conversation, agent) pairs of waiting work assigned without an offer."""
        ...

    async def requeue_work(self, conversation_id: str, agent_id: str, offer_id: str) -> WorkItem | None: ...
    async def move_work(self, conversation_id: str, queue: str) -> None: ...
    async def mark_overflowed(self, conversation_id: str) -> None: ...
    async def close_work(self, conversation_id: str, agent_id: str) -> Closed | None:
        """Close assigned work held by `agent_id`: release the agent's unit and record the decision
        (`released`). The handle time is counted by `add_handled`."""
        ...

    async def close_works(self, closes: Sequence[tuple[str, str]]) -> list[Closed | None]:
        """`close_work` for each (conversation, agent), in order, in one round trip (the conversations
        distinct)."""
        ...

    async def add_handled(self, handled: Mapping[str, tuple[int, float]]) -> None:
        """Count closed work in its queues' figures: per queue, the closes and the seconds held."""
        ...

    async def end_work(self, conversation_id: str) -> None: ...
    async def transfer_to_agent(self, conversation_id: str, agent_id: str, queue: str) -> WorkItem | None: ...
    async def transfer_to_queue(self, conversation_id: str, queue: str) -> None: ...
    async def list_open_work(self, limit: int) -> list[OpenWork]:
        """Waiting, offered and assigned work, oldest arrival first."""
        ...

    # offers
    async def accept_offer(self, offer_id: str, agent_id: str, at: datetime) -> Accepted | None:
        """Accept the agent's pending offer unexpired at `at` and assign its work if still offered
        (recording the decision, `assigned`)."""
        ...

    async def accept_offers(self, accepts: Sequence[tuple[str, str, datetime]]) -> list[Accepted | None]:
        """`accept_offer` for each (offer, agent, at), in order, in one round trip (the offers distinct)."""
        ...

    async def end_offer(self, offer_id: str, agent_id: str, status: str) -> Offer | None:
        """End a pending offer as rejected, expired or withdrawn."""
        ...

    async def list_expired_offers(self, now: datetime, limit: int) -> list[Offer]: ...

    # queue figures and positions
    async def get_queue_figures(self, queue: str) -> QueueFigures: ...
    async def list_queue_activity(self, since: datetime) -> list[QueueActivity]:
        """Every configured queue by name: waiting now, and offers, assignments, abandons and
        overflows after `since`."""
        ...

    async def refresh_queue_figures(self) -> None: ...
    async def refresh_agent_statistics(self) -> bool:
        """Gather the planner's statistics of the agents when many changed since it last did (True
        then). A sign-in wave turns offline agents available in seconds; until the statistics say so,
        PostgreSQL believes few agents are routable and reads every agent for each drain's candidates
        instead of the first few longest idle."""
        ...

    async def prune_assignments(self, before: datetime) -> None:
        """Forget the assignment log older than `before` (the queue figures look back minutes)."""
        ...

    async def try_lock_positions(self) -> bool: ...
    async def record_positions(
        self, conversation_ids: Sequence[str], queues: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, QueueFigures]]:
        """Places in line of those waiting among `conversation_ids`, recorded as last told, and the
        figures of their queues."""
        ...

    async def list_position_changes(self, limit: int) -> list[PositionChange]: ...
    async def set_last_positions(self, positions: dict[str, int]) -> None: ...

    # decisions
    async def insert_decisions(self, decisions: Sequence[Decision]) -> None: ...
    async def list_decisions(self, conversation_id: str) -> list[Decision]: ...


def _ints(d: dict[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (d or {}).items()}


def _agent(r: asyncpg.Record) -> domain.AgentView:
    return domain.AgentView(
        agent_id=r["agent_id"],
        presence=r["presence"],
        queues=frozenset(r["queues"]),
        limits=_ints(r["limits"]),
        used=_ints(r["used"]),
        exclusive=frozenset(r["exclusive"]),
        auto_accept=frozenset(r["auto_accept"]),
        total_used=r["total_used"],
        exclusive_held=r["exclusive_held"],
        idle_since=r["idle_since"],
        closed_channels=frozenset(r["closed_channels"]),
        skills=_ints(r["skills"]),
        last_assigned_at=r["last_assigned_at"],
    )


def _capacity(r: asyncpg.Record | None) -> Capacity | None:
    if r is None:
        return None
    return Capacity(r["agent_id"], _ints(r["used"]), _ints(r["limits"]), r["total_used"], r["exclusive_held"])


def _work(r: asyncpg.Record | None) -> WorkItem | None:
    if r is None:
        return None
    return WorkItem(
        r["conversation_id"],
        r["channel"],
        r["queue"],
        r["status"],
        r["agent_id"],
        r["offer_id"],
        r["arrival"] or {},
        r["failed_offers"],
        r["overflowed"],
        r["assigned_at"],
    )


def _offer(r: asyncpg.Record | None) -> Offer | None:
    if r is None:
        return None
    return Offer(r["offer_id"], r["conversation_id"], r["agent_id"], r["channel"], r["queue"], r["expires_at"])


def _accepted(r: asyncpg.Record | None) -> Accepted | None:
    offer = _offer(r)
    if r is None or offer is None:
        return None
    work = None
    if r["w_conversation_id"] is not None:
        work = WorkItem(
            r["w_conversation_id"],
            r["w_channel"],
            r["w_queue"],
            r["w_status"],
            r["w_agent_id"],
            r["w_offer_id"],
            r["w_arrival"] or {},
            r["w_failed_offers"],
            r["w_overflowed"],
            r["w_assigned_at"],
        )
    return Accepted(offer, work)


def _closed(r: asyncpg.Record | None) -> Closed | None:
    work = _work(r)
    if r is None or work is None:
        return None
    capacity = None
    if r["cap_agent_id"] is not None:
        capacity = Capacity(
            r["cap_agent_id"],
            _ints(r["cap_used"]),
            _ints(r["cap_limits"]),
            r["cap_total_used"],
            r["cap_exclusive_held"],
        )
    return Closed(work, capacity, r["handled_s"])


def _waiting(
    conversation_id: str,
    channel: str,
    queue: str,
    enqueued_at: datetime,
    priority: int,
    passed_by: Sequence[str],
    required_skills: dict[str, Any] | None,
    arrival: dict[str, Any] | None,
) -> domain.WaitingWork:
    arrival = arrival or {}
    return domain.WaitingWork(
        conversation_id,
        channel,
        queue,
        enqueued_at,
        priority,
        frozenset(passed_by),
        _ints(required_skills),
        arrival.get("attributes") or {},
        arrival.get("preferred_agent_id"),
        arrival,
    )


class PgRoutingStore:
    """The store on one PostgreSQL transaction (`PgTx.conn`)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def list_channels(self) -> dict[str, bool]:
        return {r["name"]: r["exclusive"] for r in await self.conn.fetch(Q.list_channels)}

    async def list_queues(self) -> dict[str, domain.Queue]:
        return {
            r["name"]: domain.Queue(
                r["name"],
                tuple(r["channels"]),
                r["assignment_method"],
                tuple(r["allowed_presences"]),
                r["priority"],
                r["offer_timeout_s"],
                r["skill_matching"],
                r["closest_after_s"],
                r["operating_hours"],
                r["overflow"],
                tuple(r["prioritisation"] or ()),
                r["preferred_wait_s"],
                r["service_level_s"],
            )
            for r in await self.conn.fetch(Q.list_queues)
        }

    async def list_rules(self) -> list[domain.Rule]:
        return [domain.Rule(r["name"], r["queue"], r["conditions"]) for r in await self.conn.fetch(Q.list_rules)]

    async def list_default_queues(self) -> dict[str, str]:
        return {r["channel"]: r["queue"] for r in await self.conn.fetch(Q.list_default_queues)}

    async def find_config_document(self) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.conn.fetchval(Q.find_config_document)
        return doc

    async def find_config_version(self) -> str:
        version: str = await self.conn.fetchval(Q.find_config_version)
        return version

    async def replace_configuration(self, cfg: Configuration, source: str, document: dict[str, Any]) -> None:
        conn = self.conn
        await conn.execute(Q.delete_other_channels, list(cfg.channels))
        await conn.executemany(Q.upsert_channel, list(cfg.channels.items()))
        await conn.execute(Q.delete_other_queues, [q.name for q in cfg.queues])
        await conn.executemany(
            Q.upsert_queue,
            [
                (
                    q.name,
                    list(q.channels),
                    q.method,
                    list(q.allowed_presences),
                    q.priority,
                    q.offer_timeout_s,
                    q.skill_matching,
                    q.closest_after_s,
                    q.operating_hours,
                    q.overflow,
                    list(q.prioritisation),
                    q.preferred_wait_s,
                    q.service_level_s,
                )
                for q in cfg.queues
            ],
        )
        await conn.execute(Q.delete_rules)
        await conn.executemany(Q.insert_rule, [(i, r.name, r.queue, r.conditions) for i, r in enumerate(cfg.rules)])
        await conn.execute(Q.delete_default_queues)
        await conn.executemany(Q.insert_default_queue, list(cfg.default_queues.items()))
        await conn.execute(Q.unconfigure_other_agents, [a.agent_id for a in cfg.agents])
        await conn.executemany(
            Q.upsert_agent_profile,
            [(a.agent_id, a.queues, a.auto_accept, a.limits, a.exclusive, a.skills) for a in cfg.agents],
        )
        await conn.execute(Q.insert_config_applied, source, document)

    async def upsert_presence(
        self, agent_id: str, presence: str, at: datetime, closed_channels: Sequence[str]
    ) -> PresenceChange | None:
        held = await self.conn.fetchrow(Q.update_presence, agent_id, presence, at, list(closed_channels))
        if held is not None:
            return PresenceChange(held["presence"], frozenset(held["closed_channels"]), held["config_version"])
        # An agent routing does not know yet, or an older change: read (and lock) what is held
        # first, since a CTE read in the same statement as the upsert would not see the row it updates.
        before = await self.conn.fetchrow(Q.lock_presence, agent_id)
        version = await self.conn.fetchval(Q.upsert_presence, agent_id, presence, at, list(closed_channels))
        if version is None:
            return None
        if before is None:
            return PresenceChange("offline", frozenset(), version)
        return PresenceChange(before["presence"], frozenset(before["closed_channels"]), version)

    async def upsert_presences(self, updates: Sequence[PresenceUpdate]) -> dict[str, PresenceChange]:
        rows = await self.conn.fetch(
            Q.update_presences,
            [u.agent_id for u in updates],
            [u.presence for u in updates],
            [u.at for u in updates],
            [orjson.dumps(u.closed_channels).decode() for u in updates],
        )
        changes = {
            r["agent_id"]: PresenceChange(r["presence"], frozenset(r["closed_channels"]), r["config_version"])
            for r in rows
        }
        for u in updates:  # an agent routing does not know yet, or an older change
            if u.agent_id not in changes:
                change = await self.upsert_presence(u.agent_id, u.presence, u.at, u.closed_channels)
                if change is not None:
                    changes[u.agent_id] = change
        return changes

    async def find_agent(self, agent_id: str) -> domain.AgentView | None:
        r = await self.conn.fetchrow(Q.find_agent, agent_id)
        return None if r is None else _agent(r)

    async def list_candidate_agents(
        self, presences: Sequence[str], channels: Sequence[str], limit: int
    ) -> list[domain.AgentView]:
        rows = await self.conn.fetch(Q.list_candidate_agents, list(presences), list(channels), limit)
        return [_agent(r) for r in rows]

    async def list_agents_by_id(self, agent_ids: Sequence[str]) -> list[domain.AgentView]:
        return [_agent(r) for r in await self.conn.fetch(Q.list_agents_by_id, list(agent_ids))]

    async def list_agents(self) -> list[domain.AgentView]:
        return [_agent(r) for r in await self.conn.fetch(Q.list_agents)]

    async def lock_agents(self, agent_ids: Sequence[str], conversation_ids: Sequence[str] = ()) -> None:
        await self.conn.execute(Q.lock_agents, list(agent_ids), list(conversation_ids))

    async def reserve_capacity(self, agent_id: str, channel: str, presences: Sequence[str]) -> Capacity | None:
        return _capacity(await self.conn.fetchrow(Q.reserve_capacity, agent_id, channel, list(presences)))

    async def reserve_units(self, reservations: Sequence[Reservation]) -> dict[str, Capacity]:
        if not reservations:
            return {}
        rows = await self.conn.fetch(
            Q.reserve_units,
            [r.agent_id for r in reservations],
            [orjson.dumps(r.units).decode() for r in reservations],
            [orjson.dumps(r.presences).decode() for r in reservations],
        )
        return {cap.agent_id: cap for r in rows if (cap := _capacity(r))}

    async def release_capacity(self, agent_id: str, channel: str) -> Capacity | None:
        return _capacity(await self.conn.fetchrow(Q.release_capacity, agent_id, channel))

    async def insert_work(
        self, conversation_id: str, channel: str, queue: str, priority: int, arrival: dict[str, Any], at: datetime
    ) -> bool:
        skills = arrival.get("required_skills") or {}
        inserted = await self.conn.fetchval(
            Q.insert_work, conversation_id, channel, queue, priority, arrival, at, skills
        )
        return inserted is not None

    async def insert_works(self, items: Sequence[NewWork]) -> set[str]:
        if not items:
            return set()
        rows = await self.conn.fetch(
            Q.insert_works,
            [w.conversation_id for w in items],
            [w.channel for w in items],
            [w.queue for w in items],
            [w.priority for w in items],
            [orjson.dumps(w.arrival).decode() for w in items],
            [w.at for w in items],
        )
        return {r["conversation_id"] for r in rows}

    async def find_work(self, conversation_id: str) -> WorkItem | None:
        return _work(await self.conn.fetchrow(Q.find_work, conversation_id))

    async def count_waiting(self, queue: str) -> int:
        n: int = await self.conn.fetchval(Q.queue_depth, queue)
        return n

    async def count_waiting_by_channel(self, cap: int) -> dict[str, int]:
        return {r["channel"]: r["waiting"] for r in await self.conn.fetch(Q.count_waiting_by_channel, cap)}

    async def list_waiting_work(self, limit: int) -> list[domain.WaitingWork]:
        return [
            _waiting(
                r["conversation_id"],
                r["channel"],
                r["queue"],
                r["enqueued_at"],
                r["priority"],
                r["passed_by"],
                r["required_skills"],
                r["arrival"],
            )
            for r in await self.conn.fetch(Q.list_waiting_work, limit)
        ]

    async def mark_offered(self, offers: Sequence[Offer]) -> None:
        if not offers:
            return
        fields = ("offer_id", "conversation_id", "agent_id", "channel", "queue", "expires_at")
        await self.conn.execute(Q.mark_offered, *columns(offers, *fields))

    async def mark_assigned(
        self, conversation_id: str, agent_id: str, offer_id: str | None, from_statuses: Sequence[str]
    ) -> WorkItem | None:
        row = await self.conn.fetchrow(Q.mark_assigned, conversation_id, agent_id, offer_id, list(from_statuses))
        return _work(row)

    async def mark_assigned_many(self, assignments: Sequence[tuple[str, str]]) -> None:
        if assignments:
            await self.conn.executemany(Q.mark_assigned, [(cid, agent, None, ["queued"]) for cid, agent in assignments])

    async def requeue_work(self, conversation_id: str, agent_id: str, offer_id: str) -> WorkItem | None:
        return _work(await self.conn.fetchrow(Q.requeue_work, conversation_id, agent_id, offer_id))

    async def move_work(self, conversation_id: str, queue: str) -> None:
        await self.conn.execute(Q.move_work, conversation_id, queue)

    async def mark_overflowed(self, conversation_id: str) -> None:
        await self.conn.execute(Q.mark_overflowed, conversation_id)

    async def close_work(self, conversation_id: str, agent_id: str) -> Closed | None:
        return _closed(await self.conn.fetchrow(Q.close_work, conversation_id, agent_id))

    async def close_works(self, closes: Sequence[tuple[str, str]]) -> list[Closed | None]:
        rows = await self.conn.fetchmany(Q.close_work, closes)  # a row for each work closed
        closed = {c.work.conversation_id: c for r in rows if (c := _closed(r)) is not None}
        return [closed.get(conversation_id) for conversation_id, _ in closes]

    async def add_handled(self, handled: Mapping[str, tuple[int, float]]) -> None:
        if handled:
            queues = sorted(handled)
            await self.conn.execute(
                Q.add_handled, queues, [handled[q][0] for q in queues], [handled[q][1] for q in queues]
            )

    async def end_work(self, conversation_id: str) -> None:
        await self.conn.execute(Q.end_work, conversation_id)

    async def transfer_to_agent(self, conversation_id: str, agent_id: str, queue: str) -> WorkItem | None:
        return _work(await self.conn.fetchrow(Q.transfer_to_agent, conversation_id, agent_id, queue))

    async def transfer_to_queue(self, conversation_id: str, queue: str) -> None:
        await self.conn.execute(Q.transfer_to_queue, conversation_id, queue)

    async def list_open_work(self, limit: int) -> list[OpenWork]:
        return [
            OpenWork(
                r["conversation_id"],
                r["channel"],
                r["queue"],
                r["status"],
                r["agent_id"],
                r["arrival"] or {},
                r["priority"],
                r["enqueued_at"],
                r["assigned_at"],
                r["overflowed"],
                r["transfers"],
            )
            for r in await self.conn.fetch(Q.list_open_work, limit)
        ]

    async def accept_offer(self, offer_id: str, agent_id: str, at: datetime) -> Accepted | None:
        return _accepted(await self.conn.fetchrow(Q.accept_offer, offer_id, agent_id, at))

    async def accept_offers(self, accepts: Sequence[tuple[str, str, datetime]]) -> list[Accepted | None]:
        rows = await self.conn.fetchmany(Q.accept_offer, accepts)  # a row for each offer accepted
        accepted = {a.offer.offer_id: a for r in rows if (a := _accepted(r)) is not None}
        return [accepted.get(offer_id) for offer_id, _, _ in accepts]

    async def end_offer(self, offer_id: str, agent_id: str, status: str) -> Offer | None:
        return _offer(await self.conn.fetchrow(Q.end_offer, offer_id, agent_id, status))

    async def list_expired_offers(self, now: datetime, limit: int) -> list[Offer]:
        return [o for r in await self.conn.fetch(Q.list_expired_offers, now, limit) if (o := _offer(r))]

    async def get_queue_figures(self, queue: str) -> QueueFigures:
        r = await self.conn.fetchrow(Q.get_queue_figures, queue)
        if r is None:
            return QueueFigures()
        return QueueFigures(r["handled"], r["handle_seconds"], r["staffed_slots"], float(r["arrivals_per_s"]))

    async def list_queue_activity(self, since: datetime) -> list[QueueActivity]:
        return [
            QueueActivity(
                r["queue"],
                r["queued"],
                r["offered_now"],
                r["oldest_waiting_at"],
                r["offered"],
                r["assigned"],
                r["assigned_in_time"],
                r["abandoned"],
                r["overflowed"],
                r["service_level_s"],
                QueueFigures(r["handled"], r["handle_seconds"], r["staffed_slots"], float(r["arrivals_per_s"])),
            )
            for r in await self.conn.fetch(Q.list_queue_activity, since)
        ]

    async def refresh_queue_figures(self) -> None:
        await self.conn.execute(Q.refresh_queue_figures)

    async def refresh_agent_statistics(self) -> bool:
        row = await self.conn.fetchrow(Q.agents_changed_since_analyze)
        if row is None or row["changed"] <= STALE_AFTER_CHANGES + STALE_AFTER_SHARE * row["live"]:
            return False
        await self.conn.execute(Q.analyze_agents)
        return True

    async def prune_assignments(self, before: datetime) -> None:
        await self.conn.execute(Q.prune_assignments, before)

    async def try_lock_positions(self) -> bool:
        return bool(await self.conn.fetchval(Q.try_lock_positions))

    async def record_positions(
        self, conversation_ids: Sequence[str], queues: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, QueueFigures]]:
        rows = await self.conn.fetch(Q.record_positions, list(conversation_ids), list(queues))
        figures = {
            r["queue"]: QueueFigures(r["handled"], r["handle_seconds"], r["staffed_slots"], float(r["arrivals_per_s"]))
            for r in rows
        }
        return {r["conversation_id"]: r["position"] for r in rows}, figures

    async def list_position_changes(self, limit: int) -> list[PositionChange]:
        rows = await self.conn.fetch(Q.list_position_changes, limit)
        return [PositionChange(r["conversation_id"], r["channel"], r["queue"], r["position"]) for r in rows]

    async def set_last_positions(self, positions: dict[str, int]) -> None:
        if positions:
            await self.conn.execute(Q.set_last_positions, list(positions), list(positions.values()))

    async def insert_decisions(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            await self.conn.execute(Q.insert_decisions, *columns(decisions, "conversation_id", "kind", "detail"))

    async def list_decisions(self, conversation_id: str) -> list[Decision]:
        rows = await self.conn.fetch(Q.list_decisions, conversation_id)
        return [Decision(r["conversation_id"], r["kind"], r["detail"], r["at"]) for r in rows]


# --- in memory ------------------------------------------------------------------------------------


@dataclass
class _AgentRow:
    agent_id: str
    configured: bool = False
    presence: str = "offline"
    queues: list[str] = field(default_factory=list)
    auto_accept: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    exclusive: list[str] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)
    total_used: int = 0
    exclusive_held: bool = False
    idle_since: datetime = field(default_factory=lambda: datetime.now(UTC))
    presence_at: datetime | None = None
    closed_channels: list[str] = field(default_factory=list)
    skills: dict[str, int] = field(default_factory=dict)
    last_assigned_at: datetime | None = None

    def view(self) -> domain.AgentView:
        return domain.AgentView(
            agent_id=self.agent_id,
            presence=self.presence,
            queues=frozenset(self.queues),
            limits=dict(self.limits),
            used=dict(self.used),
            exclusive=frozenset(self.exclusive),
            auto_accept=frozenset(self.auto_accept),
            total_used=self.total_used,
            exclusive_held=self.exclusive_held,
            idle_since=self.idle_since,
            closed_channels=frozenset(self.closed_channels),
            skills=dict(self.skills),
            last_assigned_at=self.last_assigned_at,
        )

    def capacity(self) -> Capacity:
        return Capacity(self.agent_id, dict(self.used), dict(self.limits), self.total_used, self.exclusive_held)


@dataclass
class _WorkRow:
    conversation_id: str
    channel: str
    queue: str
    priority: int
    status: str
    arrival: dict[str, Any]
    enqueued_at: datetime
    required_skills: dict[str, int]
    agent_id: str | None = None
    offer_id: str | None = None
    attempts: int = 0
    passed_by: list[str] = field(default_factory=list)
    assigned_at: datetime | None = None
    failed_offers: int = 0
    overflowed: bool = False
    last_position: int | None = None
    ended_at: datetime | None = None
    transfers: int = 0

    def item(self) -> WorkItem:
        return WorkItem(
            self.conversation_id,
            self.channel,
            self.queue,
            self.status,
            self.agent_id,
            self.offer_id,
            self.arrival,
            self.failed_offers,
            self.overflowed,
            self.assigned_at,
        )


@dataclass
class _OfferRow:
    offer: Offer
    status: str = "pending"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class _Assignment:
    conversation_id: str
    queue: str
    agent_id: str
    waited_s: float
    at: datetime


@dataclass
class _QueueStats:
    handled: int = 0
    handle_seconds: float = 0.0
    staffed_slots: int = 0
    arrivals_per_s: float = 0.0


class FakeRoutingStore:
    """In memory, with the conditions and orderings of the SQL (MemoryDatabase gives it
    transactions by restoring a copy of these attributes)."""

    def __init__(self) -> None:
        self.channels: dict[str, bool] = {}
        self.queues: dict[str, domain.Queue] = {}
        self.rules: list[domain.Rule] = []
        self.default_queues: dict[str, str] = {}
        self.config_documents: list[dict[str, Any]] = []
        self.config_version = ""
        self.agents: dict[str, _AgentRow] = {}
        self.work: dict[str, _WorkRow] = {}
        self.offers: dict[str, _OfferRow] = {}
        self.stats: dict[str, _QueueStats] = {}
        self.decisions: list[Decision] = []
        self.assignments: list[_Assignment] = []

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    async def list_channels(self) -> dict[str, bool]:
        return dict(sorted(self.channels.items()))

    async def list_queues(self) -> dict[str, domain.Queue]:
        return dict(sorted(self.queues.items()))

    async def list_rules(self) -> list[domain.Rule]:
        return list(self.rules)

    async def list_default_queues(self) -> dict[str, str]:
        return dict(sorted(self.default_queues.items()))

    async def find_config_document(self) -> dict[str, Any] | None:
        return self.config_documents[-1] if self.config_documents else None

    async def find_config_version(self) -> str:
        return self.config_version

    async def replace_configuration(self, cfg: Configuration, source: str, document: dict[str, Any]) -> None:
        self.channels = dict(cfg.channels)
        self.queues = {q.name: q for q in cfg.queues}
        self.rules = list(cfg.rules)
        self.default_queues = dict(cfg.default_queues)
        profiles = {a.agent_id: a for a in cfg.agents}
        for row in self.agents.values():
            if row.agent_id not in profiles:
                row.configured = False
        for a in cfg.agents:
            row = self.agents.setdefault(a.agent_id, _AgentRow(a.agent_id))
            row.configured = True
            row.queues, row.auto_accept = list(a.queues), list(a.auto_accept)
            row.limits, row.exclusive, row.skills = dict(a.limits), list(a.exclusive), dict(a.skills)
        self.config_documents.append(document)
        self.config_version = uuid.uuid4().hex  # never reused, as PostgreSQL's ids are not after a rollback

    async def upsert_presence(
        self, agent_id: str, presence: str, at: datetime, closed_channels: Sequence[str]
    ) -> PresenceChange | None:
        row = self.agents.get(agent_id)
        if row is None:
            self.agents[agent_id] = _AgentRow(
                agent_id, presence=presence, presence_at=at, closed_channels=list(closed_channels)
            )
            return PresenceChange("offline", frozenset(), self.config_version)
        if row.presence_at is not None and row.presence_at > at:
            return None
        before = PresenceChange(row.presence, frozenset(row.closed_channels), self.config_version)
        row.presence, row.presence_at, row.closed_channels = presence, at, list(closed_channels)
        return before

    async def upsert_presences(self, updates: Sequence[PresenceUpdate]) -> dict[str, PresenceChange]:
        changes = {}
        for u in updates:
            change = await self.upsert_presence(u.agent_id, u.presence, u.at, u.closed_channels)
            if change is not None:
                changes[u.agent_id] = change
        return changes

    async def find_agent(self, agent_id: str) -> domain.AgentView | None:
        row = self.agents.get(agent_id)
        return row.view() if row else None

    async def list_candidate_agents(
        self, presences: Sequence[str], channels: Sequence[str], limit: int
    ) -> list[domain.AgentView]:
        rows = [
            a
            for a in self.agents.values()
            if a.configured
            and a.presence in presences
            and not a.exclusive_held
            and any(a.used.get(ch, 0) < a.limits.get(ch, 0) and ch not in a.closed_channels for ch in channels)
        ]
        rows.sort(key=lambda a: (a.idle_since, a.agent_id))
        return [a.view() for a in rows[:limit]]

    async def list_agents_by_id(self, agent_ids: Sequence[str]) -> list[domain.AgentView]:
        return [self.agents[i].view() for i in sorted(set(agent_ids)) if i in self.agents and self.agents[i].configured]

    async def list_agents(self) -> list[domain.AgentView]:
        return [a.view() for _, a in sorted(self.agents.items()) if a.configured]

    async def reserve_capacity(self, agent_id: str, channel: str, presences: Sequence[str]) -> Capacity | None:
        a = self.agents.get(agent_id)
        if (
            a is None
            or a.presence not in presences
            or channel in a.closed_channels
            or a.used.get(channel, 0) + 1 > a.limits.get(channel, 0)
            or a.exclusive_held
            or (channel in a.exclusive and a.total_used != 0)
        ):
            return None
        now = self._now()
        a.used[channel] = a.used.get(channel, 0) + 1
        a.total_used += 1
        a.exclusive_held = a.exclusive_held or channel in a.exclusive
        a.idle_since = a.last_assigned_at = now
        return a.capacity()

    async def lock_agents(self, agent_ids: Sequence[str], conversation_ids: Sequence[str] = ()) -> None:
        return None  # one transaction at a time: nothing to wait for

    async def reserve_units(self, reservations: Sequence[Reservation]) -> dict[str, Capacity]:
        taken = {}
        for r in reservations:
            a = self.agents.get(r.agent_id)
            total = sum(r.units.values())
            if (
                a is None
                or a.presence not in r.presences
                or a.exclusive_held
                or any(
                    ch in a.closed_channels or a.used.get(ch, 0) + n > a.limits.get(ch, 0) for ch, n in r.units.items()
                )
                or (any(ch in a.exclusive for ch in r.units) and not (a.total_used == 0 and total == 1))
            ):
                continue
            now = self._now()
            for ch, n in r.units.items():
                a.used[ch] = a.used.get(ch, 0) + n
            a.total_used += total
            a.exclusive_held = a.exclusive_held or any(ch in a.exclusive for ch in r.units)
            a.idle_since = a.last_assigned_at = now
            taken[r.agent_id] = a.capacity()
        return taken

    async def release_capacity(self, agent_id: str, channel: str) -> Capacity | None:
        a = self.agents.get(agent_id)
        if a is None or a.used.get(channel, 0) <= 0:
            return None
        a.used[channel] -= 1
        a.total_used = max(a.total_used - 1, 0)
        a.exclusive_held = a.exclusive_held and channel not in a.exclusive
        a.idle_since = self._now()
        return a.capacity()

    async def insert_work(
        self, conversation_id: str, channel: str, queue: str, priority: int, arrival: dict[str, Any], at: datetime
    ) -> bool:
        if conversation_id in self.work:
            return False
        skills = _ints(arrival.get("required_skills"))
        self.work[conversation_id] = _WorkRow(conversation_id, channel, queue, priority, "queued", arrival, at, skills)
        return True

    async def insert_works(self, items: Sequence[NewWork]) -> set[str]:
        return {
            w.conversation_id
            for w in items
            if await self.insert_work(w.conversation_id, w.channel, w.queue, w.priority, w.arrival, w.at)
        }

    async def find_work(self, conversation_id: str) -> WorkItem | None:
        row = self.work.get(conversation_id)
        return row.item() if row else None

    async def count_waiting(self, queue: str) -> int:
        return sum(1 for w in self.work.values() if w.queue == queue and w.status == "queued")

    def _waiting_rows(self) -> list[_WorkRow]:
        rows = [w for w in self.work.values() if w.status == "queued"]
        rows.sort(key=lambda w: (w.enqueued_at, w.conversation_id))
        return rows

    async def count_waiting_by_channel(self, cap: int) -> dict[str, int]:
        counts = Counter(w.channel for w in self.work.values() if w.status == "queued")
        return {channel: min(n, cap) for channel, n in sorted(counts.items())}

    async def list_waiting_work(self, limit: int) -> list[domain.WaitingWork]:
        return [
            _waiting(
                w.conversation_id,
                w.channel,
                w.queue,
                w.enqueued_at,
                w.priority,
                w.passed_by,
                w.required_skills,
                w.arrival,
            )
            for w in self._waiting_rows()[:limit]
        ]

    async def mark_offered(self, offers: Sequence[Offer]) -> None:
        for o in offers:
            if o.offer_id in self.offers:
                raise ValueError(f"duplicate offer id {o.offer_id}")
            pending = (p for p in self.offers.values() if p.status == "pending")
            if any(p.offer.conversation_id == o.conversation_id for p in pending):
                raise ValueError(f"conversation {o.conversation_id} already has a pending offer")
            w = self.work.get(o.conversation_id)
            if w is not None and w.status == "queued":
                w.status, w.agent_id, w.offer_id = "offered", o.agent_id, o.offer_id
                w.attempts += 1
            self.offers[o.offer_id] = _OfferRow(o)

    async def mark_assigned(
        self, conversation_id: str, agent_id: str, offer_id: str | None, from_statuses: Sequence[str]
    ) -> WorkItem | None:
        w = self.work.get(conversation_id)
        if w is None or w.status not in from_statuses:
            return None
        now = self._now()
        w.status, w.agent_id, w.offer_id, w.assigned_at = "assigned", agent_id, offer_id, now
        waited = max((now - w.enqueued_at).total_seconds(), 0.0)
        self.assignments.append(_Assignment(conversation_id, w.queue, agent_id, waited, now))
        return w.item()

    async def mark_assigned_many(self, assignments: Sequence[tuple[str, str]]) -> None:
        for cid, agent_id in assignments:
            await self.mark_assigned(cid, agent_id, None, ["queued"])

    async def requeue_work(self, conversation_id: str, agent_id: str, offer_id: str) -> WorkItem | None:
        w = self.work.get(conversation_id)
        if w is None or w.status != "offered" or w.offer_id != offer_id:
            return None
        w.status, w.agent_id, w.offer_id = "queued", None, None
        w.passed_by.append(agent_id)
        w.failed_offers += 1
        return w.item()

    async def move_work(self, conversation_id: str, queue: str) -> None:
        w = self.work.get(conversation_id)
        if w is not None and w.status == "queued":
            w.queue, w.overflowed = queue, True

    async def mark_overflowed(self, conversation_id: str) -> None:
        if (w := self.work.get(conversation_id)) is not None:
            w.overflowed = True

    async def close_work(self, conversation_id: str, agent_id: str) -> Closed | None:
        w = self.work.get(conversation_id)
        if w is None or w.status != "assigned" or w.agent_id != agent_id:
            return None
        w.status = "closed"
        capacity = await self.release_capacity(agent_id, w.channel)
        held = None if w.assigned_at is None else (self._now() - w.assigned_at).total_seconds()
        await self.insert_decisions([Decision(conversation_id, "released", {"agent_id": agent_id})])
        return Closed(w.item(), capacity, held)

    async def close_works(self, closes: Sequence[tuple[str, str]]) -> list[Closed | None]:
        return [await self.close_work(conversation_id, agent_id) for conversation_id, agent_id in closes]

    async def add_handled(self, handled: Mapping[str, tuple[int, float]]) -> None:
        for queue, (n, seconds) in handled.items():
            s = self.stats.setdefault(queue, _QueueStats())
            s.handled += n
            s.handle_seconds += seconds

    async def end_work(self, conversation_id: str) -> None:
        w = self.work.get(conversation_id)
        if w is not None and w.status in ("queued", "offered"):
            w.status, w.ended_at = "ended", self._now()

    async def transfer_to_agent(self, conversation_id: str, agent_id: str, queue: str) -> WorkItem | None:
        w = self.work.get(conversation_id)
        if w is None:
            return None
        w.status, w.agent_id, w.queue, w.offer_id, w.assigned_at = "assigned", agent_id, queue, None, self._now()
        w.transfers += 1
        return w.item()

    async def transfer_to_queue(self, conversation_id: str, queue: str) -> None:
        if (w := self.work.get(conversation_id)) is not None:
            w.status, w.agent_id, w.offer_id, w.queue = "queued", None, None, queue
            w.transfers += 1

    async def list_open_work(self, limit: int) -> list[OpenWork]:
        rows = [w for w in self.work.values() if w.status in ("queued", "offered", "assigned")]
        rows.sort(key=lambda w: (w.enqueued_at, w.conversation_id))
        return [
            OpenWork(
                w.conversation_id,
                w.channel,
                w.queue,
                w.status,
                w.agent_id,
                w.arrival,
                w.priority,
                w.enqueued_at,
                w.assigned_at,
                w.overflowed,
                w.transfers,
            )
            for w in rows[:limit]
        ]

    async def accept_offer(self, offer_id: str, agent_id: str, at: datetime) -> Accepted | None:
        row = self.offers.get(offer_id)
        if row is None or row.offer.agent_id != agent_id or row.status != "pending" or row.offer.expires_at <= at:
            return None
        row.status = "accepted"
        work = await self.mark_assigned(row.offer.conversation_id, agent_id, offer_id, ["offered"])
        if work is not None:
            decision = Decision(work.conversation_id, "assigned", {"agent_id": agent_id, "how": "accepted"})
            await self.insert_decisions([decision])
        return Accepted(row.offer, work)

    async def accept_offers(self, accepts: Sequence[tuple[str, str, datetime]]) -> list[Accepted | None]:
        return [await self.accept_offer(offer_id, agent_id, at) for offer_id, agent_id, at in accepts]

    async def end_offer(self, offer_id: str, agent_id: str, status: str) -> Offer | None:
        row = self.offers.get(offer_id)
        if row is None or row.offer.agent_id != agent_id or row.status != "pending":
            return None
        row.status = status
        return row.offer

    async def list_expired_offers(self, now: datetime, limit: int) -> list[Offer]:
        expired = [r.offer for r in self.offers.values() if r.status == "pending" and r.offer.expires_at <= now]
        expired.sort(key=lambda o: (o.expires_at, o.offer_id))
        return expired[:limit]

    async def get_queue_figures(self, queue: str) -> QueueFigures:
        if queue not in self.queues:
            return QueueFigures()
        s = self.stats.get(queue) or _QueueStats()
        return QueueFigures(s.handled, s.handle_seconds, s.staffed_slots, s.arrivals_per_s)

    async def list_queue_activity(self, since: datetime) -> list[QueueActivity]:
        activity = []
        for name, q in sorted(self.queues.items()):
            mine = [w for w in self.work.values() if w.queue == name]
            waiting = [w.enqueued_at for w in mine if w.status in ("queued", "offered")]
            assigned = [a for a in self.assignments if a.queue == name and a.at > since]
            activity.append(
                QueueActivity(
                    name,
                    queued=sum(1 for w in mine if w.status == "queued"),
                    offered_now=sum(1 for w in mine if w.status == "offered"),
                    oldest_waiting_at=min(waiting, default=None),
                    offered=sum(1 for o in self.offers.values() if o.offer.queue == name and o.created_at > since),
                    assigned=len(assigned),
                    assigned_in_time=sum(1 for a in assigned if a.waited_s <= q.service_level_s),
                    abandoned=sum(1 for w in mine if w.status == "ended" and w.ended_at and w.ended_at > since),
                    overflowed=sum(
                        1
                        for d in self.decisions
                        if d.kind == "overflowed" and d.at and d.at > since and d.detail.get("from") == name
                    ),
                    service_level_s=q.service_level_s,
                    figures=await self.get_queue_figures(name),
                )
            )
        return activity

    async def refresh_queue_figures(self) -> None:
        since = self._now() - timedelta(minutes=15)
        for q in self.queues.values():
            slots = sum(
                a.limits[ch]
                for a in self.agents.values()
                if a.configured and q.name in a.queues and a.presence in q.allowed_presences
                for ch in q.channels
                if ch in a.limits
            )
            arrivals = sum(1 for w in self.work.values() if w.queue == q.name and w.enqueued_at > since)
            s = self.stats.setdefault(q.name, _QueueStats())
            s.staffed_slots, s.arrivals_per_s = slots, arrivals / 900.0

    async def refresh_agent_statistics(self) -> bool:
        return False  # no planner

    async def prune_assignments(self, before: datetime) -> None:
        self.assignments = [a for a in self.assignments if a.at >= before]

    async def try_lock_positions(self) -> bool:
        return True  # one transaction at a time in memory

    def _ranked(self) -> list[tuple[_WorkRow, int]]:
        count: dict[str, int] = {}
        ranked = []
        for w in self._waiting_rows():
            count[w.queue] = count.get(w.queue, 0) + 1
            ranked.append((w, count[w.queue]))
        return ranked

    async def record_positions(
        self, conversation_ids: Sequence[str], queues: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, QueueFigures]]:
        wanted = set(conversation_ids)
        told = [(w, p) for w, p in self._ranked() if w.queue in queues and w.conversation_id in wanted]
        for w, p in told:
            w.last_position = p
        figures = {w.queue: await self.get_queue_figures(w.queue) for w, _ in told}
        return {w.conversation_id: p for w, p in told}, figures

    async def list_position_changes(self, limit: int) -> list[PositionChange]:
        changes = [
            PositionChange(w.conversation_id, w.channel, w.queue, p)
            for w, p in self._ranked()
            if w.last_position != p
            and (p <= 10 or w.last_position is None or abs(w.last_position - p) * 10 >= w.last_position)
        ]
        changes.sort(key=lambda c: (c.queue, c.position))
        return changes[:limit]

    async def set_last_positions(self, positions: dict[str, int]) -> None:
        for cid, position in positions.items():
            if (w := self.work.get(cid)) is not None:
                w.last_position = position

    async def insert_decisions(self, decisions: Sequence[Decision]) -> None:
        now = self._now()
        self.decisions += [replace(d, at=now) for d in decisions]

    async def list_decisions(self, conversation_id: str) -> list[Decision]:
        return [d for d in self.decisions if d.conversation_id == conversation_id]
