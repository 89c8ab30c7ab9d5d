"""Test helpers: real infrastructure for tests, isolated deployments, and a Kafka probe.

Order of preference (DESIGN.md): KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set; else
testcontainers when a Docker engine answers; else the embedded local processes of tools.stack,
under .state/test on their own ports (so a running `make up` is left alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared import contracts as c
from shared.settings import ServiceSettings
from tools import stack

# The conversation arrival of DESIGN.md, exactly as a producer publishes it (key c-1001).
DESIGN_EXAMPLE = {
    "specversion": "1.0",
    "id": "0b6f6c1e-7f0a-4c43-9a55-1a2b3c4d5e6f",
    "source": "/channels/web-chat",
    "type": "conversation.arrived",
    "time": "2026-11-21T10:00:00Z",
    "subject": "c-1001",
    "datacontenttype": "application/json",
    "data": {
        "conversation_id": "c-1001",
        "channel": "chat",
        "customer": {"id": "cust-42", "name": "Ada Lovelace", "authenticated": True},
        "subject": "Refund for order 1234",
        "language": "en",
        "priority": 5,
        "attributes": {"product": "billing"},
        "required_skills": {"billing": 3},
        "record": {"type": "case", "id": "CAS-1", "title": "Refund for order 1234"},
    },
}


@dataclass
class Infrastructure:
    bootstrap: str
    admin_url: str  # a superuser-ish URL whose database part is replaced per deployment
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                fn()


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def start_infrastructure() -> Infrastructure:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    db_url = os.environ.get("DATABASE_URL")
    infra = Infrastructure(bootstrap or "", db_url or "")
    if bootstrap and db_url:
        return infra
    if os.environ.get("SWITCHBOARD_TESTCONTAINERS", "auto") != "never" and _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        if not bootstrap:
            kafka = KafkaContainer(f"apache/kafka:{stack.KAFKA_VERSION}").with_kraft()
            kafka.start()
            infra.cleanup.append(kafka.stop)
            infra.bootstrap = kafka.get_bootstrap_server()
        if not db_url:
            pg = PostgresContainer("postgres:15", username="switchboard", password=stack.DB_PASSWORD)
            pg.start()
            infra.cleanup.append(pg.stop)
            infra.admin_url = pg.get_connection_url(driver=None)
        return infra
    layout = stack.Layout(
        stack.ROOT / ".state" / "test",
        kafka_port=int(os.environ.get("SWITCHBOARD_TEST_KAFKA_PORT", 29092)),
        controller_port=int(os.environ.get("SWITCHBOARD_TEST_KAFKA_PORT", 29092)) + 1,
        pg_port=int(os.environ.get("SWITCHBOARD_TEST_PG_PORT", 25432)),
    )
    keep = os.environ.get("SWITCHBOARD_KEEP_INFRA") == "1"
    try:
        # what this call started, and only that, is stopped again (not a stack that was running)
        if not db_url:
            if stack.start_postgres(layout) and not keep:
                infra.cleanup.append(lambda: stack.stop_postgres(layout))
            infra.admin_url = layout.admin_url()
        if not bootstrap:
            if stack.start_kafka(layout) and not keep:
                infra.cleanup.append(lambda: stack.stop_pid(layout.run / "kafka.pid", "Kafka", 30))
            infra.bootstrap = layout.bootstrap
    except BaseException:
        infra.close()  # PostgreSQL started here must not outlive a Kafka that could not start
        raise
    return infra


@dataclass
class Deployment:
    """One isolated deployment: its own database and topic prefix on the shared infrastructure."""

    infra: Infrastructure
    prefix: str
    database: str

    @property
    def database_url(self) -> str:
        base = self.infra.admin_url.rsplit("/", 1)[0]
        return f"{base}/{self.database}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def settings(self, cls: type[ServiceSettings], service: str, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.infra.bootstrap,
            "database_url": self.database_url,
            "topic_prefix": self.prefix,
            "db_user": stack.service_role(service),
            "db_password": stack.DB_PASSWORD,
            "log_level": os.environ.get("LOG_LEVEL", "WARNING"),
        }
        values.update(overrides)
        return cls(**values)


async def create_deployment(infra: Infrastructure, partitions: int = 3) -> Deployment:
    token = uuid.uuid4().hex[:10]
    dep = Deployment(infra, prefix=f"t{token}.", database=f"t_{token}")
    await stack.create_topics(infra.bootstrap, dep.prefix, partitions_cap=partitions)
    await stack.provision_database(infra.admin_url, dep.database)
    return dep


async def drop_deployment(dep: Deployment) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=dep.infra.bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(dep.prefix)]
        if names:
            with contextlib.suppress(Exception):
                await admin.delete_topics(names)
    finally:
        await admin.close()
    conn = await asyncpg.connect(dep.infra.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dep.database}" WITH (FORCE)')
    finally:
        await conn.close()


class Bus:
    """Publish events and wait for events on a deployment's real topics (what a client sees)."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.producer: AIOKafkaProducer | None = None
        self._consumers: dict[str, tuple[AIOKafkaConsumer, list[ConsumerRecord[Any, Any]]]] = {}

    async def __aenter__(self) -> Bus:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.dep.infra.bootstrap, acks="all", enable_idempotence=True
        )
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.producer
        await self.producer.stop()
        for consumer, _ in self._consumers.values():
            await consumer.stop()

    async def publish(self, payload: c.Payload, *, id: str | None = None, subject: str | None = None) -> c.CloudEvent:
        ev = c.event(payload, source="/tests", id=id, subject=subject)
        await self.send_raw(payload.TOPIC, ev.to_bytes(), key=c.key_of(payload))
        return ev

    async def send_raw(
        self, topic: str, value: bytes, key: str | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        assert self.producer
        await self.producer.send_and_wait(
            self.dep.topic(topic), value, key=key.encode() if key else None, headers=headers
        )

    async def records(self, topic: str) -> list[ConsumerRecord[Any, Any]]:
        """Everything on `topic` so far (read from the beginning without a group)."""
        real = self.dep.topic(topic)
        if real not in self._consumers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.dep.infra.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await consumer.start()
            parts = consumer.partitions_for_topic(real)
            if parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(real) or set()
            consumer.assign([TopicPartition(real, p) for p in sorted(parts)])
            self._consumers[real] = (consumer, [])
        consumer, seen = self._consumers[real]
        batch = await consumer.getmany(timeout_ms=50)
        for recs in batch.values():
            seen.extend(recs)
        return seen

    async def events(self, topic: str, type: str | None = None, **where: Any) -> list[c.CloudEvent]:
        out = []
        for rec in await self.records(topic):
            try:
                ev = c.CloudEvent.model_validate_json(rec.value)
            except Exception:
                continue
            if type and ev.type != type:
                continue
            if all(ev.data.get(k) == v for k, v in where.items()):
                out.append(ev)
        return out

    async def wait_for(
        self, topic: str, type: str | None = None, *, count: int = 1, timeout: float = 30.0, **where: Any
    ) -> list[c.CloudEvent]:
        deadline = time.monotonic() + timeout
        found: list[c.CloudEvent] = []
        while time.monotonic() < deadline:
            found = await self.events(topic, type, **where)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"waited {timeout}s for {count} x {type or '*'} on {topic} where {where}; "
            f"saw {len(found)}: {[e.data for e in found][:5]}"
        )

    async def quiet(
        self, topic: str, type: str | None = None, seconds: float = 2.0, **where: Any
    ) -> list[c.CloudEvent]:
        """Wait `seconds` and return what matched meanwhile (for "nothing more happens" checks)."""
        await asyncio.sleep(seconds)
        return await self.events(topic, type, **where)


@contextlib.asynccontextmanager
async def running(*runtimes: Any) -> AsyncIterator[None]:
    """Start service runtimes in this event loop, stop them after."""
    started = []
    try:
        for rt in runtimes:
            await rt.start()
            started.append(rt)
        yield
    finally:
        for rt in reversed(started):
            await rt.stop()


# --- handler tests: a service on FastStream's TestKafkaBroker and its fake store ---------------


class MemoryBus:
    """Drives one in-memory service (Runtime built with a `MemoryDatabase`): `send` publishes an
    event to the test broker, whose subscribers handle it at once; `emitted` parses what committed
    transactions wrote to the outbox; `relay` publishes those rows, as the outbox relay would."""

    def __init__(self, runtime: Any) -> None:
        from shared.tx import MemoryDatabase

        assert isinstance(runtime.database, MemoryDatabase), "build the runtime with database=MemoryDatabase(...)"
        self.runtime = runtime
        self.db: MemoryDatabase = runtime.database
        self.events: list[c.CloudEvent] = []

    async def send(
        self, payload: c.Payload, *, id: str | None = None, subject: str | None = None, source: str = "/test"
    ) -> c.CloudEvent:
        ev = c.event(payload, source=source, subject=subject, id=id)
        await self.send_raw(payload.TOPIC, ev.to_bytes(), key=c.key_of(payload), ce_type=ev.type)
        return ev

    async def send_raw(self, topic: str, value: bytes, *, key: str | None = None, ce_type: str | None = None) -> None:
        headers = {"ce_type": ce_type} if ce_type else {}
        await self.runtime.broker.publish(
            value, topic=self.runtime.names(topic), key=key.encode() if key else None, headers=headers
        )

    def emitted(self, type: str | None = None) -> list[c.CloudEvent]:
        """Every event committed so far (in order), or those of one type."""
        self.events += [c.CloudEvent.model_validate_json(r.payload) for r in self.db.take_outbox()]
        return [e for e in self.events if type is None or e.type == type]

    async def relay(self) -> int:
        """Publish the outbox rows not yet relayed to the test broker (so the service's own
        consumers of those topics see them)."""
        rows = self.db.take_outbox()
        self.events += [c.CloudEvent.model_validate_json(r.payload) for r in rows]
        for r in rows:
            await self.runtime.broker.publish(
                r.payload, topic=r.topic, key=r.key.encode() if r.key else None, headers=r.headers
            )
        return len(rows)


@contextlib.asynccontextmanager
async def in_memory(runtime: Any) -> AsyncIterator[MemoryBus]:
    """Start `runtime` on FastStream's TestKafkaBroker (no Kafka, no PostgreSQL) and drive it."""
    from faststream.kafka import TestKafkaBroker

    async with TestKafkaBroker(runtime.broker):
        await runtime.start()
        try:
            yield MemoryBus(runtime)
        finally:
            await runtime.stop()


# --- HTTP servers for end-to-end tests ---------------------------------------------------------


def listening_socket() -> socket.socket:
    """A loopback socket bound to a free port and held until a server takes it over. (Probing a free
    port and closing it races: the kernel may hand the port to a client connection before the server
    binds it, and the server fails with "address already in use".)"""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def served(
    app: Any, sock: socket.socket | None = None, *, lifespan: Literal["auto", "on", "off"] = "off"
) -> AsyncIterator[str]:
    """`app` under a real uvicorn server on `sock` (a fresh listening socket by default); yields
    "127.0.0.1:PORT". Lifespan is off by default: tests start the runtimes themselves (`running`)."""
    import uvicorn

    sock = sock or listening_socket()
    port = sock.getsockname()[1]
    # no WebSocket pings: a loaded test machine must not drop a page's socket for a late pong
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, ws_ping_interval=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 10)
        sock.close()


# --- store contract suites -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def store_database(infra: Infrastructure, service: str) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own on the test infrastructure with `service`'s schema migrated, and a pool
    on the service's login role, for a store contract suite (no topics: a store needs none)."""
    from shared import db

    dep = Deployment(infra, prefix="", database=f"t_store_{uuid.uuid4().hex[:10]}")
    await stack.provision_database(infra.admin_url, dep.database)
    pool = await db.create_pool(stack.service_database_url(dep.database_url, service), service, max_size=2)
    try:
        async with pool.acquire() as conn:
            migrations = db.load_migrations("shared", "shared") + db.load_migrations(service, service)
            await db.migrate(conn, service, migrations)
        yield pool
    finally:
        await pool.close()
        admin = await asyncpg.connect(infra.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{dep.database}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def rolled_back(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """A connection in a transaction rolled back at the end: one contract case leaves nothing behind
    (time does not pass inside it: now() is the transaction's start)."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            yield conn
        finally:
            await tx.rollback()
