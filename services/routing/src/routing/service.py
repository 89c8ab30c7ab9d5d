"""routing's use cases: one function per event or command, each inside the caller's unit of work."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from routing import domain
from routing.store import Capacity, Decision, Offer, QueueFigures, RoutingStore
from shared import contracts as c
from shared.messaging import PoisonMessage, UnitOfWork
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.routing")
DRAIN = "drain"
# Longest-idle agents considered per drain pass; the drain loop runs again while it assigns work.
CANDIDATES_PER_DRAIN = 500
# How long the log of assignments (the supervisor's assigned count and service level) is kept.
ASSIGNMENTS_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class Setup:
    """The configuration routing acts on, read once per transaction so a change applies to the next."""

    channels: dict[str, bool]
    queues: dict[str, domain.Queue]
    rules: list[domain.Rule]
    default_queues: dict[str, str]


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
    depth: dict[str, int] = field(default_factory=dict)  # waiting per queue, counted once then kept
    figures: dict[str, QueueFigures] = field(default_factory=dict)
    arrived: list[Arrived] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


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


async def _setup(uow: Uow) -> Setup:
    if uow.batch.setup is None:
        store = uow.store
        uow.batch.setup = Setup(
            await store.list_channels(),
            await store.list_queues(),
            await store.list_rules(),
            await store.list_default_queues(),
        )
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
    if not await uow.store.insert_work(data.conversation_id, data.channel, queue.name, data.priority, arrival, ev.time):
        log.info("duplicate_arrival", conversation_id=data.conversation_id)
        return
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


async def on_conversation_ended(uow: Uow, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
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
    offer = await uow.store.accept_offer(data.offer_id, data.agent_id, _now())
    if offer is None:
        # Expired, withdrawn or someone else's: the offer is gone, so no session opens.
        decide(uow, data.conversation_id, "late_accept_ignored", {"agent_id": data.agent_id, "offer_id": data.offer_id})
        return
    work = await uow.store.mark_assigned(offer.conversation_id, data.agent_id, data.offer_id, ["offered"])
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
    decide(uow, data.conversation_id, "assigned", {"agent_id": data.agent_id, "how": "accepted"})


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
    work = await uow.store.close_work(data.conversation_id, data.agent_id)
    if work is None:
        return
    await _release(uow, data.agent_id, work.channel)
    uow.emit(
        c.WorkReleased(
            agent_id=data.agent_id,
            conversation_id=data.conversation_id,
            channel=work.channel,
            reason="session_closed",
        )
    )
    if work.assigned_at is not None:
        await uow.store.record_handle_time(work.queue, (_now() - work.assigned_at).total_seconds())
    decide(uow, data.conversation_id, "released", {"agent_id": data.agent_id})
    uow.flags.add(DRAIN)


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


async def on_presence_changed(uow: Uow, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
    status = data.base or data.status
    change = await uow.store.upsert_presence(data.agent_id, status, ev.time, data.closed_channels)
    if change is None:
        return  # an older change than the one we hold
    queues = (await _setup(uow)).queues
    reopened = change.previous_closed - set(data.closed_channels)
    if reopened or any(
        status in q.allowed_presences and change.previous not in q.allowed_presences for q in queues.values()
    ):
        uow.flags.add(DRAIN)  # the agent became routable for some queue or channel


async def _release(uow: Uow, agent_id: str, channel: str) -> None:
    cap = await uow.store.release_capacity(agent_id, channel)
    if cap is not None:
        uow.emit(capacity_changed(cap))


async def drain(uow: Uow, limit: int = 1000) -> int:
    """Work-conserving step: offer the oldest waiting work to agents with free, allowed capacity."""
    store = uow.store
    channels = await store.list_waiting_channels()
    if not channels:
        return 0
    queues = (await _setup(uow)).queues
    presences = sorted({p for q in queues.values() for p in q.allowed_presences})
    agents = [
        a
        for a in await store.list_candidate_agents(presences, channels, CANDIDATES_PER_DRAIN)
        if any(a.blocker(ch) is None for ch in channels)
    ]
    free_slots = sum(max(a.free(ch), 0) for a in agents for ch in channels)
    if free_slots == 0:
        return 0
    # Fetch a little more than the free slots: some waiting work may fit none of these agents.
    waiting = await store.list_waiting_work(min(limit, 2 * free_slots + 50))
    if not waiting:
        return 0
    preferred = sorted({w.preferred_agent for w in waiting if w.preferred_agent} - {a.agent_id for a in agents})
    if preferred:  # the index walk may not reach them: load them by id
        agents += [a for a in await store.list_agents_by_id(preferred) if a.presence in presences]
    now = _now()
    offers: list[Offer] = []
    assigned: list[tuple[str, str]] = []
    for choice in domain.plan(waiting, queues, agents, now):
        queue = queues[choice.work.queue]
        cap = await store.reserve_capacity(choice.agent_id, choice.work.channel, queue.allowed_presences)
        if cap is None:
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
    return len(offers) + len(assigned)


def decide(uow: Uow, conversation_id: str, kind: str, detail: dict[str, Any]) -> None:
    """Record a routing decision for `explain`; written once per transaction by flush_decisions."""
    uow.batch.decisions.append(Decision(conversation_id, kind, detail))


async def flush_decisions(uow: Uow) -> None:
    decisions, uow.batch.decisions = uow.batch.decisions, []
    await uow.store.insert_decisions(decisions)


async def after_batch(uow: Uow) -> None:
    arrived, uow.batch.arrived = uow.batch.arrived, []
    if arrived:
        await _announce_arrivals(uow, arrived)
    await flush_decisions(uow)


async def _announce_arrivals(uow: Uow, arrived: list[Arrived]) -> None:
    positions = await uow.store.list_positions([a.conversation_id for a in arrived], sorted({a.queue for a in arrived}))
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
    await uow.store.set_last_positions(positions)


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

    def request(self) -> None:
        self.wake.set()

    def on_committed(self, uow: Uow) -> None:
        if DRAIN in uow.flags:
            self.wake.set()


# --- the steps of the background loops (runtime.periodic), each one transaction ------------------


async def drain_once(runtime: RoutingRuntime, limit: int = 1000, drainer: Drainer | None = None) -> int:
    """One drain pass; the loop runs it again at once while it places work."""
    try:
        async with runtime.transaction() as uow:
            n = await drain(uow, limit)
            await flush_decisions(uow)
    except Exception:
        if drainer is not None:
            drainer.request()  # work may be waiting: retry right after the loop's back-off
        raise
    return n


async def expire_once(runtime: RoutingRuntime, drainer: Drainer | None = None) -> int:
    """Expire due offers (replicas split them with SKIP LOCKED); their work is drained again."""
    async with runtime.transaction() as uow:
        n = await expire_offers(uow)
    if n:
        log.info("offers_expired", count=n)
        if drainer is not None:
            drainer.request()
    return n


async def announce_once(runtime: RoutingRuntime) -> int:
    """Announce moved positions (and refresh the figures wait estimates use). Returns 0 even when
    it announced: the next pass waits for the interval, however busy the queues are."""
    async with runtime.transaction() as uow:
        n = await announce_positions(uow)
    if n:
        log.debug("positions_announced", count=n)
    return 0
