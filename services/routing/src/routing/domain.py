"""Routing rules as plain functions over plain data: which queue, which agent, how long a wait.

Nothing here does IO. The store enforces capacity again in Postgres (the source of truth under
concurrency); these functions decide whom to try first and explain why.
"""

from __future__ import annotations

import functools
import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

DEFAULT_OFFER_TIMEOUT_S = 120


@dataclass(frozen=True)
class Queue:
    name: str
    channels: tuple[str, ...]
    method: str = "longest_idle"
    allowed_presences: tuple[str, ...] = ("available", "busy")
    priority: int = 0
    offer_timeout_s: int = DEFAULT_OFFER_TIMEOUT_S
    skill_matching: str = "exact"
    closest_after_s: int = 60
    operating_hours: dict[str, Any] | None = None
    overflow: dict[str, Any] | None = None
    prioritisation: tuple[dict[str, Any], ...] = ()
    preferred_wait_s: int = 30
    service_level_s: int = 20  # answered within this many seconds counts towards the service level


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
    skills: dict[str, int] = field(default_factory=dict)
    last_assigned_at: datetime | None = None

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
            last_assigned_at=at,
        )

    def matches(self, required: dict[str, int]) -> bool:
        """Exact skill matching: every required skill at the required level or above."""
        return all(self.skills.get(s, 0) >= level for s, level in required.items())

    def coverage(self, required: dict[str, int]) -> float:
        """Closest matching: how much of the required skill levels this agent covers (0..1)."""
        if not required:
            return 1.0
        return sum(min(self.skills.get(s, 0) / level, 1.0) for s, level in required.items() if level > 0) / len(
            required
        )


@dataclass(frozen=True)
class WaitingWork:
    conversation_id: str
    channel: str
    queue: str
    enqueued_at: datetime
    priority: int = 0
    passed_by: frozenset[str] = frozenset()
    required_skills: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    preferred_agent: str | None = None
    # the conversation.arrived payload, handed to the agent with the offer
    arrival: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def skills_key(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.required_skills.items()))


@dataclass(frozen=True)
class Choice:
    work: WaitingWork
    agent_id: str
    auto_accept: bool
    reason: dict[str, object]


@dataclass(frozen=True)
class Rule:
    """An ordered route-to-queue rule: all given conditions must hold."""

    name: str
    queue: str
    conditions: dict[str, Any] = field(default_factory=dict)

    def matches(self, arrival: dict[str, Any]) -> bool:
        cond = self.conditions
        if "channel" in cond and arrival.get("channel") not in _as_list(cond["channel"]):
            return False
        if "language" in cond and (arrival.get("language") or "") not in _as_list(cond["language"]):
            return False
        if "min_priority" in cond and int(arrival.get("priority") or 0) < int(cond["min_priority"]):
            return False
        if "authenticated" in cond:
            customer = arrival.get("customer") or {}
            if bool(customer.get("authenticated")) != bool(cond["authenticated"]):
                return False
        attributes = arrival.get("attributes") or {}
        for key, want in (cond.get("attributes") or {}).items():
            if attributes.get(key) not in _as_list(want):
                return False
        required = arrival.get("required_skills") or {}
        return all(skill in required for skill in cond.get("required_skills") or [])


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def route_to_queue(
    arrival: dict[str, Any] | str,
    queues: Sequence[Queue],
    rules: Sequence[Rule] = (),
    default_queues: dict[str, str] | None = None,
) -> tuple[Queue | None, str]:
    """The queue for an arrival and why: the first matching rule, else the channel's default queue,
    else the highest-priority queue serving the channel."""
    if isinstance(arrival, str):
        arrival = {"channel": arrival}
    by_name = {q.name: q for q in queues}
    for rule in rules:
        if rule.matches(arrival) and rule.queue in by_name:
            return by_name[rule.queue], f"rule {rule.name}"
    channel = arrival.get("channel")
    default = (default_queues or {}).get(channel or "")
    if default in by_name:
        return by_name[default], f"default queue for {channel}"
    serving = [q for q in queues if channel in q.channels]
    if not serving:
        return None, f"no queue serves channel {channel!r}"
    best = min(serving, key=lambda q: (-q.priority, q.name))
    return best, f"first queue serving {channel}"


def is_open(queue: Queue, now: datetime) -> bool:
    """Operating hours in the queue's time zone; a queue without hours is always open."""
    hours = queue.operating_hours
    if not hours:
        return True
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(hours.get("timezone") or "UTC"))
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
    minute = local.hour * 60 + local.minute
    for span in (hours.get("days") or {}).get(day, []):
        start, end = span.split("-")
        h1, m1 = map(int, start.split(":"))
        h2, m2 = map(int, end.split(":"))
        if h1 * 60 + m1 <= minute < h2 * 60 + m2:
            return True
    return False


def overflow_on_arrival(queue: Queue, waiting: int, estimated_wait_s: float | None, now: datetime) -> str | None:
    """Why an arrival overflows from `queue` (None: it stays)."""
    rules = queue.overflow or {}
    if rules.get("outside_hours", True) and queue.operating_hours and not is_open(queue, now):
        return "outside operating hours"
    if rules.get("max_waiting") is not None and waiting > int(rules["max_waiting"]):
        return f"{waiting} waiting, over the limit of {rules['max_waiting']}"
    limit = rules.get("max_estimated_wait_s")
    if limit is not None and estimated_wait_s is not None and estimated_wait_s > float(limit):
        return f"estimated wait {estimated_wait_s:.0f}s, over {float(limit):.0f}s"
    return None


def effective_priority(work: WaitingWork, queue: Queue, now: datetime) -> int:
    """Custom prioritisation: the conversation's priority plus the boosts whose conditions hold."""
    if queue.method != "priority_fifo":
        return 0
    total = work.priority
    waited = (now - work.enqueued_at).total_seconds()
    for rule in queue.prioritisation:
        when = rule.get("when") or {}
        ok = True
        if "waited_s_over" in when and waited <= float(when["waited_s_over"]):
            ok = False
        if "min_priority" in when and work.priority < int(when["min_priority"]):
            ok = False
        for key, want in (when.get("attributes") or {}).items():
            if work.attributes.get(key) not in _as_list(want):
                ok = False
        if ok:
            total += int(rule.get("boost", 0))
    return total


def waiting_order(work: WaitingWork, queues: dict[str, Queue], now: datetime) -> tuple[Any, ...]:
    """Oldest first across queues (ties: queue priority); a priority queue's boosts go first."""
    queue = queues.get(work.queue)
    prio = effective_priority(work, queue, now) if queue else 0
    return (-prio, work.enqueued_at, -(queue.priority if queue else 0), work.conversation_id)


def method_key(method: str, agent: AgentView, channel: str) -> tuple[Any, ...]:
    """The order in which a queue's assignment method prefers agents (smallest first)."""
    idle = agent.idle_since.timestamp() if agent.idle_since else float("-inf")
    if method == "round_robin":
        last = agent.last_assigned_at.timestamp() if agent.last_assigned_at else float("-inf")
        return (last, agent.agent_id)
    if method == "least_active":
        return (agent.total_used, idle, agent.agent_id)
    if method == "highest_capacity":
        return (-agent.free(channel), idle, agent.agent_id)
    return (idle, agent.agent_id)  # longest_idle, and priority_fifo's agent choice


def _why(method: str, agent: AgentView, channel: str) -> str:
    if method == "round_robin":
        last = agent.last_assigned_at.isoformat() if agent.last_assigned_at else "never"
        return f"next in rotation (last assigned {last})"
    if method == "least_active":
        return f"least active: {agent.total_used} item(s) in progress"
    if method == "highest_capacity":
        return f"most free {channel} capacity: {agent.free(channel)}"
    return f"idle since {agent.idle_since.isoformat() if agent.idle_since else 'never assigned'}"


def choose_agent(
    work: WaitingWork, queue: Queue, agents: Iterable[AgentView], now: datetime | None = None
) -> tuple[AgentView | None, dict[str, object]]:
    """Pick the agent for one work item by the queue's method; say why the others were passed over."""
    passed: Counter[str] = Counter()
    eligible: list[AgentView] = []
    near: list[AgentView] = []
    for agent in agents:
        why = _ineligible(agent, queue, work)
        if why == "skills_mismatch":
            near.append(agent)
        if why:
            passed[why] += 1
        else:
            eligible.append(agent)
    reason: dict[str, object] = {"method": queue.method, "candidates": len(eligible), "passed_over": dict(passed)}
    if not eligible and near and _closest_allowed(work, queue, now):
        best = max(
            near, key=lambda a: (a.coverage(work.required_skills), -method_key(queue.method, a, work.channel)[0])
        )
        reason.update(
            candidates=len(near),
            why=f"closest skills match ({best.coverage(work.required_skills):.0%})",
            matching="closest",
        )
        return best, reason
    if not eligible:
        return None, reason
    best = min(eligible, key=lambda a: method_key(queue.method, a, work.channel))
    reason["why"] = _why(queue.method, best, work.channel)
    return best, reason


def _closest_allowed(work: WaitingWork, queue: Queue, now: datetime | None) -> bool:
    if queue.skill_matching != "closest" or now is None:
        return False
    return now - work.enqueued_at >= timedelta(seconds=queue.closest_after_s)


def plan(
    waiting: Sequence[WaitingWork], queues: dict[str, Queue], agents: Sequence[AgentView], now: datetime
) -> list[Choice]:
    """Offer waiting work in order to the agents that can take it, updating their load as we go.

    One heap of eligible agents per (queue, channel, required skills), in the queue method's order
    and validated lazily against the agents' current load, so planning k items over n agents costs
    O(n + k log n) instead of O(k * n). Closest skill matching (rare) falls back to a scan.
    """
    pool = {a.agent_id: a for a in agents}
    groups: dict[tuple[Any, ...], _Group] = {}
    choices: list[Choice] = []
    for work in sorted(waiting, key=lambda w: waiting_order(w, queues, now)):
        queue = queues.get(work.queue)
        if queue is None:
            continue
        if work.preferred_agent and now - work.enqueued_at < timedelta(seconds=queue.preferred_wait_s):
            # preferred agent: only that agent while the wait lasts, if presence and capacity allow
            preferred = pool.get(work.preferred_agent)
            if preferred is None or _ineligible(preferred, queue, work) is not None:
                continue
            reason = {
                "method": "preferred_agent",
                "candidates": 1,
                "passed_over": {},
                "why": f"the conversation's preferred agent, within {queue.preferred_wait_s}s",
            }
            choices.append(Choice(work, preferred.agent_id, work.channel in preferred.auto_accept, reason))
            pool[preferred.agent_id] = preferred.taking(work.channel, now)
            continue
        key = (queue.name, work.channel, work.skills_key)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group.build(queue, work, pool.values())
        agent = group.pop(pool, work)
        reason = dict(group.reason)
        if agent is None and _closest_allowed(work, queue, now):
            agent, reason = choose_agent(work, queue, pool.values(), now)
        elif agent is not None:
            reason["why"] = _why(queue.method, agent, work.channel)
        if agent is None:
            continue
        choices.append(Choice(work, agent.agent_id, work.channel in agent.auto_accept, reason))
        pool[agent.agent_id] = agent.taking(work.channel, now)
        group.push(pool[agent.agent_id])  # its entries in other groups are now stale: re-placed lazily
    return choices


@dataclass
class _Group:
    """Eligible agents of one queue for one channel and skill set, in the method's order (a lazy heap)."""

    queue: Queue
    channel: str
    required: dict[str, int]
    heap: list[tuple[tuple[Any, ...], str]]
    reason: dict[str, object]

    @classmethod
    def build(cls, queue: Queue, work: WaitingWork, agents: Iterable[AgentView]) -> _Group:
        probe = replace(work, passed_by=frozenset())
        passed: Counter[str] = Counter()
        heap = []
        for agent in agents:
            why = _ineligible(agent, queue, probe)
            if why:
                passed[why] += 1
            else:
                heap.append((method_key(queue.method, agent, work.channel), agent.agent_id))
        heapq.heapify(heap)
        reason: dict[str, object] = {"method": queue.method, "candidates": len(heap), "passed_over": dict(passed)}
        return cls(queue, work.channel, dict(work.required_skills), heap, reason)

    def pop(self, pool: dict[str, AgentView], work: WaitingWork) -> AgentView | None:
        skipped = []
        found = None
        while self.heap:
            key, agent_id = heapq.heappop(self.heap)
            agent = pool[agent_id]
            if agent.blocker(self.channel) is not None:
                continue  # full (or exclusive) now: drop from this group
            current = method_key(self.queue.method, agent, self.channel)
            if key != current:
                heapq.heappush(self.heap, (current, agent_id))  # stale order: re-place
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
        """An agent's load changed: re-place it if it still belongs here (stale entries are skipped)."""
        if (
            agent.blocker(self.channel) is None
            and _ineligible(
                agent,
                self.queue,
                WaitingWork("", self.channel, self.queue.name, datetime.min, required_skills=self.required),
            )
            is None
        ):
            heapq.heappush(self.heap, (method_key(self.queue.method, agent, self.channel), agent.agent_id))


def _ineligible(agent: AgentView, queue: Queue, work: WaitingWork) -> str | None:
    if queue.name not in agent.queues:
        return "not_in_queue"
    if agent.presence not in queue.allowed_presences:
        return f"presence_{agent.presence}"
    if agent.agent_id in work.passed_by:
        return "offered_before"
    if (why := agent.blocker(work.channel)) is not None:
        return why
    if not agent.matches(work.required_skills):
        return "skills_mismatch"
    return None


@functools.lru_cache(maxsize=256)  # a batch's arrivals estimate their waits from the same figures
def erlang_c(servers: int, traffic: float) -> float:
    """Probability that an arrival waits (Erlang C) with `servers` slots and `traffic` Erlangs."""
    if servers <= 0:
        return 1.0
    if traffic >= servers:
        return 1.0
    term, total = 1.0, 1.0  # iterative Erlang B, then C: numerically stable for large c
    for k in range(1, servers + 1):
        term = traffic * term / k
        if term == 0.0:
            return 0.0  # underflowed: every later term is 0 too, and so is the result
        total += term
    erlang_b = term / total
    return erlang_b / (1 - (traffic / servers) * (1 - erlang_b))


def estimated_wait_s(
    position: int, handled: int, handle_seconds: float, staffed_slots: int, arrivals_per_s: float = 0.0
) -> float | None:
    """Expected wait of the item at `position` (1 = next), from observed handle times and staffing.

    The queue drains at c / h (c staffed slots, h mean handle time): the work ahead takes
    (position - 1) * h / c; the item itself then waits as an M/M/c arrival would, Erlang C's
    P(wait) * h / (c - A) with A = arrivals * h (when the system is stable).
    """
    if handled == 0 or staffed_slots <= 0:
        return None
    h = handle_seconds / handled
    ahead = max(position - 1, 0) * h / staffed_slots
    traffic = arrivals_per_s * h
    if traffic < staffed_slots:
        own = erlang_c(staffed_slots, traffic) * h / (staffed_slots - traffic) if traffic > 0 else 0.0
    else:
        own = h / staffed_slots
    return round(ahead + own, 1)
