"""Routing rules as plain functions over plain data: which queue, which agent, how long a wait.

Nothing here does IO. The store enforces capacity again in Postgres (the source of truth under
concurrency); these functions decide whom to try first and explain why.
"""

from __future__ import annotations

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

    def free(self, channel: str) -> int:
        return self.limits.get(channel, 0) - self.used.get(channel, 0)

    def blocker(self, channel: str) -> str | None:
        """Why this agent cannot take one more unit of `channel` now (None: it can)."""
        if self.exclusive_held:
            return "exclusive_work_held"
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
        return replace(self, used=used, total_used=self.total_used + 1,
                       exclusive_held=self.exclusive_held or channel in self.exclusive, idle_since=at)


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


def choose_agent(work: WaitingWork, queue: Queue, agents: Iterable[AgentView]) -> tuple[AgentView | None, dict[str, object]]:
    """Pick the agent for one work item by the queue's method; say why the others were passed over."""
    passed: Counter[str] = Counter()
    eligible: list[AgentView] = []
    for agent in agents:
        if queue.name not in agent.queues:
            passed["not_in_queue"] += 1
        elif agent.presence not in queue.allowed_presences:
            passed[f"presence_{agent.presence}"] += 1
        elif agent.agent_id in work.passed_by:
            passed["offered_before"] += 1
        elif (why := agent.blocker(work.channel)) is not None:
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


def plan(waiting: Sequence[WaitingWork], queues: dict[str, Queue], agents: Sequence[AgentView],
         now: datetime) -> list[Choice]:
    """Offer waiting work oldest first to the agents that can take it, updating their load as we go."""
    pool = {a.agent_id: a for a in agents}
    choices: list[Choice] = []
    for work in sorted(waiting, key=lambda w: (w.enqueued_at, w.conversation_id)):
        queue = queues.get(work.queue)
        if queue is None or not pool:
            continue
        agent, reason = choose_agent(work, queue, pool.values())
        if agent is None:
            continue
        choices.append(Choice(work, agent.agent_id, work.channel in agent.auto_accept, reason))
        pool[agent.agent_id] = agent.taking(work.channel, now)
    return choices


def estimated_wait_s(position: int, handled: int, handle_seconds: float, staffed_slots: int) -> float | None:
    """Expected wait: the work ahead drains at staffed_slots / mean handle time (None: unknown yet)."""
    if handled == 0 or staffed_slots <= 0:
        return None
    mean_handle = handle_seconds / handled
    return round(max(position - 1, 0) * mean_handle / staffed_slots, 1)
