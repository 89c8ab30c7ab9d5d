"""routing's use cases: one function per event or command, each inside the caller's unit of work."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from routing import domain
from routing.store import (
    Accepted,
    Capacity,
    Closed,
    Decision,
    NewWork,
    Offer,
    PresenceUpdate,
    QueueFigures,
    Reservation,
    RoutingStore,
)
from shared import contracts as c
from shared.messaging import PoisonMessage, UnitOfWork
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.routing")
DRAIN = "drain"
# A drain pass placed nothing because an agent it chose was held by another transaction (it skips
# those rather than wait): the drain loop tries again this much later, since that transaction may
# not ask for a drain when it commits.
DRAIN_SOON = "drain_soon"
DRAIN_RETRY_S = 0.05
# At most this many such retries in a row (a second's worth): a refusal that is not a held agent
# (a slot another replica took) ends with the next pass, and the safety pass stays behind them.
DRAIN_RETRIES = 20
DRAINED = "drained"  # a drain pass ran in the transaction
# Longest-idle agents considered per drain pass; the drain loop runs again while it assigns work.
CANDIDATES_PER_DRAIN = 500
# With few items waiting, a pass first considers this many agents per waiting item (at least
# MIN_CANDIDATES) when every queue prefers the longest-idle agent (the order the agents are read in).
CANDIDATES_PER_WAITING = 4
MIN_CANDIDATES = 16
# A backlog is counted per channel only this far: past it, the candidates considered no longer grow.
WAITING_COUNTED = -(-CANDIDATES_PER_DRAIN // CANDIDATES_PER_WAITING)
IDLE_ORDERED = ("longest_idle", "priority_fifo")
# A drain pass reads this many waiting items first (all of them, mostly), and more only when full.
FIRST_WAITING = 50
# How long the log of assignments (the supervisor's assigned count and service level) is kept.
ASSIGNMENTS_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class Setup:
    """The configuration routing acts on, read once per transaction so a change applies to the next."""

    channels: dict[str, bool]
    queues: dict[str, domain.Queue]
    rules: list[domain.Rule]
    default_queues: dict[str, str]


@dataclass
class KnownSetup:
    """The configuration last read in this process, with the version it was read at: a transaction
    checks the version (one statement) and reads the configuration again only when it moved."""

    entry: tuple[str, Setup] | None = None


@dataclass(frozen=True)
class Arrived:
    """A conversation queued in this batch, announced (work.queued) at the end of the batch."""

    conversation_id: str
    channel: str
    queue: str
    routed_by: str


@dataclass
class RoutingBatch:
    """What one transaction (a consumer batch, a drain pass) reads once and writes at its end."""

    setup: Setup | None = None
    known: KnownSetup = field(default_factory=KnownSetup)  # shared by the transactions of a process
    depth: dict[str, int] = field(default_factory=dict)  # waiting per queue, counted once then kept
    figures: dict[str, QueueFigures] = field(default_factory=dict)
    arrived: list[Arrived] = field(default_factory=list)
    new_work: list[tuple[NewWork, str]] = field(default_factory=list)  # to insert in one step, and why queued
    decisions: list[Decision] = field(default_factory=list)
    more: bool = False  # a drain pass left work another pass may place at once
    drain_with_batch: bool = True  # RoutingSettings.drain_with_batch
    drain_limit: int = 1000  # RoutingSettings.drain_batch
    presence: dict[str, PresenceUpdate] = field(default_factory=dict)  # the latest change per agent
    handled: dict[str, tuple[int, float]] = field(default_factory=dict)  # closes and seconds held, per queue


Uow = UnitOfWork[RoutingStore, RoutingBatch]
RoutingRuntime = Runtime[RoutingStore, RoutingBatch]


def _now() -> datetime:
    return datetime.now(UTC)


def capacity_changed(cap: Capacity) -> c.CapacityChanged:
    # Full: a channel the agent works in is at its limit (3 of 3 chats), or exclusive work is held.
    full_channels = sorted(ch for ch, n in cap.used.items() if n > 0 and n >= cap.limits.get(ch, 0))
    return c.CapacityChanged(
        agent_id=cap.agent_id,
        used=cap.used,
        limits=cap.limits,
        exclusive_held=cap.exclusive_held,
        full=bool(full_channels) or cap.exclusive_held,
        full_channels=full_channels,
        total_used=cap.total_used,
    )


async def _setup(uow: Uow, version: str | None = None) -> Setup:
    """The configuration for this transaction; `version` when a statement of it read that already."""
    if uow.batch.setup is None:
        store = uow.store
        if version is None:
            version = await store.find_config_version()
        known = uow.batch.known.entry
        if known is None or known[0] != version:
            # read after the version, so at least as new as it (a newer version reads it again)
            setup = Setup(
                await store.list_channels(),
                await store.list_queues(),
                await store.list_rules(),
                await store.list_default_queues(),
            )
            known = uow.batch.known.entry = (version, setup)
        uow.batch.setup = known[1]
    return uow.batch.setup


async def _estimated_wait(uow: Uow, queue: str, position: int) -> float | None:
    """From the queue's figures, read once per transaction."""
    figures = uow.batch.figures.get(queue)
    if figures is None:
        figures = uow.batch.figures[queue] = await uow.store.get_queue_figures(queue)
    return domain.estimated_wait_s(
        position, figures.handled, figures.handle_seconds, figures.staffed_slots, figures.arrivals_per_s
    )


async def _queue_position(uow: Uow, queue: str) -> tuple[int, float | None]:
    """Depth of the queue including a new arrival, and its wait: counted once per batch, then kept."""
    depth = uow.batch.depth
    if queue not in depth:  # counted after this arrival's insert, so it includes it
        depth[queue] = await uow.store.count_waiting(queue)
    else:
        depth[queue] += 1
    return depth[queue], await _estimated_wait(uow, queue, depth[queue])


def _overflows_on_load(queue: domain.Queue) -> bool:
    """The queue overflows on its depth or wait: only then does an arrival count the queue."""
    rules = queue.overflow or {}
    return rules.get("max_waiting") is not None or rules.get("max_estimated_wait_s") is not None


def _left_queue(uow: Uow, queue: str) -> None:
    if queue in uow.batch.depth:
        uow.batch.depth[queue] -= 1


async def on_conversation_arrived(uow: Uow, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
    setup = await _setup(uow)
    if data.channel not in setup.channels:
        raise PoisonMessage(
            f"unknown channel {data.channel!r} for conversation {data.conversation_id}; "
            f"configured channels: {', '.join(sorted(setup.channels)) or '(none)'}"
        )
    arrival = data.model_dump(mode="json", exclude_none=True)
    queue, why = domain.route_to_queue(arrival, list(setup.queues.values()), setup.rules, setup.default_queues)
    if queue is None:
        raise PoisonMessage(f"{why}; add a queue or a default queue to the routing configuration")
    work = NewWork(data.conversation_id, data.channel, queue.name, data.priority, arrival, ev.time)
    if not (_overflows_on_load(queue) or queue.operating_hours):
        # It cannot overflow on arrival: inserted with the batch's other arrivals (_insert_new_work).
        uow.batch.new_work.append((work, why))
        uow.flags.add(DRAIN)
        return
    if not await uow.store.insert_work(data.conversation_id, data.channel, queue.name, data.priority, arrival, ev.time):
        log.info("duplicate_arrival", conversation_id=data.conversation_id)
        return
    depth, eta = 0, None
    if _overflows_on_load(queue):
        depth, eta = await _queue_position(uow, queue.name)
    overflow = domain.overflow_on_arrival(queue, depth, eta, _now())
    if overflow:
        queue, depth, eta = await _overflow(uow, data.conversation_id, queue, setup.queues, overflow)
    # work.queued is emitted at the end of the batch, with the position in arrival-time order
    # (a batch mixes partitions, so the order of inserts is not the order of arrival).
    uow.batch.arrived.append(Arrived(data.conversation_id, data.channel, queue.name, why))
    uow.flags.add(DRAIN)


async def _overflow(
    uow: Uow,
    conversation_id: str,
    queue: domain.Queue,
    queues: dict[str, domain.Queue],
    reason: str,
    depth: int = 0,
    eta: float | None = None,
) -> tuple[domain.Queue, int, float | None]:
    """Move a waiting item to the queue's fallback (or mark and keep it); every move is an event."""
    rules = queue.overflow or {}
    target = queues.get(rules.get("to_queue") or "")
    if rules.get("action", "move") == "move" and target is not None:
        await uow.store.move_work(conversation_id, target.name)
        _left_queue(uow, queue.name)
        uow.emit(
            c.WorkOverflowed(
                conversation_id=conversation_id, from_queue=queue.name, to_queue=target.name, reason=reason
            )
        )
        decide(uow, conversation_id, "overflowed", {"from": queue.name, "to": target.name, "reason": reason})
        depth, eta = await _queue_position(uow, target.name)
        return target, depth, eta
    await uow.store.mark_overflowed(conversation_id)
    uow.emit(
        c.WorkOverflowed(
            conversation_id=conversation_id, from_queue=queue.name, to_queue=None, reason=f"{reason} (kept waiting)"
        )
    )
    decide(uow, conversation_id, "overflowed", {"from": queue.name, "kept": True, "reason": reason})
    return queue, depth, eta


async def _insert_new_work(uow: Uow) -> None:
    new, uow.batch.new_work = uow.batch.new_work, []
    if not new:
        return
    inserted = await uow.store.insert_works([w for w, _ in new])
    for w, why in new:
        if w.conversation_id not in inserted:
            log.info("duplicate_arrival", conversation_id=w.conversation_id)
            continue
        inserted.discard(w.conversation_id)  # the same conversation twice in a batch: queued once
        uow.batch.arrived.append(Arrived(w.conversation_id, w.channel, w.queue, why))


async def on_conversation_ended(uow: Uow, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
    await _insert_new_work(uow)  # an arrival earlier in this batch ends as if it were already queued
    work = await uow.store.find_work(data.conversation_id)
    if work is None:
        return
    if work.status == "queued":
        await uow.store.end_work(data.conversation_id)
        decide(uow, data.conversation_id, "ended_while_queued", {})
    elif work.status == "offered":
        await uow.store.end_work(data.conversation_id)
        await _withdraw(uow, work.offer_id, work.agent_id)


async def _withdraw(uow: Uow, offer_id: str | None, agent_id: str | None) -> None:
    offer = await uow.store.end_offer(offer_id or "", agent_id or "", "withdrawn")
    if offer is not None:
        await _release(uow, offer.agent_id, offer.channel)
        _offer_ended(uow, offer, "withdrawn")


def _offer_ended(uow: Uow, offer: Offer, cause: str) -> None:
    """An offer is over before acceptance (expired, rejected or withdrawn): say so on routing.v1."""
    uow.emit(
        c.WorkOfferExpired(
            agent_id=offer.agent_id,
            offer_id=offer.offer_id,
            conversation_id=offer.conversation_id,
            channel=offer.channel,
            expires_at=offer.expires_at,
            cause=cause,  # type: ignore[arg-type]
        )
    )


async def on_offer_accepted(uow: Uow, ev: c.CloudEvent, data: c.OfferAccepted) -> None:
    accepted = await uow.answered(ev, lambda: uow.store.accept_offer(data.offer_id, data.agent_id, _now()))
    if accepted is None:
        # Expired, withdrawn or someone else's: the offer is gone, so no session opens.
        decide(uow, data.conversation_id, "late_accept_ignored", {"agent_id": data.agent_id, "offer_id": data.offer_id})
        return
    work = accepted.work
    if work is None:
        return
    uow.emit(
        c.WorkAssigned(
            agent_id=data.agent_id,
            conversation_id=work.conversation_id,
            channel=work.channel,
            queue=work.queue,
            offer_id=data.offer_id,
            how="accepted",
            conversation=work.arrival,
        )
    )
    # the store recorded the decision (assigned) with the acceptance


async def on_offer_rejected(uow: Uow, ev: c.CloudEvent, data: c.OfferRejected) -> None:
    offer = await uow.store.end_offer(data.offer_id, data.agent_id, "rejected")
    if offer is not None:
        await _requeue_after_offer(uow, offer, "rejected")


async def _requeue_after_offer(uow: Uow, offer: Offer, cause: str) -> None:
    await _release(uow, offer.agent_id, offer.channel)
    work = await uow.store.requeue_work(offer.conversation_id, offer.agent_id, offer.offer_id)
    _offer_ended(uow, offer, cause)
    if work is not None:
        uow.emit(
            c.WorkRequeued(
                conversation_id=work.conversation_id,
                channel=work.channel,
                queue=work.queue,
                reason=f"offer {cause} by {offer.agent_id}",
            )
        )
        queues = (await _setup(uow)).queues
        queue = queues.get(work.queue)
        limit = (queue.overflow or {}).get("max_failed_offers") if queue else None
        if queue and limit and work.failed_offers >= int(limit) and not work.overflowed:
            await _overflow(uow, work.conversation_id, queue, queues, f"{work.failed_offers} offers not accepted")
    decide(uow, offer.conversation_id, f"offer_{cause}", {"agent_id": offer.agent_id})
    uow.flags.add(DRAIN)


async def on_session_closed(uow: Uow, ev: c.CloudEvent, data: c.SessionClosed) -> None:
    if not data.conversation_id:
        return
    conversation_id = data.conversation_id
    closed = await uow.answered(ev, lambda: uow.store.close_work(conversation_id, data.agent_id))
    if closed is None:
        return
    work = closed.work
    if closed.handled_s is not None:
        n, seconds = uow.batch.handled.get(work.queue, (0, 0.0))
        uow.batch.handled[work.queue] = (n + 1, seconds + max(closed.handled_s, 0.0))
    if closed.capacity is not None:
        uow.emit(capacity_changed(closed.capacity))
    uow.emit(
        c.WorkReleased(
            agent_id=data.agent_id,
            conversation_id=data.conversation_id,
            channel=work.channel,
            reason="session_closed",
        )
    )
    # the store recorded the decision (released) with the close
    uow.flags.add(DRAIN)


# Run ahead (`Consumer.ahead`): the handlers' first statements for a batch's records at once.


async def accept_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.OfferAccepted]]) -> list[Accepted | None]:
    at = _now()
    return await uow.store.accept_offers([(data.offer_id, data.agent_id, at) for _, data in items])


async def close_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.SessionClosed]]) -> list[Closed | None]:
    return await uow.store.close_works([(data.conversation_id or "", data.agent_id) for _, data in items])


def closes_work(data: c.SessionClosed) -> bool:
    """A close without a conversation has no statement: its handler returns first."""
    return bool(data.conversation_id)


# A deliberate pick or transfer is allowed in any signed-in presence (an agent away from offers may
# still pick); capacity and exclusivity are enforced exactly as for offers.
SIGNED_IN = [p for p in c.BASE_PRESENCES if p != "offline"]


async def on_pick_work(uow: Uow, ev: c.CloudEvent, data: c.PickWork) -> None:
    """An agent picks a waiting item: assigned at once when the agent has capacity for it."""

    def refuse(reason: str) -> None:
        uow.emit(
            c.WorkPickRefused(
                agent_id=data.agent_id,
                conversation_id=data.conversation_id,
                command_id=data.command_id or ev.id,
                reason=reason,
            )
        )

    work = await uow.store.find_work(data.conversation_id)
    if work is None:
        return refuse(f"routing has no conversation {data.conversation_id!r}")
    if work.status != "queued":
        return refuse(f"conversation {data.conversation_id!r} is {work.status}, not waiting in a queue")
    queue = (await _setup(uow)).queues.get(work.queue)
    agent = await uow.store.find_agent(data.agent_id)
    if agent is None or queue is None or queue.name not in agent.queues:
        return refuse(f"{data.agent_id} does not serve queue {work.queue!r}")
    cap = await uow.store.reserve_capacity(data.agent_id, work.channel, SIGNED_IN)
    if cap is None:
        return refuse(f"no free {work.channel} capacity (presence {agent.presence})")
    uow.emit(capacity_changed(cap))
    assigned = await uow.store.mark_assigned(data.conversation_id, data.agent_id, None, ["queued"])
    uow.emit(
        c.WorkAssigned(
            agent_id=data.agent_id,
            conversation_id=data.conversation_id,
            channel=work.channel,
            queue=work.queue,
            how="picked",
            conversation=assigned.arrival if assigned else {},
        )
    )
    decide(uow, data.conversation_id, "assigned", {"agent_id": data.agent_id, "how": "picked"})
    return None


async def on_transfer_work(uow: Uow, ev: c.CloudEvent, data: c.TransferWork) -> None:
    """Move assigned work to a queue (it keeps its place in line) or straight to an agent with
    capacity (else to the queue); the conversation keeps its history and decisions."""
    work = await uow.store.find_work(data.conversation_id)
    if work is None or work.status not in ("assigned", "queued", "offered"):
        decide(uow, data.conversation_id, "transfer_ignored", {"status": work.status if work else None})
        return
    queues = (await _setup(uow)).queues
    target_queue = queues.get(data.to_queue or work.queue) or queues.get(work.queue)
    if target_queue is None:
        decide(uow, data.conversation_id, "transfer_ignored", {"reason": f"unknown queue {data.to_queue!r}"})
        return
    previous = work.agent_id if work.status == "assigned" else None
    if work.status == "offered":
        await _withdraw(uow, work.offer_id, work.agent_id)
    if previous:
        await _release(uow, previous, work.channel)
        uow.emit(
            c.WorkReleased(
                agent_id=previous, conversation_id=data.conversation_id, channel=work.channel, reason="transferred"
            )
        )
    if data.to_agent:
        cap = await uow.store.reserve_capacity(data.to_agent, work.channel, SIGNED_IN)
        if cap is not None:
            uow.emit(capacity_changed(cap))
            assigned = await uow.store.transfer_to_agent(data.conversation_id, data.to_agent, target_queue.name)
            uow.emit(
                c.WorkAssigned(
                    agent_id=data.to_agent,
                    conversation_id=data.conversation_id,
                    channel=work.channel,
                    queue=target_queue.name,
                    how="transferred",
                    conversation=assigned.arrival if assigned else {},
                    previous_agent_id=previous,
                )
            )
            decide(uow, data.conversation_id, "transferred", {"from": previous, "to_agent": data.to_agent})
            return
        decide(
            uow,
            data.conversation_id,
            "transfer_to_agent_refused",
            {"to_agent": data.to_agent, "reason": "no free capacity; sent to the queue"},
        )
    await uow.store.transfer_to_queue(data.conversation_id, target_queue.name)
    uow.emit(
        c.WorkQueued(
            conversation_id=data.conversation_id,
            channel=work.channel,
            queue=target_queue.name,
            position=1,
            routed_by=f"transfer from {previous or 'queue ' + work.queue}",
        )
    )
    decide(uow, data.conversation_id, "transferred", {"from": previous, "to_queue": target_queue.name})
    uow.flags.add(DRAIN)


async def lock_agents(uow: Uow, payloads: list[c.Payload]) -> None:
    """First in a batch of sessions.v1, conversations.v1 or routing commands: lock the agents its
    handlers will change, in agent order (the store's `lock_agents`). Handlers take each agent in
    the batch's order, and a batch of presence changes takes its agents in agent order: without this,
    two such batches could each hold an agent the other waits for (PostgreSQL breaks the deadlock
    after `deadlock_timeout`, and one batch is retried)."""
    agents: set[str] = set()
    conversations: set[str] = set()
    for p in payloads:
        if isinstance(p, c.OfferAccepted):
            continue  # an acceptance changes the offer and the work, not the agent's row
        agents.update(a for a in (getattr(p, "agent_id", None), getattr(p, "to_agent", None)) if isinstance(a, str))
        if isinstance(p, c.ConversationEnded | c.TransferWork):  # the agent is in the work row
            conversations.add(p.conversation_id)
    if agents or conversations:
        await uow.store.lock_agents(sorted(agents), sorted(conversations))


async def on_presence_changed(uow: Uow, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
    """Kept for the end of the batch (`after_batch`), which projects each agent's latest change at once."""
    held = uow.batch.presence.get(data.agent_id)
    if held is None or held.at <= ev.time:  # as the projection itself: an older change is ignored
        status = data.base or data.status
        uow.batch.presence[data.agent_id] = PresenceUpdate(data.agent_id, status, ev.time, tuple(data.closed_channels))


async def _project_presence(uow: Uow, updates: list[PresenceUpdate]) -> None:
    changes = await uow.store.upsert_presences(updates)
    if not changes:
        return  # all older than what is held
    queues = (await _setup(uow, next(iter(changes.values())).config_version)).queues
    for u in updates:
        change = changes.get(u.agent_id)
        if change is None:
            continue
        reopened = change.previous_closed - set(u.closed_channels)
        if reopened or any(
            u.presence in q.allowed_presences and change.previous not in q.allowed_presences for q in queues.values()
        ):
            uow.flags.add(DRAIN)  # the agent became routable for some queue or channel
            return


async def _release(uow: Uow, agent_id: str, channel: str) -> None:
    cap = await uow.store.release_capacity(agent_id, channel)
    if cap is not None:
        uow.emit(capacity_changed(cap))
        uow.flags.add(DRAIN)  # the freed unit may fit waiting work


@dataclass(frozen=True)
class _Plan:
    waiting: list[domain.WaitingWork]
    choices: list[domain.Choice]
    fetched: int  # waiting rows fetched, and the limit they were fetched with
    fetch_limit: int
    truncated: bool  # the candidate agents filled the limit asked: more may exist beyond it
    candidates: frozenset[str] = frozenset()  # the agents read in idle order (not those loaded by id)


async def _plan(
    uow: Uow,
    queues: dict[str, domain.Queue],
    channels: list[str],
    candidates: int,
    limit: int,
    now: datetime,
    seen: list[domain.WaitingWork] | None = None,
) -> _Plan:
    """Plan over the first `candidates` agents; `seen` is all the waiting work, when already read."""
    store = uow.store
    presences = sorted({p for q in queues.values() for p in q.allowed_presences})
    fetched = await store.list_candidate_agents(presences, channels, candidates)
    truncated = len(fetched) >= candidates
    agents = [a for a in fetched if any(a.blocker(ch) is None for ch in channels)]
    free_slots = sum(max(a.free(ch), 0) for a in agents for ch in channels)
    if free_slots == 0:
        return _Plan([], [], 0, 0, truncated)
    # Fetch a little more than the free slots: some waiting work may fit none of these agents.
    fetch_limit = min(limit, 2 * free_slots + FIRST_WAITING)
    waiting = seen if seen is not None else await store.list_waiting_work(fetch_limit)
    if not waiting:
        return _Plan([], [], 0, fetch_limit, truncated)
    preferred = sorted({w.preferred_agent for w in waiting if w.preferred_agent} - {a.agent_id for a in agents})
    if preferred:  # the index walk may not reach them: load them by id
        agents += [a for a in await store.list_agents_by_id(preferred) if a.presence in presences]
    choices = domain.plan(waiting, queues, agents, now)
    return _Plan(waiting, choices, len(waiting), fetch_limit, truncated, frozenset(a.agent_id for a in fetched))


def _same_as_wider(plan: _Plan) -> bool:
    """A plan over the first longest-idle agents is the plan over more of them when they were all
    there is, or when every waiting item found an exact match among them (or its preferred agent)
    and no agent took two: then each chosen agent precedes all those left out."""
    if not plan.truncated:
        return True
    agents = [ch.agent_id for ch in plan.choices]
    return (
        bool(plan.waiting)
        and len(plan.choices) == len(plan.waiting)
        and len(set(agents)) == len(agents)
        and all(
            ch.reason.get("method") == "preferred_agent"
            or (ch.agent_id in plan.candidates and ch.reason.get("matching") != "closest")
            for ch in plan.choices
        )
    )


def _reservations(choices: list[domain.Choice], queues: dict[str, domain.Queue]) -> list[Reservation]:
    """What each chosen agent takes: its units per channel, in a presence every queue it serves allows."""
    units: dict[str, Counter[str]] = {}
    presences: dict[str, set[str]] = {}
    for choice in choices:
        allowed = set(queues[choice.work.queue].allowed_presences)
        units.setdefault(choice.agent_id, Counter())[choice.work.channel] += 1
        presences[choice.agent_id] = presences.get(choice.agent_id, allowed) & allowed
    return [Reservation(a, dict(u), tuple(sorted(presences[a]))) for a, u in sorted(units.items())]


def _unit_ledgers(choices: list[domain.Choice], taken: dict[str, Capacity]) -> list[Capacity | None]:
    """Each choice's ledger right after its unit (None: its agent got no units), as if reserved one by
    one: capacity.changed tells every unit. Exclusive work is an agent's only unit, so only a last
    unit can hold it."""
    units: dict[str, Counter[str]] = {}
    for choice in choices:
        units.setdefault(choice.agent_id, Counter())[choice.work.channel] += 1
    # per agent that got its units: its ledger before them, and how many are still to tell
    before: dict[str, tuple[dict[str, int], int, int]] = {}
    for agent, ledger in taken.items():
        mine = units.get(agent, Counter())
        used = {ch: n - mine[ch] for ch, n in ledger.used.items()}
        before[agent] = (used, ledger.total_used - mine.total(), mine.total())
    out: list[Capacity | None] = []
    for choice in choices:
        final = taken.get(choice.agent_id)
        if final is None:
            out.append(None)
            continue
        used, total, left = before[choice.agent_id]
        used = {**used, choice.work.channel: used.get(choice.work.channel, 0) + 1}
        before[choice.agent_id] = (used, total + 1, left - 1)
        out.append(Capacity(final.agent_id, used, final.limits, total + 1, final.exclusive_held and left == 1))
    return out


async def drain(uow: Uow, limit: int = 1000) -> int:
    """Work-conserving step: offer the oldest waiting work to agents with free, allowed capacity."""
    uow.flags.add(DRAINED)
    store = uow.store
    # Mostly a few items wait: read them first, and count per channel only when there are more.
    first = await store.list_waiting_work(min(limit, FIRST_WAITING))
    if not first:
        return 0
    seen = first if len(first) < min(limit, FIRST_WAITING) else None
    waiting_by_channel = (
        Counter(w.channel for w in first) if seen else await store.count_waiting_by_channel(WAITING_COUNTED)
    )
    channels = sorted(waiting_by_channel)
    queues = (await _setup(uow)).queues
    now = _now()
    candidates = CANDIDATES_PER_DRAIN
    if all(q.method in IDLE_ORDERED for q in queues.values()):
        # Few waiting: plan over the first longest-idle agents, and over all candidates only when
        # that could change the plan (converting and ranking 500 agents per arrival dominates).
        candidates = min(candidates, max(MIN_CANDIDATES, CANDIDATES_PER_WAITING * sum(waiting_by_channel.values())))
    plan = await _plan(uow, queues, channels, candidates, limit, now, seen)
    if candidates < CANDIDATES_PER_DRAIN and not _same_as_wider(plan):
        plan = await _plan(uow, queues, channels, CANDIDATES_PER_DRAIN, limit, now, seen)
    offers: list[Offer] = []
    assigned: list[tuple[str, str]] = []
    ledgers = _unit_ledgers(plan.choices, await store.reserve_units(_reservations(plan.choices, queues)))
    refused = False
    for choice, cap in zip(plan.choices, ledgers, strict=True):
        queue = queues[choice.work.queue]
        if cap is None:
            refused = True
            continue  # another replica took the slot first; the item stays queued for the next drain
        uow.emit(capacity_changed(cap))
        cid = choice.work.conversation_id
        if choice.auto_accept:
            assigned.append((cid, choice.agent_id))
            uow.emit(
                c.WorkAssigned(
                    agent_id=choice.agent_id,
                    conversation_id=cid,
                    channel=choice.work.channel,
                    queue=queue.name,
                    how="auto_accepted",
                    conversation=choice.work.arrival,
                )
            )
            decide(uow, cid, "assigned", {"agent_id": choice.agent_id, "how": "auto_accepted", **choice.reason})
        else:
            offer = Offer(
                str(uuid.uuid4()),
                cid,
                choice.agent_id,
                choice.work.channel,
                queue.name,
                now + timedelta(seconds=queue.offer_timeout_s),
            )
            offers.append(offer)
            uow.emit(
                c.WorkOffered(
                    agent_id=choice.agent_id,
                    offer_id=offer.offer_id,
                    conversation_id=cid,
                    channel=choice.work.channel,
                    queue=queue.name,
                    expires_at=offer.expires_at,
                    reason=choice.reason,
                    conversation=choice.work.arrival,
                )
            )
            decide(uow, cid, "offered", {"agent_id": choice.agent_id, "offer_id": offer.offer_id, **choice.reason})
    # The waiting rows are locked (FOR UPDATE) by this transaction, so these writes cannot miss.
    await store.mark_offered(offers)
    await store.mark_assigned_many(assigned)
    placed = len(offers) + len(assigned)
    if refused and not placed:
        uow.flags.add(DRAIN_SOON)
    # Another pass may place more only if this one saw part of the waiting work or of the agents,
    # or lost a slot to another replica.
    uow.batch.more = placed > 0 and (
        refused or plan.fetched >= plan.fetch_limit or (plan.truncated and len(plan.choices) < len(plan.waiting))
    )
    return placed


def decide(uow: Uow, conversation_id: str, kind: str, detail: dict[str, Any]) -> None:
    """Record a routing decision for `explain`; written once per transaction by flush_decisions."""
    uow.batch.decisions.append(Decision(conversation_id, kind, detail))


async def flush_decisions(uow: Uow) -> None:
    decisions, uow.batch.decisions = uow.batch.decisions, []
    await uow.store.insert_decisions(decisions)


async def after_batch(uow: Uow) -> None:
    handled, uow.batch.handled = uow.batch.handled, {}
    await uow.store.add_handled(handled)
    presence, uow.batch.presence = uow.batch.presence, {}
    if presence:
        await _project_presence(uow, list(presence.values()))
    await _insert_new_work(uow)
    arrived, uow.batch.arrived = uow.batch.arrived, []
    if arrived:
        await _announce_arrivals(uow, arrived)
    if DRAIN in uow.flags and uow.batch.drain_with_batch:
        # The batch queued work or freed capacity: drain in its own transaction, so an arrival is
        # offered with the commit that queues it (one transaction, one relay cycle, no wake-up of the
        # drain loop in between). The loop is woken only when this pass may have left work to place
        # (`Drainer.on_committed`), and stays the safety net: a pass that fails fails the batch, and
        # the batch is retried.
        await drain(uow, uow.batch.drain_limit)
        if not uow.batch.more:
            uow.flags.discard(DRAIN)
    await flush_decisions(uow)


async def _announce_arrivals(uow: Uow, arrived: list[Arrived]) -> None:
    positions, figures = await uow.store.record_positions(
        [a.conversation_id for a in arrived], sorted({a.queue for a in arrived})
    )
    for queue, f in figures.items():
        uow.batch.figures.setdefault(queue, f)
    for a in arrived:
        position = positions.get(a.conversation_id, 1)
        eta = await _estimated_wait(uow, a.queue, position)
        uow.emit(
            c.WorkQueued(
                conversation_id=a.conversation_id,
                channel=a.channel,
                queue=a.queue,
                position=position,
                estimated_wait_s=eta,
                routed_by=a.routed_by,
            )
        )
        decide(
            uow,
            a.conversation_id,
            "queued",
            {"queue": a.queue, "position": position, "routed_by": a.routed_by, "estimated_wait_s": eta},
        )


async def announce_positions(uow: Uow, limit: int = 2000) -> int:
    """Queue positions and waits as the queue moves: work.queued again for each waiting item whose
    position changed since it was last told. One replica at a time."""
    if not await uow.store.try_lock_positions():
        return 0
    await uow.store.refresh_queue_figures()
    await uow.store.prune_assignments(_now() - ASSIGNMENTS_KEPT)
    changes = await uow.store.list_position_changes(limit)
    for ch in changes:
        eta = await _estimated_wait(uow, ch.queue, ch.position)
        uow.emit(
            c.WorkQueued(
                conversation_id=ch.conversation_id,
                channel=ch.channel,
                queue=ch.queue,
                position=ch.position,
                estimated_wait_s=eta,
                update=True,
            )
        )
    await uow.store.set_last_positions({ch.conversation_id: ch.position for ch in changes})
    return len(changes)


async def expire_offers(uow: Uow, limit: int = 500) -> int:
    """Durable offer timers: pending offers past expires_at are expired and their work re-routed."""
    offers = await uow.store.list_expired_offers(_now(), limit)
    if offers:  # in agent order first, as a batch does (lock_agents): the offers come by expiry
        await uow.store.lock_agents(sorted({o.agent_id for o in offers}))
    for offer in offers:
        await uow.store.end_offer(offer.offer_id, offer.agent_id, "expired")
        await _requeue_after_offer(uow, offer, "expired")
    await flush_decisions(uow)
    return len(offers)


class Drainer:
    """Wakes the drain loop right after a commit that may have freed capacity or queued work.
    Bursts coalesce into one drain; replicas split the waiting work with SKIP LOCKED and the
    store arbitrates each reservation."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.retries = 0  # DRAIN_SOON retries in a row: since the last pass that was not refused

    def request(self) -> None:
        self.wake.set()

    def on_committed(self, uow: Uow) -> None:
        if DRAIN_SOON in uow.flags:
            if self.retries < DRAIN_RETRIES:
                self.retries += 1
                asyncio.get_running_loop().call_later(DRAIN_RETRY_S, self.wake.set)
        elif DRAINED in uow.flags:
            self.retries = 0  # a pass placed work or had none to place: the refusals are over
        if DRAIN in uow.flags:
            self.wake.set()


# --- the steps of the background loops (runtime.periodic), each one transaction ------------------


async def _drain_pass(runtime: RoutingRuntime, limit: int, drainer: Drainer | None) -> tuple[int, bool]:
    try:
        async with runtime.transaction() as uow:
            n = await drain(uow, limit)
            await flush_decisions(uow)
    except Exception:
        if drainer is not None:
            drainer.request()  # work may be waiting: retry right after the loop's back-off
        raise
    if drainer is not None:
        drainer.on_committed(uow)
    return n, uow.batch.more


async def drain_once(runtime: RoutingRuntime, limit: int = 1000, drainer: Drainer | None = None) -> int:
    """One drain pass: how many items it offered or assigned."""
    return (await _drain_pass(runtime, limit, drainer))[0]


async def drain_step(runtime: RoutingRuntime, limit: int = 1000, drainer: Drainer | None = None) -> int:
    """The drain loop's step: positive while another pass at once may place more work (a pass that
    placed everything it could see needs no empty pass after it)."""
    n, more = await _drain_pass(runtime, limit, drainer)
    return n if more else 0


async def expire_once(runtime: RoutingRuntime, drainer: Drainer | None = None) -> int:
    """Expire due offers (replicas split them with SKIP LOCKED); their work is drained again."""
    async with runtime.transaction() as uow:
        n = await expire_offers(uow)
    if n:
        log.info("offers_expired", count=n)
        if drainer is not None:
            drainer.request()
    return n


async def refresh_statistics_once(runtime: RoutingRuntime) -> int:
    """The planner's view of the agents, kept current (`RoutingStore.refresh_agent_statistics`).
    Returns 0: the next check waits for the interval."""
    async with runtime.transaction() as uow:
        if await uow.store.refresh_agent_statistics():
            log.debug("agent_statistics_refreshed")
    return 0


async def announce_once(runtime: RoutingRuntime) -> int:
    """Announce moved positions (and refresh the figures wait estimates use). Returns 0 even when
    it announced: the next pass waits for the interval, however busy the queues are."""
    async with runtime.transaction() as uow:
        n = await announce_positions(uow)
    if n:
        log.debug("positions_announced", count=n)
    return 0
