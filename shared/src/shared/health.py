"""Liveness and readiness of one service instance, as Kubernetes probes ask for them.

- live (`/health/live`): the event loop answers (this code runs) and no consumer is stuck: each
  consumer's fetch loop polled Kafka within `live_stall_s` (aiokafka's fetcher idle time is 0 while a
  poll waits, so a consumer with nothing to read is not stuck; one whose batch never finishes is).
  A dead dependency never makes a service un-live: restarting it would not bring Kafka back.
- ready (`/health/ready`): started and not draining; PostgreSQL answers `SELECT 1` and Kafka answers
  a metadata request, each within `ready_probe_timeout_s`; every consumer is a member of its group;
  the outbox relay is alive and cycling.

A consumer that stays out of its group while the broker answers is not waited on forever:
`GroupWatchdog` exits the process after `group_lost_exit_s` so the supervisor (Kubernetes, or
`tools.supervise` in the embedded stack) starts a fresh one. Once, after a broker was killed and
restarted, one consumer of a service never found its group coordinator again for four minutes while
every other consumer had rejoined; a new client joins at once.

Probes are single-flight and their result is kept for `CACHE_S` (unless the runtime changed state
meanwhile: draining turns readiness to 503 at once), so a burst of probes (several kubelets, a load
balancer, a person with curl) costs one round of checks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.protocol.group import JoinGroupRequest

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from shared.messaging import Consumer
    from shared.runtime import Runtime

CACHE_S = 1.0
# How often the group watchdog looks; the exit code it leaves with (EX_TEMPFAIL: try again)
WATCHDOG_INTERVAL_S = 5.0
EXIT_GROUP_LOST = 75

log = structlog.get_logger()


@dataclass
class Check:
    """One named check: ok, and in words why not (or what was seen)."""

    name: str
    ok: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.data)
        return body


@dataclass
class Report:
    kind: str
    checks: list[Check]
    state: str = ""  # the runtime's running_state when checked: a change invalidates the cache
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self, service: str) -> dict[str, Any]:
        failed = [c.name for c in self.checks if not c.ok]
        body: dict[str, Any] = {"service": service, "status": "ok" if not failed else "unavailable"}
        if failed:
            body["failed"] = failed
            body["reason"] = "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)
        body["checks"] = {c.name: c.as_json() for c in self.checks}
        return body


def kafka_consumer(consumer: Consumer) -> AIOKafkaConsumer | None:
    """The aiokafka consumer under a Consumer's FastStream subscriber (None before start)."""
    return getattr(consumer.subscriber, "consumer", None)


def poll_idle_s(kc: AIOKafkaConsumer) -> float:
    """Seconds since this consumer's fetch loop last polled (0 while a poll is waiting)."""
    return float(kc._subscription.fetcher_idle_time)


def group_member(kc: AIOKafkaConsumer) -> tuple[bool, str]:
    """Whether the consumer is a member of its group (joined; it may hold no partition)."""
    coordinator = kc._coordinator
    if coordinator is None:
        return False, "not started"
    if coordinator.coordinator_id is None:
        return False, "group coordinator unknown (broker unreachable or group being re-formed)"
    if coordinator.member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID or coordinator.generation < 0:
        return False, "not joined to its group yet"
    return True, f"member (generation {coordinator.generation}, {len(kc.assignment())} partitions)"


def membership(consumer: Consumer) -> tuple[bool, str]:
    """Whether a Consumer is a member of its group, and in words why not (readiness, watchdog)."""
    kc = kafka_consumer(consumer)
    if kc is None:
        return False, "consumer not running"
    return group_member(kc)


class Health:
    """The checks of one runtime; `live()` and `ready()` are what the HTTP endpoints serve."""

    def __init__(self, runtime: Runtime[Any, Any]) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._cached: dict[str, Report] = {}
        self._running: dict[str, asyncio.Task[Report]] = {}

    async def live(self) -> Report:
        return await self._single_flight("live", self._live)

    async def ready(self) -> Report:
        return await self._single_flight("ready", self._ready)

    async def _single_flight(self, kind: str, run: Callable[[], Awaitable[Report]]) -> Report:
        cached = self._cached.get(kind)
        fresh = cached is not None and time.monotonic() - cached.at < CACHE_S
        if cached is not None and fresh and cached.state == self.runtime.running_state:
            return cached
        task = self._running.get(kind)
        if task is None or task.done():
            task = asyncio.ensure_future(self._guarded(kind, run))
            self._running[kind] = task
        # shielded: one impatient prober (a client that hangs up) must not cancel the others' answer
        report = await asyncio.shield(task)
        self._cached[kind] = report
        return report

    async def _guarded(self, kind: str, run: Callable[[], Awaitable[Report]]) -> Report:
        """A check that raises (a client library changed under it) fails the probe, with the error."""
        try:
            return await run()
        except Exception as exc:
            return Report(kind, [Check("checks", False, f"checking failed: {_describe(exc)}")], "")

    # --- live --------------------------------------------------------------------------------

    async def _live(self) -> Report:
        checks = [Check("event_loop", True, "answering")]
        if self.runtime.running_state == "running" and not self.runtime.in_memory:
            checks += [self._consumer_alive(c) for c in self.runtime.consumers]
            checks.append(self._background_alive())
        return Report("live", checks, self.runtime.running_state)

    def _consumer_alive(self, consumer: Consumer) -> Check:
        name = f"consumer:{consumer.topic}"
        kc = kafka_consumer(consumer)
        if kc is None:
            return Check(name, False, "its Kafka consumer is not running (stopped after an error?)")
        tasks = getattr(consumer.subscriber, "tasks", [])
        if tasks and all(t.done() for t in tasks):
            return Check(name, False, "its fetch loop has ended")
        idle = poll_idle_s(kc)
        data = {"last_poll_s_ago": round(idle, 3), "in_flight": consumer.in_flight}
        if idle > self.settings.live_stall_s:
            doing = "a batch has been in progress" if consumer.in_flight else "the fetch loop has not polled"
            return Check(
                name,
                False,
                f"no poll for {idle:.0f}s (> live_stall_s {self.settings.live_stall_s:.0f}s): {doing}",
                data,
            )
        return Check(name, True, "", data)

    def _background_alive(self) -> Check:
        dead = self.runtime.dead_background()
        if dead:
            return Check("background", False, f"background loop ended: {', '.join(dead)}")
        return Check("background", True)

    # --- ready -------------------------------------------------------------------------------

    async def _ready(self) -> Report:
        state = self.runtime.running_state
        if state != "running":
            return Report("ready", [Check("started", False, state)], state)
        checks = [Check("started", True)]
        if self.runtime.in_memory:
            return Report("ready", checks, state)
        postgres, kafka = await asyncio.gather(self._postgres(), self._kafka())
        checks += [postgres, kafka, *[self._joined(c) for c in self.runtime.consumers], self._relay()]
        return Report("ready", checks, state)

    async def _postgres(self) -> Check:
        timeout = self.settings.ready_probe_timeout_s
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async with self.runtime.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except TimeoutError:
            return Check("postgres", False, f"SELECT 1 did not answer within {timeout}s")
        except Exception as exc:
            return Check("postgres", False, f"SELECT 1 failed: {_describe(exc)}")
        return Check("postgres", True, "", {"ms": round((time.monotonic() - started) * 1000, 1)})

    async def _kafka(self) -> Check:
        timeout = self.settings.ready_probe_timeout_s
        started = time.monotonic()
        try:
            admin = self.runtime.broker.config.broker_config.admin.client
            async with asyncio.timeout(timeout):
                cluster = await admin.describe_cluster()
        except TimeoutError:
            return Check(
                "kafka",
                False,
                f"metadata request to {self.settings.kafka_bootstrap_servers} did not answer within {timeout}s",
            )
        except Exception as exc:
            return Check("kafka", False, f"metadata request failed: {_describe(exc)}")
        brokers = len(cluster.get("brokers") or [])
        if brokers == 0:
            return Check("kafka", False, "the cluster reported no broker")
        return Check("kafka", True, "", {"brokers": brokers, "ms": round((time.monotonic() - started) * 1000, 1)})

    def _joined(self, consumer: Consumer) -> Check:
        ok, detail = membership(consumer)
        return Check(
            f"group:{consumer.topic}",
            ok,
            f"{consumer.group_id}: {detail}" if not ok else "",
            {"group": consumer.group_id},
        )

    def _relay(self) -> Check:
        relay = self.runtime.relay
        if relay is None:
            enabled = self.settings.relay_enabled
            return Check("outbox_relay", not enabled, "not started" if enabled else "disabled by settings")
        if not relay.alive:
            return Check("outbox_relay", False, "the relay task has ended")
        age = time.monotonic() - relay.last_cycle_at
        stale = self.settings.live_stall_s
        if age > stale:
            return Check("outbox_relay", False, f"no relay cycle for {age:.0f}s (> {stale:.0f}s): publishing is stuck")
        return Check("outbox_relay", True, "", {"last_cycle_s_ago": round(age, 3), "published": relay.published})


class GroupWatchdog:
    """Exits the process when a consumer has been out of its group for `group_lost_exit_s` while
    Kafka answers a metadata request (module docstring). While the broker does not answer, a new
    process would fare no better, so it waits; 0 switches the watchdog off."""

    def __init__(
        self,
        runtime: Runtime[Any, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.exit_process = exit_process
        self.out_since: dict[str, float] = {}  # consumer's topic -> when it was first seen out of its group

    def out_of_group(self) -> dict[str, tuple[float, str]]:
        """Consumers out of their group now: topic -> (seconds out, why)."""
        now = self.clock()
        out: dict[str, tuple[float, str]] = {}
        for consumer in self.runtime.consumers:
            member, detail = membership(consumer)
            if member:
                self.out_since.pop(consumer.topic, None)
                continue
            since = self.out_since.setdefault(consumer.topic, now)
            out[consumer.topic] = (now - since, f"{consumer.group_id}: {detail}")
        return out

    async def step(self) -> int:
        limit = self.runtime.settings.group_lost_exit_s
        if limit <= 0 or self.runtime.running_state != "running":
            self.out_since.clear()  # starting or draining: out of the group on purpose
            return 0
        lost = {topic: why for topic, (seconds, why) in self.out_of_group().items() if seconds >= limit}
        if not lost:
            return 0
        kafka = await self.runtime.health._kafka()
        if not kafka.ok:
            log.warning(
                "consumer_group_lost_broker_down", service=self.runtime.name, consumers=lost, kafka=kafka.detail
            )
            return 0
        log.critical(
            "consumer_group_lost",
            service=self.runtime.name,
            consumers=lost,
            limit_s=limit,
            action="exiting: the broker answers but this client does not rejoin; its supervisor starts a new one",
        )
        self.exit_process(EXIT_GROUP_LOST)
        return 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
