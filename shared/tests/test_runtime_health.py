"""Liveness and readiness checks (shared.health) on stand-ins for the runtime's parts, and the
endpoints on an in-memory service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from presence.app import create_app as presence_app
from presence.settings import PresenceSettings
from presence.store import FakePresenceStore
from shared.health import GroupWatchdog, Health
from shared.settings import ServiceSettings
from shared.tx import MemoryDatabase
from tools.testing import in_memory


class FakeKafkaConsumer:
    """What the checks read of an aiokafka consumer: fetcher idle time and group membership."""

    def __init__(self, idle_s: float = 0.0, member: bool = True, coordinator: int | None = 1) -> None:
        self._subscription = SimpleNamespace(fetcher_idle_time=idle_s)
        self._coordinator = SimpleNamespace(
            coordinator_id=coordinator, member_id="m-1" if member else "", generation=3 if member else -1
        )

    def assignment(self) -> set[Any]:
        return {("t", 0)}


def consumer(topic: str, kc: FakeKafkaConsumer | None, loop_ended: bool = False) -> Any:
    task = SimpleNamespace(done=lambda: loop_ended)
    subscriber = SimpleNamespace(consumer=kc, tasks=[task])
    return SimpleNamespace(topic=topic, group_id=f"svc.{topic}", in_flight=True, subscriber=subscriber)


class FakePool:
    def __init__(self, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.error = error
        self.delay = delay
        self.queries = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        if self.error:
            raise self.error

        async def fetchval(_: str) -> int:
            self.queries += 1
            await asyncio.sleep(self.delay)
            return 1

        yield SimpleNamespace(fetchval=fetchval)


class FakeAdmin:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    async def describe_cluster(self) -> dict[str, Any]:
        if self.error:
            raise self.error
        return {"brokers": [{"node_id": 1}]}


def runtime(**kw: Any) -> Any:
    settings = ServiceSettings(ready_probe_timeout_s=0.2, live_stall_s=5.0)
    admin = kw.pop("admin", FakeAdmin())
    relay = SimpleNamespace(alive=True, last_cycle_at=time.monotonic(), published=7)
    parts: dict[str, Any] = {
        "name": "svc",
        "settings": settings,
        "running_state": "running",
        "in_memory": False,
        "consumers": [consumer("orders.v1", FakeKafkaConsumer())],
        "relay": relay,
        "pool": FakePool(),
        "broker": SimpleNamespace(
            config=SimpleNamespace(broker_config=SimpleNamespace(admin=SimpleNamespace(client=admin)))
        ),
        "dead_background": lambda: [],
    }
    parts.update(kw)
    return SimpleNamespace(**parts)


async def test_everything_answering_is_live_and_ready() -> None:
    health = Health(runtime())
    live, ready = await health.live(), await health.ready()
    assert live.ok and ready.ok
    body = ready.as_json("svc")
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"started", "postgres", "kafka", "group:orders.v1", "outbox_relay"}


async def test_a_consumer_polling_with_nothing_to_read_is_live_one_stuck_in_a_batch_is_not() -> None:
    idle = Health(runtime(consumers=[consumer("orders.v1", FakeKafkaConsumer(idle_s=0.0))]))
    assert (await idle.live()).ok
    stuck = Health(runtime(consumers=[consumer("orders.v1", FakeKafkaConsumer(idle_s=12.0))]))
    report = await stuck.live()
    assert not report.ok
    body = report.as_json("svc")
    assert body["failed"] == ["consumer:orders.v1"]
    assert "no poll for 12s (> live_stall_s 5s): a batch has been in progress" in body["reason"]


async def test_an_ended_fetch_loop_or_background_loop_is_not_live() -> None:
    ended = Health(runtime(consumers=[consumer("orders.v1", FakeKafkaConsumer(), loop_ended=True)]))
    assert (await ended.live()).as_json("svc")["failed"] == ["consumer:orders.v1"]
    dead = Health(runtime(dead_background=lambda: ["drain"]))
    assert "drain" in (await dead.live()).as_json("svc")["reason"]


async def test_dead_dependencies_make_it_unready_with_the_reason_but_still_live() -> None:
    rt = runtime(pool=FakePool(error=ConnectionRefusedError("connect call failed")), admin=FakeAdmin(OSError("down")))
    health = Health(rt)
    ready = await health.ready()
    body = ready.as_json("svc")
    assert body["failed"] == ["postgres", "kafka"]
    assert "ConnectionRefusedError: connect call failed" in body["reason"]
    assert "metadata request failed: OSError: down" in body["reason"]
    assert (await health.live()).ok


async def test_a_probe_that_hangs_fails_within_its_timeout() -> None:
    health = Health(runtime(pool=FakePool(delay=5.0)))
    started = time.monotonic()
    ready = await health.ready()
    assert time.monotonic() - started < 2.0
    assert ready.as_json("svc")["checks"]["postgres"]["detail"] == "SELECT 1 did not answer within 0.2s"


async def test_unjoined_group_and_dead_relay_are_unready() -> None:
    rt = runtime(
        consumers=[consumer("orders.v1", FakeKafkaConsumer(member=False)), consumer("items.v1", None)],
        relay=SimpleNamespace(alive=False, last_cycle_at=time.monotonic(), published=0),
    )
    body = (await Health(rt).ready()).as_json("svc")
    assert body["failed"] == ["group:orders.v1", "group:items.v1", "outbox_relay"]
    assert "not joined to its group yet" in body["checks"]["group:orders.v1"]["detail"]
    stale = runtime(relay=SimpleNamespace(alive=True, last_cycle_at=time.monotonic() - 30, published=0))
    assert "publishing is stuck" in (await Health(stale).ready()).as_json("svc")["reason"]


async def test_starting_and_draining_are_unready() -> None:
    for state in ("starting", "draining", "stopped"):
        body = (await Health(runtime(running_state=state)).ready()).as_json("svc")
        assert body["failed"] == ["started"] and body["checks"]["started"]["detail"] == state


async def test_probes_are_single_flight_and_cached() -> None:
    pool = FakePool(delay=0.05)
    health = Health(runtime(pool=pool))
    reports = await asyncio.gather(*(health.ready() for _ in range(20)))
    assert all(r.ok for r in reports)
    assert pool.queries == 1
    await health.ready()
    assert pool.queries == 1  # cached for a second


@pytest.fixture
def presence_in_memory() -> Any:
    return presence_app(PresenceSettings(), database=MemoryDatabase(FakePresenceStore()))


async def test_endpoints_on_an_in_memory_service(presence_in_memory: Any) -> None:
    rt = presence_in_memory.state.runtime
    transport = httpx.ASGITransport(app=presence_in_memory)
    async with httpx.AsyncClient(transport=transport, base_url="http://presence") as client:
        assert (await client.get("/health/ready")).status_code == 503  # not started
        async with in_memory(rt):
            for path in ("/health", "/health/live", "/health/ready"):
                r = await client.get(path)
                assert r.status_code == 200, (path, r.text)
            assert r.json()["status"] == "ok"
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert "switchboard_metrics_source_up" in metrics.text
        await asyncio.sleep(1.1)  # past the probe cache
        stopped = await client.get("/health/ready")
        assert stopped.status_code == 503
        assert stopped.json()["failed"] == ["started"]


async def test_a_check_that_raises_fails_the_probe_with_the_error() -> None:
    broken = consumer("orders.v1", FakeKafkaConsumer())
    del broken.subscriber.consumer._coordinator
    body = (await Health(runtime(consumers=[broken])).ready()).as_json("svc")
    assert body["failed"] == ["checks"]
    assert "AttributeError" in body["reason"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(rt: Any, clock: Clock, exits: list[int]) -> GroupWatchdog:
    rt.health = Health(rt)
    return GroupWatchdog(rt, clock=clock, exit_process=exits.append)


async def test_a_consumer_out_of_its_group_too_long_while_kafka_answers_exits_the_process() -> None:
    clock, exits = Clock(), []
    kc = FakeKafkaConsumer(coordinator=None)
    rt = runtime(consumers=[consumer("orders.v1", FakeKafkaConsumer()), consumer("items.v1", kc)])
    rt.settings = ServiceSettings(ready_probe_timeout_s=0.2, group_lost_exit_s=120.0)
    dog = watchdog(rt, clock, exits)
    await dog.step()
    clock.now += 119.0
    await dog.step()
    assert exits == []  # not yet: a rebalance or a broker restart takes a while
    clock.now += 1.0
    await dog.step()
    assert exits == [75]


async def test_a_consumer_that_rejoins_in_time_starts_the_count_again() -> None:
    clock, exits = Clock(), []
    kc = FakeKafkaConsumer(member=False)
    rt = runtime(consumers=[consumer("orders.v1", kc)])
    rt.settings = ServiceSettings(group_lost_exit_s=60.0)
    dog = watchdog(rt, clock, exits)
    await dog.step()
    clock.now += 50.0
    kc._coordinator.member_id, kc._coordinator.generation = "m-2", 4  # rejoined
    await dog.step()
    kc._coordinator.member_id, kc._coordinator.generation = "", -1  # out again
    clock.now += 50.0
    await dog.step()
    clock.now += 50.0
    await dog.step()
    assert exits == []  # out for 50 s since the last time it was a member, not 150
    clock.now += 10.0
    await dog.step()
    assert exits == [75]


async def test_no_exit_while_the_broker_does_not_answer_nor_while_starting_draining_or_switched_off() -> None:
    clock, exits = Clock(), []
    lost = consumer("orders.v1", FakeKafkaConsumer(coordinator=None))
    down = runtime(consumers=[lost], admin=FakeAdmin(OSError("down")))
    down.settings = ServiceSettings(ready_probe_timeout_s=0.2, group_lost_exit_s=30.0)
    dog = watchdog(down, clock, exits)
    for _ in range(5):
        await dog.step()
        clock.now += 60.0
    assert exits == []  # a new process would not reach the broker either

    for state, limit in (("starting", 30.0), ("draining", 30.0), ("running", 0.0)):
        rt = runtime(consumers=[consumer("orders.v1", None)], running_state=state)
        rt.settings = ServiceSettings(group_lost_exit_s=limit)
        dog = watchdog(rt, clock, exits)
        for _ in range(3):
            await dog.step()
            clock.now += 60.0
    assert exits == []
