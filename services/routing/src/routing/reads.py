"""What routing's HTTP reads answer (GET /queues, /agents, /work): the supervisor's view and the
agent's Home. Each read runs on one snapshot of the store (`runtime.reading()`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from routing import domain
from routing.store import OpenWork, QueueActivity, RoutingStore

# The window of the queue figures named `*_15m`.
WINDOW = timedelta(minutes=15)
# GET /work answers at most this many items (oldest first) unless asked for fewer.
MAX_WORK = 2000
STATES = {"queued": "waiting", "offered": "offered", "assigned": "assigned"}


def _seconds(later: datetime, earlier: datetime) -> float:
    return round(max((later - earlier).total_seconds(), 0.0), 1)


def queue_item(a: QueueActivity, channels: tuple[str, ...], now: datetime) -> dict[str, Any]:
    """One queue: waiting now (queued or offered, not yet answered), the wait a new arrival can
    expect (the estimate work.queued carries), and the last 15 minutes."""
    f = a.figures
    return {
        "name": a.queue,
        "channels": list(channels),
        "waiting": a.queued + a.offered_now,
        "longest_wait_s": _seconds(now, a.oldest_waiting_at) if a.oldest_waiting_at else 0.0,
        "estimated_wait_s": domain.estimated_wait_s(
            a.queued + 1, f.handled, f.handle_seconds, f.staffed_slots, f.arrivals_per_s
        ),
        "offered_15m": a.offered,
        "assigned_15m": a.assigned,
        "abandoned_15m": a.abandoned,
        "overflowed_15m": a.overflowed,
        "service_level": round(a.assigned_in_time / a.assigned, 3) if a.assigned else None,
        "service_level_threshold_s": a.service_level_s,
    }


async def queues(store: RoutingStore, now: datetime) -> dict[str, Any]:
    configured = await store.list_queues()
    activity = await store.list_queue_activity(now - WINDOW)
    return {
        "server_time": now.isoformat(),
        "queues": [queue_item(a, configured[a.queue].channels if a.queue in configured else (), now) for a in activity],
    }


def agent_item(a: domain.AgentView) -> dict[str, Any]:
    channels = sorted(set(a.limits) | {ch for ch, n in a.used.items() if n})
    return {
        "agent_id": a.agent_id,
        "presence": a.presence,
        "queues": sorted(a.queues),
        "capacity": {ch: {"used": a.used.get(ch, 0), "limit": a.limits.get(ch, 0)} for ch in channels},
        "exclusive_held": a.exclusive_held,
        "total_used": a.total_used,
    }


async def agents(store: RoutingStore) -> dict[str, Any]:
    return {"agents": [agent_item(a) for a in await store.list_agents()]}


async def agent(store: RoutingStore, agent_id: str) -> dict[str, Any] | None:
    found = await store.list_agents_by_id([agent_id])
    return agent_item(found[0]) if found else None


def work_item(w: OpenWork, now: datetime) -> dict[str, Any]:
    """waited_s: arrival to assignment (to now while not assigned); handle_s: since the latest
    assignment (null until assigned)."""
    customer = w.arrival.get("customer") or {}
    assigned = w.status == "assigned" and w.assigned_at is not None
    return {
        "conversation_id": w.conversation_id,
        "channel": w.channel,
        "queue": w.queue,
        "state": STATES.get(w.status, w.status),
        "agent_id": w.agent_id,
        "customer_name": customer.get("name") if isinstance(customer, dict) else None,
        "subject": w.arrival.get("subject"),
        "priority": w.priority,
        "arrived_at": w.enqueued_at.isoformat(),
        "assigned_at": w.assigned_at.isoformat() if assigned and w.assigned_at else None,
        "waited_s": _seconds(w.assigned_at if assigned and w.assigned_at else now, w.enqueued_at),
        "handle_s": _seconds(now, w.assigned_at) if assigned and w.assigned_at else None,
        "overflowed": w.overflowed,
        "transfers": w.transfers,
    }


async def work(store: RoutingStore, now: datetime, limit: int = MAX_WORK) -> dict[str, Any]:
    return {"work": [work_item(w, now) for w in await store.list_open_work(min(max(limit, 1), MAX_WORK))]}
