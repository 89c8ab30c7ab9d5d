"""routing's use cases: one function per event or command, each inside the caller's unit of work."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from routing import domain, store
from routing.store import Q
from shared import contracts as c
from shared.messaging import PoisonMessage, UnitOfWork
from shared.tx import PgTx

log = structlog.get_logger("switchboard.routing")
DRAIN = "drain"
# Longest-idle agents considered per drain pass; the drain loop runs again while it assigns work.
CANDIDATES_PER_DRAIN = 500


def _now() -> datetime:
    return datetime.now(UTC)


def capacity_changed(agent_id: str, row: Any) -> c.CapacityChanged:
    used = {k: int(v) for k, v in row["used"].items()}
    limits = {k: int(v) for k, v in row["limits"].items()}
    # Full: a channel the agent works in is at its limit (3 of 3 chats), or exclusive work is held.
    full_channels = sorted(ch for ch, n in used.items() if n > 0 and n >= limits.get(ch, 0))
    return c.CapacityChanged(
        agent_id=agent_id,
        used=used,
        limits=limits,
        exclusive_held=row["exclusive_held"],
        full=bool(full_channels) or row["exclusive_held"],
        full_channels=full_channels,
        total_used=row["total_used"],
    )


async def _config(uow: UnitOfWork) -> tuple[dict[str, bool], dict[str, domain.Queue]]:
    """Channels and queues, read once per transaction (a batch), so a change applies to the next."""
    if "config" not in uow.batch:
        uow.batch["config"] = (await store.list_channels(uow.conn), await store.list_queues(uow.conn))
        uow.batch["rules"] = (await store.list_rules(uow.conn), await store.list_default_queues(uow.conn))
    config: tuple[dict[str, bool], dict[str, domain.Queue]] = uow.batch["config"]
    return config


async def _queue_figures(uow: UnitOfWork, queue: str) -> tuple[int, float, int, float]:
    """A queue's handled count, handle seconds, staffed slots and arrival rate, read once per
    transaction."""
    key = ("figures", queue)
    if key not in uow.batch:
        stats = await uow.conn.fetchrow(Q.queue_stats, queue)
        assert stats is not None
        uow.batch[key] = (
            stats["handled"],
            stats["handle_seconds"],
            stats["staffed_slots"],
            float(stats["arrivals_per_s"]),
        )
    figures: tuple[int, float, int, float] = uow.batch[key]
    return figures


async def _estimated_wait(uow: UnitOfWork, queue: str, position: int) -> float | None:
    handled, seconds, slots, rate = await _queue_figures(uow, queue)
    return domain.estimated_wait_s(position, handled, seconds, slots, rate)


async def _queue_position(uow: UnitOfWork, queue: str) -> tuple[int, float | None]:
    """Depth of the queue including a new arrival, and its wait: counted once per batch, then kept."""
    key = ("depth", queue)
    if key not in uow.batch:  # counted after this arrival's insert, so it includes it
        uow.batch[key] = await uow.conn.fetchval(Q.queue_depth, queue)
    else:
        uow.batch[key] += 1
    depth: int = uow.batch[key]
    return depth, await _estimated_wait(uow, queue, depth)


def _left_queue(uow: UnitOfWork, queue: str) -> None:
    if ("depth", queue) in uow.batch:
        uow.batch[("depth", queue)] -= 1


async def on_conversation_arrived(uow: UnitOfWork, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
    conn = uow.conn
    channels, queues = await _config(uow)
    rules, defaults = uow.batch["rules"]
    if data.channel not in channels:
        raise PoisonMessage(
            f"unknown channel {data.channel!r} for conversation {data.conversation_id}; "
            f"configured channels: {', '.join(sorted(channels)) or '(none)'}"
        )
    arrival = data.model_dump(mode="json", exclude_none=True)
    queue, why = domain.route_to_queue(arrival, list(queues.values()), rules, defaults)
    if queue is None:
        raise PoisonMessage(f"{why}; add a queue or a default queue to the routing configuration")
    if not await store.insert_work(
        conn, data.conversation_id, data.channel, queue.name, data.priority, arrival, ev.time
    ):
        log.info("duplicate_arrival", conversation_id=data.conversation_id)
        return
    depth, eta = await _queue_position(uow, queue.name)
    overflow = domain.overflow_on_arrival(queue, depth, eta, _now())
    if overflow:
        queue, depth, eta = await _overflow(uow, data.conversation_id, queue, queues, overflow, depth, eta)
    # work.queued is emitted at the end of the batch, with the position in arrival-time order
    # (a batch mixes partitions, so the order of inserts is not the order of arrival).
    uow.batch.setdefault("arrived", []).append((data.conversation_id, data.channel, queue.name, why))
    uow.flags.add(DRAIN)


async def _overflow(
    uow: UnitOfWork,
    conversation_id: str,
    queue: domain.Queue,
    queues: dict[str, domain.Queue],
    reason: str,
    depth: int,
    eta: float | None,
) -> tuple[domain.Queue, int, float | None]:
    """Move a waiting item to the queue's fallback (or mark and keep it); every move is an event."""
    rules = queue.overflow or {}
    target = queues.get(rules.get("to_queue") or "")
    if rules.get("action", "move") == "move" and target is not None:
        await uow.conn.execute(Q.move_work, conversation_id, target.name)
        _left_queue(uow, queue.name)
        uow.emit(
            c.WorkOverflowed(
                conversation_id=conversation_id, from_queue=queue.name, to_queue=target.name, reason=reason
            )
        )
        decide(uow, conversation_id, "overflowed", {"from": queue.name, "to": target.name, "reason": reason})
        depth, eta = await _queue_position(uow, target.name)
        return target, depth, eta
    await uow.conn.execute(Q.mark_overflowed, conversation_id)
    uow.emit(
        c.WorkOverflowed(
            conversation_id=conversation_id, from_queue=queue.name, to_queue=None, reason=f"{reason} (kept waiting)"
        )
    )
    decide(uow, conversation_id, "overflowed", {"from": queue.name, "kept": True, "reason": reason})
    return queue, depth, eta


async def on_conversation_ended(uow: UnitOfWork, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
    conn = uow.conn
    work = await conn.fetchrow(Q.get_work, data.conversation_id)
    if work is None:
        return
    if work["status"] == "queued":
        await conn.execute(Q.end_waiting_work, data.conversation_id)
        decide(uow, data.conversation_id, "ended_while_queued", {})
    elif work["status"] == "offered":
        offer = await conn.fetchrow(Q.end_offer, work["offer_id"], work["agent_id"], "withdrawn")
        await conn.execute(
            "UPDATE work_items SET status = 'ended', updated_at = now() WHERE conversation_id = $1",
            data.conversation_id,
        )
        if offer:
            await _release(uow, offer["agent_id"], offer["channel"])
            _offer_ended(uow, offer, "withdrawn")


def _offer_ended(uow: UnitOfWork, offer: Any, cause: str) -> None:
    """An offer is over before acceptance (expired, rejected or withdrawn): say so on routing.v1."""
    uow.emit(
        c.WorkOfferExpired(
            agent_id=offer["agent_id"],
            offer_id=offer["offer_id"],
            conversation_id=offer["conversation_id"],
            channel=offer["channel"],
            expires_at=offer["expires_at"],
            cause=cause,
        )
    )  # type: ignore[arg-type]


async def on_offer_accepted(uow: UnitOfWork, ev: c.CloudEvent, data: c.OfferAccepted) -> None:
    conn = uow.conn
    offer = await conn.fetchrow(Q.accept_offer, data.offer_id, data.agent_id, _now())
    if offer is None:
        # Expired, withdrawn or someone else's: the offer is gone, so no session opens.
        decide(uow, data.conversation_id, "late_accept_ignored", {"agent_id": data.agent_id, "offer_id": data.offer_id})
        return
    work = await conn.fetchrow(Q.mark_assigned, offer["conversation_id"], data.agent_id, data.offer_id, ["offered"])
    if work is None:
        return
    uow.emit(
        c.WorkAssigned(
            agent_id=data.agent_id,
            conversation_id=work["conversation_id"],
            channel=work["channel"],
            queue=work["queue"],
            offer_id=data.offer_id,
            how="accepted",
            conversation=work["arrival"],
        )
    )
    decide(uow, data.conversation_id, "assigned", {"agent_id": data.agent_id, "how": "accepted"})


async def on_offer_rejected(uow: UnitOfWork, ev: c.CloudEvent, data: c.OfferRejected) -> None:
    offer = await uow.conn.fetchrow(Q.end_offer, data.offer_id, data.agent_id, "rejected")
    if offer is not None:
        await _requeue_after_offer(uow, offer, "rejected")


async def _requeue_after_offer(uow: UnitOfWork, offer: Any, cause: str) -> None:
    conn = uow.conn
    await _release(uow, offer["agent_id"], offer["channel"])
    work = await conn.fetchrow(Q.requeue_work, offer["conversation_id"], offer["agent_id"], offer["offer_id"])
    _offer_ended(uow, offer, cause)
    if work is not None:
        uow.emit(
            c.WorkRequeued(
                conversation_id=work["conversation_id"],
                channel=work["channel"],
                queue=work["queue"],
                reason=f"offer {cause} by {offer['agent_id']}",
            )
        )
        _, queues = await _config(uow)
        queue = queues.get(work["queue"])
        limit = (queue.overflow or {}).get("max_failed_offers") if queue else None
        if queue and limit and work["failed_offers"] >= int(limit) and not work["overflowed"]:
            await _overflow(
                uow, work["conversation_id"], queue, queues, f"{work['failed_offers']} offers not accepted", 0, None
            )
    decide(uow, offer["conversation_id"], f"offer_{cause}", {"agent_id": offer["agent_id"]})
    uow.flags.add(DRAIN)


async def on_session_closed(uow: UnitOfWork, ev: c.CloudEvent, data: c.SessionClosed) -> None:
    if not data.conversation_id:
        return
    conn = uow.conn
    work = await conn.fetchrow(Q.close_work, data.conversation_id, data.agent_id)
    if work is None:
        return
    await _release(uow, data.agent_id, work["channel"])
    uow.emit(
        c.WorkReleased(
            agent_id=data.agent_id,
            conversation_id=data.conversation_id,
            channel=work["channel"],
            reason="session_closed",
        )
    )
    if work["assigned_at"] is not None:
        await conn.execute(Q.record_handle_time, work["queue"], (_now() - work["assigned_at"]).total_seconds())
    decide(uow, data.conversation_id, "released", {"agent_id": data.agent_id})
    uow.flags.add(DRAIN)


async def on_pick_work(uow: UnitOfWork, ev: c.CloudEvent, data: c.PickWork) -> None:
    """An agent picks a waiting item: assigned at once when the agent has capacity for it."""
    conn = uow.conn

    def refuse(reason: str) -> None:
        uow.emit(
            c.WorkPickRefused(
                agent_id=data.agent_id,
                conversation_id=data.conversation_id,
                command_id=data.command_id or ev.id,
                reason=reason,
            )
        )

    work = await conn.fetchrow(Q.get_work, data.conversation_id)
    if work is None:
        return refuse(f"routing has no conversation {data.conversation_id!r}")
    if work["status"] != "queued":
        return refuse(f"conversation {data.conversation_id!r} is {work['status']}, not waiting in a queue")
    _, queues = await _config(uow)
    queue = queues.get(work["queue"])
    agent = await conn.fetchrow("SELECT queues, presence FROM agents WHERE agent_id = $1", data.agent_id)
    if agent is None or queue is None or queue.name not in agent["queues"]:
        return refuse(f"{data.agent_id} does not serve queue {work['queue']!r}")
    # A deliberate pick is allowed in any signed-in presence (an agent away from offers may still
    # pick); capacity and exclusivity are enforced exactly as for offers.
    signed_in = [p for p in c.BASE_PRESENCES if p != "offline"]
    row = await store.reserve_capacity(conn, data.agent_id, work["channel"], signed_in)
    if row is None:
        return refuse(f"no free {work['channel']} capacity (presence {agent['presence']})")
    uow.emit(capacity_changed(data.agent_id, row))
    assigned = await conn.fetchrow(Q.mark_assigned, data.conversation_id, data.agent_id, None, ["queued"])
    uow.emit(
        c.WorkAssigned(
            agent_id=data.agent_id,
            conversation_id=data.conversation_id,
            channel=work["channel"],
            queue=work["queue"],
            how="picked",
            conversation=assigned["arrival"] if assigned else {},
        )
    )
    decide(uow, data.conversation_id, "assigned", {"agent_id": data.agent_id, "how": "picked"})
    return None


async def on_transfer_work(uow: UnitOfWork, ev: c.CloudEvent, data: c.TransferWork) -> None:
    """Move assigned work to a queue (it keeps its place in line) or straight to an agent with
    capacity (else to the queue); the conversation keeps its history and decisions."""
    conn = uow.conn
    work = await conn.fetchrow(Q.get_work, data.conversation_id)
    if work is None or work["status"] not in ("assigned", "queued", "offered"):
        decide(uow, data.conversation_id, "transfer_ignored", {"status": work["status"] if work else None})
        return
    _, queues = await _config(uow)
    target_queue = queues.get(data.to_queue or work["queue"]) or queues.get(work["queue"])
    if target_queue is None:
        decide(uow, data.conversation_id, "transfer_ignored", {"reason": f"unknown queue {data.to_queue!r}"})
        return
    previous = work["agent_id"] if work["status"] == "assigned" else None
    if work["status"] == "offered":
        offer = await conn.fetchrow(Q.end_offer, work["offer_id"], work["agent_id"], "withdrawn")
        if offer is not None:
            await _release(uow, offer["agent_id"], offer["channel"])
            _offer_ended(uow, offer, "withdrawn")
    if previous:
        await _release(uow, previous, work["channel"])
        uow.emit(
            c.WorkReleased(
                agent_id=previous, conversation_id=data.conversation_id, channel=work["channel"], reason="transferred"
            )
        )
    if data.to_agent:
        row = await store.reserve_capacity(
            conn, data.to_agent, work["channel"], [p for p in c.BASE_PRESENCES if p != "offline"]
        )
        if row is not None:
            uow.emit(capacity_changed(data.to_agent, row))
            assigned = await conn.fetchrow(Q.transfer_to_agent, data.conversation_id, data.to_agent, target_queue.name)
            uow.emit(
                c.WorkAssigned(
                    agent_id=data.to_agent,
                    conversation_id=data.conversation_id,
                    channel=work["channel"],
                    queue=target_queue.name,
                    how="transferred",
                    conversation=assigned["arrival"] if assigned else {},
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
    await conn.execute(Q.transfer_to_queue, data.conversation_id, target_queue.name)
    uow.emit(
        c.WorkQueued(
            conversation_id=data.conversation_id,
            channel=work["channel"],
            queue=target_queue.name,
            position=1,
            routed_by=f"transfer from {previous or 'queue ' + work['queue']}",
        )
    )
    decide(uow, data.conversation_id, "transferred", {"from": previous, "to_queue": target_queue.name})
    uow.flags.add(DRAIN)


async def on_presence_changed(uow: UnitOfWork, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
    status = data.base or data.status
    row = await uow.conn.fetchrow(Q.upsert_presence, data.agent_id, status, ev.time, data.closed_channels)
    if row is None:
        return  # an older change than the one we hold
    previous = row["previous"]
    _, queues = await _config(uow)
    reopened = set(row["previous_closed"]) - set(data.closed_channels)
    if reopened or any(status in q.allowed_presences and previous not in q.allowed_presences for q in queues.values()):
        uow.flags.add(DRAIN)  # the agent became routable for some queue or channel


async def _release(uow: UnitOfWork, agent_id: str, channel: str) -> None:
    row = await store.release_capacity(uow.conn, agent_id, channel)
    if row is not None:
        uow.emit(capacity_changed(agent_id, row))


async def drain(uow: UnitOfWork, limit: int = 1000) -> int:
    """Work-conserving step: offer the oldest waiting work to agents with free, allowed capacity."""
    conn = uow.conn
    channels = [r["channel"] for r in await conn.fetch(Q.list_waiting_channels)]
    if not channels:
        return 0
    _, queues = await _config(uow)
    presences = sorted({p for q in queues.values() for p in q.allowed_presences})
    agents = [
        a
        for a in await store.list_candidate_agents(conn, presences, channels, CANDIDATES_PER_DRAIN)
        if any(a.blocker(ch) is None for ch in channels)
    ]
    free_slots = sum(max(a.free(ch), 0) for a in agents for ch in channels)
    if free_slots == 0:
        return 0
    # Fetch a little more than the free slots: some waiting work may fit none of these agents.
    waiting = await store.list_waiting_work(conn, min(limit, 2 * free_slots + 50))
    if not waiting:
        return 0
    preferred = sorted({w.preferred_agent for w, _ in waiting if w.preferred_agent} - {a.agent_id for a in agents})
    if preferred:  # the index walk may not reach them: load them by id
        agents += [a for a in await store.list_agents_by_id(conn, preferred) if a.presence in presences]
    arrivals = {w.conversation_id: arrival for w, arrival in waiting}
    now = _now()
    offers, offered_items, assigned_items = [], [], []
    for choice in domain.plan([w for w, _ in waiting], queues, agents, now):
        queue = queues[choice.work.queue]
        row = await store.reserve_capacity(conn, choice.agent_id, choice.work.channel, list(queue.allowed_presences))
        if row is None:
            continue  # another replica took the slot first; the item stays queued for the next drain
        uow.emit(capacity_changed(choice.agent_id, row))
        cid = choice.work.conversation_id
        if choice.auto_accept:
            assigned_items.append((cid, choice.agent_id, None, ["queued"]))
            uow.emit(
                c.WorkAssigned(
                    agent_id=choice.agent_id,
                    conversation_id=cid,
                    channel=choice.work.channel,
                    queue=queue.name,
                    how="auto_accepted",
                    conversation=arrivals[cid],
                )
            )
            decide(uow, cid, "assigned", {"agent_id": choice.agent_id, "how": "auto_accepted", **choice.reason})
        else:
            offer_id = str(uuid.uuid4())
            expires = now + timedelta(seconds=queue.offer_timeout_s)
            offered_items.append((cid, choice.agent_id, offer_id))
            offers.append((offer_id, cid, choice.agent_id, choice.work.channel, queue.name, expires))
            uow.emit(
                c.WorkOffered(
                    agent_id=choice.agent_id,
                    offer_id=offer_id,
                    conversation_id=cid,
                    channel=choice.work.channel,
                    queue=queue.name,
                    expires_at=expires,
                    reason=choice.reason,
                    conversation=arrivals[cid],
                )
            )
            decide(uow, cid, "offered", {"agent_id": choice.agent_id, "offer_id": offer_id, **choice.reason})
    # The waiting rows are locked (FOR UPDATE) by this transaction, so these writes cannot miss.
    if offered_items:
        await conn.executemany(Q.mark_offered, offered_items)
        await conn.executemany(Q.insert_offer, offers)
    if assigned_items:
        await conn.executemany(Q.mark_assigned, assigned_items)
    return len(offered_items) + len(assigned_items)


def decide(uow: UnitOfWork, conversation_id: str, kind: str, detail: dict[str, Any]) -> None:
    """Record a routing decision for `explain`; written once per transaction by flush_decisions."""
    uow.batch.setdefault("decisions", [])
    uow.batch["decisions"].append((conversation_id, kind, detail))


async def flush_decisions(uow: UnitOfWork) -> None:
    rows = uow.batch.pop("decisions", None)
    if rows:
        await uow.conn.executemany(Q.insert_decision, rows)


async def after_batch(uow: UnitOfWork) -> None:
    arrived = uow.batch.pop("arrived", None)
    if arrived:
        await _announce_arrivals(uow, arrived)
    await flush_decisions(uow)


async def _announce_arrivals(uow: UnitOfWork, arrived: list[tuple[str, str, str, str]]) -> None:
    rows = await uow.conn.fetch(Q.positions_of, [a[0] for a in arrived], sorted({a[2] for a in arrived}))
    positions = {r["conversation_id"]: r["position"] for r in rows}
    for cid, channel, queue, why in arrived:
        position = positions.get(cid, 1)
        eta = await _estimated_wait(uow, queue, position)
        uow.emit(
            c.WorkQueued(
                conversation_id=cid,
                channel=channel,
                queue=queue,
                position=position,
                estimated_wait_s=eta,
                routed_by=why,
            )
        )
        decide(uow, cid, "queued", {"queue": queue, "position": position, "routed_by": why, "estimated_wait_s": eta})
    await uow.conn.execute(Q.set_last_positions, list(positions), list(positions.values()))


async def announce_positions(uow: UnitOfWork, limit: int = 2000) -> int:
    """Queue positions and waits as the queue moves: work.queued again for each waiting item whose
    position changed since it was last told. One replica at a time (transaction advisory lock)."""
    if not await uow.conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('routing.positions'))"):
        return 0
    await uow.conn.execute(Q.refresh_queue_figures)
    rows = await uow.conn.fetch(Q.list_position_changes, limit)
    for r in rows:
        eta = await _estimated_wait(uow, r["queue"], r["position"])
        uow.emit(
            c.WorkQueued(
                conversation_id=r["conversation_id"],
                channel=r["channel"],
                queue=r["queue"],
                position=r["position"],
                estimated_wait_s=eta,
                update=True,
            )
        )
    if rows:
        await uow.conn.execute(
            Q.set_last_positions, [r["conversation_id"] for r in rows], [r["position"] for r in rows]
        )
    return len(rows)


async def run_position_updates(runtime: Any, interval_s: float) -> None:
    first = True
    while True:
        if not first:
            await asyncio.sleep(interval_s)
        first = False  # at start: refresh the queue figures the wait estimates use
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                uow = runtime.unit_of_work(PgTx(conn))
                await announce_positions(uow)
                await uow.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("position_updates_error", error=repr(exc))


class Drainer:
    """One drain loop per routing process, woken right after a commit that may have freed capacity
    or queued work (and at start, to resync). Bursts coalesce into one drain; replicas split the
    waiting work with SKIP LOCKED and Postgres arbitrates each reservation."""

    def __init__(self, runtime: Any, limit: int = 1000, safety_interval_s: float = 5.0) -> None:
        self.runtime = runtime
        self.limit = limit
        self.safety_interval_s = safety_interval_s
        self._wake = asyncio.Event()
        self.passes = 0

    def request(self) -> None:
        self._wake.set()

    def on_committed(self, uow: UnitOfWork) -> None:
        if DRAIN in uow.flags:
            self._wake.set()

    async def run(self) -> None:

        self._wake.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.safety_interval_s)
            self._wake.clear()
            try:
                while True:
                    async with self.runtime.pool.acquire() as conn, conn.transaction():
                        uow = self.runtime.unit_of_work(PgTx(conn))
                        n = await drain(uow, self.limit)
                        await flush_decisions(uow)
                        await uow.flush()
                    self.passes += 1
                    if n == 0:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("drain_error", error=repr(exc))
                await asyncio.sleep(0.5)
                self._wake.set()


async def expire_offers(uow: UnitOfWork, limit: int = 500) -> int:
    """Durable offer timers: pending offers past expires_at are expired and their work re-routed."""
    rows = await uow.conn.fetch(Q.list_expired_offers, _now(), limit)
    for offer in rows:
        await uow.conn.execute("UPDATE offers SET status = 'expired' WHERE offer_id = $1", offer["offer_id"])
        await _requeue_after_offer(uow, offer, "expired")
    await flush_decisions(uow)
    return len(rows)


async def run_offer_timer(runtime: Any, interval_s: float, drainer: Drainer) -> None:
    """Background loop of one routing instance; replicas split expired offers with SKIP LOCKED."""

    while True:
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                uow = runtime.unit_of_work(PgTx(conn))
                n = await expire_offers(uow)
                await uow.flush()
            if n:
                log.info("offers_expired", count=n)
                drainer.request()
                continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("offer_timer_error", error=repr(exc))
        await asyncio.sleep(interval_s)
