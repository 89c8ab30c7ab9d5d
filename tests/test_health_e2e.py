"""Readiness that tells the truth, on an embedded Kafka and PostgreSQL of this test's own (they are
stopped and started again): stop the broker and every service's `/health/ready` turns 503 within
15 s, start it and 200 within 15 s, and nothing is lost (conversations published before and while
it was down are offered after). The same for PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from routing.settings import RoutingSettings
from shared import contracts as c
from shared import topics
from tests import helpers
from tests.test_metrics_e2e import apps
from tools import stack, testing
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e

LAYOUT = stack.Layout(stack.ROOT / ".state" / "ready-test", kafka_port=22092, controller_port=22093, pg_port=22432)
TURN_S = 15.0  # the figure: readiness follows a dependency within this


@pytest.fixture(scope="module")
def own_infra() -> Iterator[testing.Infrastructure]:
    stack.start_postgres(LAYOUT)
    stack.start_kafka(LAYOUT)
    try:
        yield testing.Infrastructure(LAYOUT.bootstrap, LAYOUT.admin_url())
    finally:
        stack.stop_pid(LAYOUT.run / "kafka.pid", "Kafka", 30)
        stack.stop_postgres(LAYOUT)


@pytest.fixture
async def own_deployment(own_infra: testing.Infrastructure) -> AsyncIterator[Deployment]:
    dep = await testing.create_deployment(own_infra)
    yield dep
    await testing.drop_deployment(dep)


async def states(clients: dict[str, httpx.AsyncClient]) -> dict[str, tuple[int, dict[str, Any]]]:
    async def one(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
        r = await client.get("/health/ready")
        return r.status_code, r.json()

    answers = await asyncio.gather(*(one(cl) for cl in clients.values()))
    return dict(zip(clients, answers, strict=True))


async def all_turn(clients: dict[str, httpx.AsyncClient], status: int, within: float, failing: str = "") -> float:
    """Poll every service's readiness until all answer `status` (and, for 503, name `failing` among
    the failed checks); returns how long it took."""
    started = time.monotonic()
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    while time.monotonic() - started < within:
        seen = await states(clients)
        if all(code == status and (not failing or failing in body.get("failed", [])) for code, body in seen.values()):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"not every service answered {status} ({failing}) within {within}s: {seen}")


async def beat(bus: Bus, agents: list[str]) -> None:
    """The agents' devices beat as a client's would, so presence keeps them signed in however long
    the outages take (a send waits while the broker is down)."""
    while True:
        for agent in agents:
            with contextlib.suppress(Exception):
                await bus.publish(c.AgentHeartbeat(agent_id=agent, device_id="desk"))
        await asyncio.sleep(5)


async def offered(bus: Bus, conversation_ids: list[str], timeout: float = 60.0) -> None:
    for cid in conversation_ids:
        await bus.wait_for(topics.ROUTING, "work.offered", conversation_id=cid, timeout=timeout)


async def test_readiness_follows_kafka_and_postgres(own_deployment: Deployment) -> None:
    dep = own_deployment
    # The services run in this test's process: a service exits after too many consecutive
    # infrastructure failures (so an orchestrator restarts it); here that would end the test, and
    # the exit rule is the fault suite's subject, so it is set out of reach.
    built = apps(dep, max_consecutive_failures=10_000)
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=10)
        for name, app in built.items()
    }
    loop = asyncio.get_running_loop()
    async with running(*(app.state.runtime for app in built.values())), Bus(dep) as bus:
        await all_turn(clients, 200, 90)
        for agent in ("agent-1", "agent-2"):
            await bus.publish(c.AgentSignedIn(agent_id=agent, device_id="desk"))
        beating = asyncio.create_task(beat(bus, ["agent-1", "agent-2"]))
        try:
            await bus.publish(c.ConversationArrived(conversation_id="r-0", channel="chat"))
            await offered(bus, ["r-0"])

            # --- Kafka stops ---------------------------------------------------------------------
            await bus.publish(c.ConversationArrived(conversation_id="r-1", channel="chat"))
            await loop.run_in_executor(None, stack.stop_pid, LAYOUT.run / "kafka.pid", "Kafka", 30)
            took = await all_turn(clients, 503, TURN_S, failing="kafka")
            print(f"readiness 503 {took:.1f}s after the broker stopped")
            live = await clients["routing"].get("/health/live")
            assert live.status_code == 200, f"a dead broker must not make a service un-live: {live.json()}"
            # a producer's send waits for the broker (aiokafka retries until its request timeout)
            late = asyncio.create_task(bus.publish(c.ConversationArrived(conversation_id="r-2", channel="chat")))
            await loop.run_in_executor(None, stack.start_kafka, LAYOUT)
            took = await all_turn(clients, 200, TURN_S)
            print(f"readiness 200 {took:.1f}s after the broker answered again")
            await late
            await offered(bus, ["r-1", "r-2"])

            # --- PostgreSQL stops ----------------------------------------------------------------
            await loop.run_in_executor(None, stack.stop_postgres, LAYOUT)
            took = await all_turn(clients, 503, TURN_S, failing="postgres")
            print(f"readiness 503 {took:.1f}s after PostgreSQL stopped")
            await bus.publish(c.ConversationArrived(conversation_id="r-3", channel="chat"))
            await loop.run_in_executor(None, stack.start_postgres, LAYOUT)
            took = await all_turn(clients, 200, TURN_S)
            print(f"readiness 200 {took:.1f}s after PostgreSQL answered again")
            await offered(bus, ["r-3"])
            # every conversation offered once: nothing lost, nothing decided twice on a redelivery (the
            # relay may publish a record twice after an outage, at least once, with the same event id)
            for cid in ("r-0", "r-1", "r-2", "r-3"):
                offers = await bus.events(topics.ROUTING, "work.offered", conversation_id=cid)
                assert len({e.id for e in offers}) == 1, (cid, [e.data for e in offers])
        finally:
            beating.cancel()
    for client in clients.values():
        await client.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(await consumer._client._wait_on_metadata(topic) or [])]
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[tp] - starts[tp] for tp in parts)
    finally:
        await consumer.stop()


async def test_sigterm_drains_the_outbox_and_exits_in_time(deployment: Deployment, tmp_path: Any) -> None:
    """A service stopped with SIGTERM publishes every event it committed (the outbox ends empty)
    and exits within its drain timeout; it binds where its settings say (ROUTING_HTTP_PORT)."""
    dep = deployment
    settings = dep.settings(RoutingSettings, "routing")
    port, drain_s, rows = free_port(), 15.0, 5_000
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": dep.infra.bootstrap,
        "DATABASE_URL": dep.database_url,
        "SWITCHBOARD_TOPIC_PREFIX": dep.prefix,
        "ROUTING_DB_USER": settings.db_user,
        "ROUTING_DB_PASSWORD": settings.db_password,
        "ROUTING_HTTP_PORT": str(port),
        "ROUTING_DRAIN_TIMEOUT_S": str(drain_s),
        "SWITCHBOARD_CONFIG": helpers.DEMO_CONFIG,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "routing.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "routing.main"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, f"routing exited early:\n{log_path.read_text()[-3000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"routing never ready:\n{log_path.read_text()[-3000:]}"
                await asyncio.sleep(0.3)
        topic = dep.topic(topics.ROUTING)
        before = await topic_size(dep.infra.bootstrap, topic)
        conn = await asyncpg.connect(dep.database_url)
        try:
            # committed events, as a burst of use cases would leave them for the relay
            await conn.execute(
                "INSERT INTO routing.outbox (topic, key, payload, headers) "
                "SELECT $1, 'drain-' || i, convert_to('{\"n\": ' || i || '}', 'UTF8'), '{}' "
                "FROM generate_series(1, $2) i",
                topic,
                rows,
            )
            pending_at_sigterm = await conn.fetchval("SELECT count(*) FROM routing.outbox WHERE dead_at IS NULL")
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, drain_s + 10)
            took = time.monotonic() - sent
            left = await conn.fetchval("SELECT count(*) FROM routing.outbox WHERE dead_at IS NULL")
        finally:
            await conn.close()
        output = log_path.read_text()
        print(f"SIGTERM with {pending_at_sigterm} rows pending: exit {code} after {took:.1f}s, {left} left")
        assert pending_at_sigterm > 0, "the relay emptied the outbox before the signal: nothing to drain"
        # uvicorn re-raises the signal it caught once its shutdown is done: -SIGTERM is a clean exit
        assert code in (0, -signal.SIGTERM), output[-3000:]
        assert took < drain_s + 2, f"took {took:.1f}s to exit (drain_timeout_s {drain_s}):\n{output[-3000:]}"
        assert left == 0, f"{left} committed events were never published:\n{output[-3000:]}"
        assert await topic_size(dep.infra.bootstrap, topic) - before >= rows
        assert "drain_finished" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
