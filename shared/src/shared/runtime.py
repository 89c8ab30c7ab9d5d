"""What every service's composition root shares: pool, migrations, outbox relay, consumers,
health and the HTTP app. `create_app(settings)` in each service builds one `Runtime`.

HTTP is a Starlette app (path parameters and WebSockets, which `faststream.asgi` does not route)
whose lifespan starts the FastStream broker; `uvicorn --factory SERVICE.app:create_app` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from shared import db, topics
from shared import logging as sblogging
from shared.messaging import (
    AfterBatch,
    Consumer,
    Handler,
    OutboxRelay,
    Sequencer,
    UnitOfWork,
    declare_publishers,
    make_broker,
)
from shared.settings import ServiceSettings
from shared.tx import Database, PgDatabase, Tx

S = TypeVar("S")
B = TypeVar("B")

log = structlog.get_logger("switchboard.runtime")


class Runtime(Generic[S, B]):
    """The moving parts of one service instance.

    `store` builds the service's store on a transaction; `batch` makes the per-batch context each
    unit of work carries. `database` defaults to PostgreSQL; handler tests pass a `MemoryDatabase`
    holding fake stores, and then no pool, migration or relay is started."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        package: str,
        produces: dict[str, str],
        store: Callable[[Tx], S],
        batch: Callable[[], B] = lambda: None,  # type: ignore[assignment, return-value]
        database: Database | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.package = package
        self.schema = settings.db_schema or name
        self.names = topics.TopicNames(settings.topic_prefix)
        self.broker: KafkaBroker = make_broker(settings, client_id=f"switchboard-{name}")
        declare_publishers(self.broker, self.names, produces)
        self._pool: asyncpg.Pool | None = None
        self.in_memory = database is not None
        self.database: Database = database or PgDatabase(lambda: self.pool)
        self.store_factory = store
        self.batch_factory = batch
        self.source = f"/switchboard/{name}"
        self.relay: OutboxRelay | None = None
        self.consumers: list[Consumer] = []
        self.ready = False
        self.started_hooks: list[Callable[[], Awaitable[None]]] = []
        self.stopping_hooks: list[Callable[[], Awaitable[None]]] = []
        self.sequencer: Sequencer | None = None
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: database pool used before start")
        return self._pool

    def background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """A loop started with the service, after its start hooks, cancelled on stop."""
        self._background.append(loop)

    def periodic(
        self,
        name: str,
        step: Callable[[], Awaitable[int]],
        *,
        interval_s: float,
        wake: asyncio.Event | None = None,
        immediately: bool = True,
    ) -> None:
        """A background loop: run `step` every `interval_s` (or as soon as `wake` is set), again at
        once while it reports work done (a positive count), logging and backing off on errors."""

        async def loop() -> None:
            first = immediately
            while True:
                if not first:
                    if wake is None:
                        await asyncio.sleep(interval_s)
                    else:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), interval_s)
                        wake.clear()
                first = False
                try:
                    while await step() > 0:
                        pass
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("periodic_error", service=self.name, loop=name, error=repr(exc))
                    await asyncio.sleep(min(interval_s, 1.0))

        self.background(loop)

    def unit_of_work(self, tx: Tx) -> UnitOfWork[S, B]:
        return UnitOfWork(tx, self.store_factory(tx), self.batch_factory(), self.names, self.source, self.sequencer)

    @contextlib.asynccontextmanager
    async def transaction(self, *, isolation: str | None = None) -> AsyncIterator[UnitOfWork[S, B]]:
        """A unit of work for a background task or an HTTP handler; its events commit with it."""
        async with self.database.transaction(isolation=isolation) as tx:
            uow = self.unit_of_work(tx)
            yield uow
            await uow.flush()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[S]:
        """The store on one consistent snapshot, for reads (HTTP GETs)."""
        async with self.database.transaction(isolation="repeatable_read") as tx:
            yield self.store_factory(tx)

    def consume(
        self,
        topic: str,
        handlers: dict[str, Handler],
        *,
        after_batch: AfterBatch | None = None,
        on_committed: Callable[[UnitOfWork[S, B]], None] | None = None,
        savepoints: bool = False,
    ) -> Consumer:
        consumer = Consumer(
            service=self.name,
            topic=topic,
            handlers=handlers,
            database=self.database,
            unit_of_work=self.unit_of_work,
            broker=self.broker,
            settings=self.settings,
            after_batch=after_batch,
            on_committed=on_committed,
            savepoints=savepoints,
        )
        self.consumers.append(consumer)
        return consumer

    @property
    def database_url(self) -> str:
        return db.with_credentials(self.settings.database_url, self.settings.db_user, self.settings.db_password)

    async def start(self) -> None:
        """Migrate, open the pool, start the relay, then the consumers (and so the broker)."""
        if self.in_memory:  # handler tests: the test broker and the fake stores are all there is
            for hook in self.started_hooks:
                await hook()
            await self.broker.start()
            self.ready = True
            return
        self._pool = await db.create_pool(
            self.database_url, self.schema, min_size=self.settings.db_pool_min, max_size=self.settings.db_pool_max
        )
        async with self._pool.acquire() as conn:
            applied = await db.migrate(conn, self.schema, self.migrations())
        if applied:
            log.info("migrated", service=self.name, applied=applied)
        for hook in self.started_hooks:
            await hook()
        await self.broker.start()
        if self.settings.relay_enabled:
            self.relay = OutboxRelay(
                self._pool, self.schema, self.broker, crash_before_publish=self.settings.fault_crash_before_publish
            )
            self.relay.start()
        self._tasks = [asyncio.create_task(loop()) for loop in self._background]  # type: ignore[arg-type]
        self.ready = True
        log.info("service_started", service=self.name, topics=[c.topic for c in self.consumers])

    def migrations(self) -> list[db.Migration]:
        return db.load_migrations("shared", "shared") + db.load_migrations(self.name, self.package)

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for hook in self.stopping_hooks:
            with contextlib.suppress(Exception):
                await hook()
        await self.broker.stop()
        if self.relay:
            await self.relay.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    def asyncapi(self) -> AsyncAPI:
        return AsyncAPI(
            self.broker,
            title=f"Switchboard {self.name}",
            version="1.0.0",
            description=f"What the {self.name} service consumes and produces.",
        )

    def http_app(self, routes: Sequence[BaseRoute] = ()) -> Starlette:
        async def health(_: Request) -> JSONResponse:
            ok = self.ready and (self.in_memory or self._pool is not None)
            body: dict[str, Any] = {"service": self.name, "status": "ok" if ok else "starting"}
            if ok:
                body["consumers"] = {c.topic: vars(c.stats) for c in self.consumers}
                body["relay_published"] = self.relay.published if self.relay else 0
            return JSONResponse(body, status_code=200 if ok else 503)

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            sblogging.configure(self.settings.log_level, self.settings.log_format)
            async with self.running():
                yield

        app = Starlette(routes=[Route("/health", health), *routes], lifespan=lifespan)
        app.state.runtime = self
        return app


def load_config(path: str | None, section: str) -> dict[str, Any]:
    """One section of the YAML configuration file (SWITCHBOARD_CONFIG); {} when unset."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"configuration file {p} does not exist (SWITCHBOARD_CONFIG)")
    doc = yaml.safe_load(p.read_text()) or {}
    return doc.get(section) or {}
