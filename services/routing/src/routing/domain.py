"""Routing rules as plain functions over plain data: which queue, which agent, how long a wait.

Nothing here does IO. The store enforces capacity again in Postgres (the source of truth under
concurrency); these functions decide whom to try first and explain why.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

DEFAULT_OFFER_TIMEOUT_S = 120
METHODS = ("longest_idle",)


@dataclass(frozen=True)
class Queue:
    name: str
    channels: tuple[str, ...]
    method: str = "longest_idle"
    allowed_presences: tuple[str, ...] = ("available", "busy")
    priority: int = 0
    offer_timeout_s: int = DEFAULT_OFFER_TIMEOUT_S


@dataclass(frozen=True)
class AgentView:
    agent_id: str
    presence: str
    queues: frozenset[str]
    limits: dict[str, int]
    used: dict[str, int] = field(default_factory=dict)
    exclusive: frozenset[str] = frozenset()
    auto_accept: frozenset[str] = frozenset()
    total_used: int = 0
    exclusive_held: bool = False
    idle_since: datetime | None = None
    closed_channels: frozenset[str] = frozenset()

    def free(self, channel: str) -> int:
        return self.limits.get(channel, 0) - self.used.get(channel, 0)

    def blocker(self, channel: str) -> str | None:
        """Why this agent cannot take one more unit of `channel` now (None: it can)."""
        if self.exclusive_held:
            return "exclusive_work_held"
        if channel in self.closed_channels:
            return "channel_closed"
        if self.limits.get(channel, 0) <= 0:
            return "channel_not_in_profile"
        if self.free(channel) <= 0:
            return "no_capacity"
        if channel in self.exclusive and self.total_used > 0:
            return "exclusive_needs_idle_agent"
        return None

    def taking(self, channel: str, at: datetime) -> AgentView:
        used = dict(self.used)
        used[channel] = used.get(channel, 0) + 1
        return replace(
            self,
            used=used,
            total_used=self.total_used + 1,
            exclusive_held=self.exclusive_held or channel in self.exclusive,
            idle_since=at,
        )


@dataclass(frozen=True)
class WaitingWork:
    conversation_id: str
    channel: str
    queue: str
    enqueued_at: datetime
    priority: int = 0
    passed_by: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Choice:
    work: WaitingWork
    agent_id: str
    auto_accept: bool
    reason: dict[str, object]


def route_to_queue(channel: str, queues: Sequence[Queue]) -> Queue | None:
    """The first queue (by priority, then name) that serves the channel."""
    serving = [q for q in queues if channel in q.channels]
    return min(serving, key=lambda q: (-q.priority, q.name)) if serving else None


def choose_agent(
    work: WaitingWork, queue: Queue, agents: Iterable[AgentView]
) -> tuple[AgentView | None, dict[str, object]]:
    """Pick the agent for one work item by the queue's method; say why the others were passed over."""
    passed: Counter[str] = Counter()
    eligible: list[AgentView] = []
    for agent in agents:
        why = _ineligible(agent, queue, work)
        if why:
            passed[why] += 1
        else:
            eligible.append(agent)
    reason: dict[str, object] = {"method": queue.method, "candidates": len(eligible), "passed_over": dict(passed)}
    if not eligible:
        return None, reason
    best = min(eligible, key=_longest_idle_key)
    reason["why"] = f"idle since {best.idle_since.isoformat() if best.idle_since else 'never assigned'}"
    return best, reason


def _longest_idle_key(a: AgentView) -> tuple[float, str]:
    return (a.idle_since.timestamp() if a.idle_since else float("-inf"), a.agent_id)


def plan(
    waiting: Sequence[WaitingWork], queues: dict[str, Queue], agents: Sequence[AgentView], now: datetime
) -> list[Choice]:
    """Offer waiting work oldest first to the agents that can take it, updating their load as we go.

    One heap of eligible agents per (queue, channel), ordered by the queue's method and validated
    lazily against the agents' current load, so planning k items over n agents costs
    O(n + k log n) instead of O(k * n).
    """
    pool = {a.agent_id: a for a in agents}
    groups: dict[tuple[str, str], _Group] = {}
    choices: list[Choice] = []
    for work in sorted(waiting, key=lambda w: (w.enqueued_at, w.conversation_id)):
        queue = queues.get(work.queue)
        if queue is None:
            continue
        key = (queue.name, work.channel)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group.build(queue, work.channel, pool.values())
        agent = group.pop(pool, work)
        if agent is None:
            continue
        reason = dict(group.reason)
        reason["why"] = f"idle since {agent.idle_since.isoformat() if agent.idle_since else 'never assigned'}"
        choices.append(Choice(work, agent.agent_id, work.channel in agent.auto_accept, reason))
        pool[agent.agent_id] = agent.taking(work.channel, now)
        group.push(pool[agent.agent_id])
    return choices


@dataclass
class _Group:
    """Eligible agents of one queue for one channel, in the queue's order (a lazy heap)."""

    queue: Queue
    channel: str
    heap: list[tuple[tuple[float, str], str]]
    reason: dict[str, object]

    @classmethod
    def build(cls, queue: Queue, channel: str, agents: Iterable[AgentView]) -> _Group:
        probe = WaitingWork("", channel, queue.name, datetime.min)
        eligible_reason: dict[str, object]
        passed: Counter[str] = Counter()
        heap = []
        for agent in agents:
            why = _ineligible(agent, queue, probe)
            if why:
                passed[why] += 1
            else:
                heap.append((_longest_idle_key(agent), agent.agent_id))
        heapq.heapify(heap)
        eligible_reason = {"method": queue.method, "candidates": len(heap), "passed_over": dict(passed)}
        return cls(queue, channel, heap, eligible_reason)

    def pop(self, pool: dict[str, AgentView], work: WaitingWork) -> AgentView | None:
        skipped = []
        found = None
        while self.heap:
            key, agent_id = heapq.heappop(self.heap)
            agent = pool[agent_id]
            if agent.blocker(self.channel) is not None:
                continue  # full (or exclusive) now: drop from this group
            if key != _longest_idle_key(agent):
                heapq.heappush(self.heap, (_longest_idle_key(agent), agent_id))  # stale order: re-place
                continue
            if agent_id in work.passed_by:
                skipped.append((key, agent_id))
                continue
            found = agent
            break
        for item in skipped:
            heapq.heappush(self.heap, item)
        return found

    def push(self, agent: AgentView) -> None:
        if agent.blocker(self.channel) is None:
            heapq.heappush(self.heap, (_longest_idle_key(agent), agent.agent_id))


def _ineligible(agent: AgentView, queue: Queue, work: WaitingWork) -> str | None:
    if queue.name not in agent.queues:
        return "not_in_queue"
    if agent.presence not in queue.allowed_presences:
        return f"presence_{agent.presence}"
    if agent.agent_id in work.passed_by:
        return "offered_before"
    return agent.blocker(work.channel)


def estimated_wait_s(position: int, handled: int, handle_seconds: float, staffed_slots: int) -> float | None:
    """Expected wait: the work ahead drains at staffed_slots / mean handle time (None: unknown yet)."""
    if handled == 0 or staffed_slots <= 0:
        return None
    mean_handle = handle_seconds / handled
    return round(max(position - 1, 0) * mean_handle / staffed_slots, 1)
