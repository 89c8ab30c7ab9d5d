"""What every service's composition root shares: pool, migrations, outbox relay, consumers,
health, metrics and the HTTP app. `create_app(settings)` in each service builds one `Runtime`.

HTTP is a Starlette app (path parameters and WebSockets, which `faststream.asgi` does not route)
whose lifespan starts the FastStream broker; `uvicorn --factory SERVICE.app:create_app` runs it.
Every service serves `/health/live`, `/health/ready` (and `/health`, the readiness with details)
and `/metrics` (shared.health, shared.metrics).

Stopping (SIGTERM: uvicorn turns it into the lifespan's shutdown) drains within `drain_timeout_s`:
stop fetching and let the batch in hand finish and commit, stop the background loops, run the
stopping hooks (the gateway closes its sockets with a reconnect hint), publish what is left in the
outbox (the relay before the broker's producer stops), leave the consumer groups, close the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from shared import db, messaging, production, topics, tracing
from shared import logging as sblogging
from shared.config import read_yaml
from shared.health import WATCHDOG_INTERVAL_S, GroupWatchdog, Health, Report
from shared.messaging import (
    AfterBatch,
    Ahead,
    BeforeBatch,
    Coalescer,
    Consumer,
    Handler,
    Keys,
    OnInvalid,
    OutboxRelay,
    RunAhead,
    Sequencer,
    UnitOfWork,
    declare_publishers,
    make_broker,
)
from shared.metrics import CONTENT_TYPE, ScrapeMetrics, prometheus_broker
from shared.settings import ServiceSettings
from shared.tx import Database, PgDatabase, Tx

S = TypeVar("S")
B = TypeVar("B")

log = structlog.get_logger("switchboard.runtime")

INBOX_PRUNE_INTERVAL_S = 3600.0
# Kept from the drain budget for stopping the producer and closing the pool.
CLOSE_S = 1.0


def http_grace_s(settings: ServiceSettings) -> float:
    """The part of `drain_timeout_s` uvicorn gives open HTTP requests and WebSockets on SIGTERM,
    before the lifespan's shutdown (`Runtime.stop`) drains the rest in what remains."""
    return min(5.0, settings.drain_timeout_s / 4)


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
        if settings.metrics_enabled:
            prometheus_broker(self.broker, name)
        declare_publishers(self.broker, self.names, produces)
        self._pool: asyncpg.Pool | None = None
        self.in_memory = database is not None
        self.database: Database = database or PgDatabase(lambda: self.pool)
        self.store_factory = store
        self.batch_factory = batch
        self.source = f"/switchboard/{name}"
        self.relay: OutboxRelay | None = None
        self.consumers: list[Consumer] = []
        # the service's batches that wait together are handled in one transaction (COALESCE_BATCHES)
        self.coalescer: Coalescer | None = Coalescer(name) if settings.coalesce_batches else None
        # starting -> running -> draining -> stopped; only "running" is ready
        self.running_state = "starting"
        self.started_hooks: list[Callable[[], Awaitable[None]]] = []
        self.stopping_hooks: list[Callable[[], Awaitable[None]]] = []
        self.sequencer: Sequencer | None = None
        self._background: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._tasks: list[tuple[str, asyncio.Task[None]]] = []
        self.health = Health(self)
        self.metrics = ScrapeMetrics(self)
        self.group_watchdog = GroupWatchdog(self)
        if database is None:
            self.periodic("inbox-prune", self._prune_inbox, interval_s=INBOX_PRUNE_INTERVAL_S)
            self.periodic("group-watchdog", self.group_watchdog.step, interval_s=WATCHDOG_INTERVAL_S)

    @property
    def ready(self) -> bool:
        return self.running_state == "running"

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: database pool used before start")
        return self._pool

    def background(self, loop: Callable[[], Awaitable[None]], name: str = "") -> None:
        """A loop started with the service, after its start hooks, cancelled on stop. It is meant to
        run until then: one that ends makes the service un-live (`/health/live`)."""
        self._background.append((name or getattr(loop, "__qualname__", "background"), loop))

    def dead_background(self) -> list[str]:
        """Background loops that ended while the service runs (they are meant to run until stop)."""
        return [name for name, task in self._tasks if task.done()]

    async def _prune_inbox(self) -> int:
        async with self.pool.acquire() as conn:
            pruned = await messaging.prune_inbox(conn, self.settings.inbox_retention_hours)
        if pruned:
            log.info("inbox_pruned", service=self.name, rows=pruned)
        return 0  # prune_inbox deletes everything due in bounded chunks; once an interval is enough

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

        self.background(loop, name)

    def unit_of_work(self, tx: Tx) -> UnitOfWork[S, B]:
        return UnitOfWork(
            tx, self.store_factory(tx), self.batch_factory(), self.names, self.source, self.sequencer, self.relay
        )

    @contextlib.asynccontextmanager
    async def transaction(self, *, isolation: str | None = None) -> AsyncIterator[UnitOfWork[S, B]]:
        """A unit of work for a background task or an HTTP handler; its events commit with it."""
        async with self.database.transaction(isolation=isolation) as tx:
            uow = self.unit_of_work(tx)
            yield uow
            await uow.flush()
        uow.committed()

    async def retrying(self, step: Callable[[], Awaitable[None]], what: str, attempts: int = 6) -> None:
        """Run `step` (which opens its own transactions) again after a transient database error —
        a deadlock or serialization failure with another replica starting at the same time —
        with a growing pause; other errors, and the last attempt's, propagate."""
        for attempt in range(1, attempts + 1):
            try:
                await step()
                return
            except Exception as exc:
                if attempt == attempts or not messaging.is_transient(exc):
                    raise
                log.warning("transient_retry", service=self.name, step=what, attempt=attempt, error=repr(exc))
                await asyncio.sleep(min(0.2 * 2**attempt, 3.0))

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
        before_batch: BeforeBatch | None = None,
        on_committed: Callable[[UnitOfWork[S, B]], None] | None = None,
        savepoints: bool = False,
        on_invalid: OnInvalid | None = None,
        background: bool = False,
        ahead: dict[str, Ahead | RunAhead] | None = None,
        keys: Keys | None = None,
    ) -> Consumer:
        """Consume `topic`; `on_invalid` may answer a record refused at parse time (e.g. with
        command.rejected to the agent whose command it was) besides its dead letter. `background`:
        the topic's records are off every conversation's path for this service (a projection, an
        automatic rule), and may wait `background_gather_ms` to be taken together. `ahead` and
        `keys`: handlers' first statements run for a batch's records at once (`Consumer.ahead`)."""
        consumer = Consumer(
            service=self.name,
            topic=topic,
            handlers=handlers,
            database=self.database,
            unit_of_work=self.unit_of_work,
            broker=self.broker,
            settings=self.settings,
            after_batch=after_batch,
            before_batch=before_batch,
            on_committed=on_committed,
            savepoints=savepoints,
            on_invalid=on_invalid,
            coalescer=self.coalescer,
            background=background,
            ahead=ahead,
            keys=keys,
        )
        self.consumers.append(consumer)
        return consumer

    @property
    def database_url(self) -> str:
        return db.with_credentials(self.settings.database_url, self.settings.db_user, self.settings.db_password)

    async def start(self) -> None:
        """Migrate, open the pool, start the relay, then the consumers (and so the broker)."""
        self.running_state = "starting"
        if self.in_memory:  # handler tests: the test broker and the fake stores are all there is
            await production.enforce(self.settings, None)
            for hook in self.started_hooks:
                await hook()
            await self.broker.start()
            self.running_state = "running"
            return
        tracing.configure(self.settings, self.name)
        # production refusals that need no database come first: they hold even when it is unreachable
        await production.enforce(self.settings, None)
        self._pool = await db.create_pool(
            self.database_url,
            self.schema,
            min_size=self.settings.db_pool_min,
            max_size=self.settings.db_pool_max,
            acquire_timeout_s=self.settings.db_acquire_timeout_s,
            connect_timeout_s=self.settings.db_connect_timeout_s,
            statement_timeout_ms=self.settings.db_statement_timeout_ms,
            random_page_cost=self.settings.db_random_page_cost,
        )
        async with self._pool.acquire() as conn:
            # SWITCHBOARD_ENV=production refuses unsafe defaults before anything is changed
            await production.enforce(self.settings, conn)
            applied = await db.migrate(conn, self.schema, self.migrations())
        if applied:
            log.info("migrated", service=self.name, applied=applied)
        for hook in self.started_hooks:
            await hook()
        await self.broker.start()
        if self.settings.relay_enabled:
            self.relay = OutboxRelay(
                self._pool,
                self.schema,
                self.broker,
                crash_before_publish=self.settings.fault_crash_before_publish,
                producer_factory=lambda: messaging.relay_producer(self.settings, f"switchboard-{self.name}-relay"),
            )
            self.relay.start()
        self._tasks = [(name, asyncio.create_task(loop(), name=name)) for name, loop in self._background]  # type: ignore[arg-type]
        self.running_state = "running"
        log.info("service_started", service=self.name, topics=[c.topic for c in self.consumers])

    def migrations(self) -> list[db.Migration]:
        return db.load_migrations("shared", "shared") + db.load_migrations(self.name, self.package)

    async def stop(self) -> None:
        """Drain and stop within `drain_timeout_s` (less uvicorn's share, `http_grace_s`)."""
        if self.running_state in ("draining", "stopped"):
            return
        self.running_state = "draining"  # readiness answers 503 from now on
        if self.in_memory:
            await self._cancel_background()
            for hook in self.stopping_hooks:
                with contextlib.suppress(Exception):
                    await hook()
            await self.broker.stop()
            self.running_state = "stopped"
            return
        started = time.monotonic()
        budget = max(self.settings.drain_timeout_s - http_grace_s(self.settings) - CLOSE_S, 1.0)
        deadline = started + budget
        log.info("drain_started", service=self.name, budget_s=round(budget, 1))
        # 1. stop fetching: each subscriber lets the batch in hand finish (and commit its offsets)
        stopping = [c.subscriber.stop() for c in self.consumers]
        await self._within("consumers", deadline, asyncio.gather(*stopping, return_exceptions=True))
        # 2. background loops: a cancelled unit of work rolls back whole; a committed one is in the outbox
        await self._within("background", deadline, self._cancel_background())
        # 3. the service's own hooks (the gateway closes its sockets with a reconnect hint)
        for hook in self.stopping_hooks:
            await self._within(f"hook {getattr(hook, '__qualname__', hook)}", deadline, hook())
        # 4. publish what is committed but not yet sent, while the producer still runs; what does
        # not fit in the budget stays in the outbox for the next instance (never lost)
        if self.relay is not None:
            remaining = max(deadline - time.monotonic(), 0.1)
            published = await self._within("outbox", deadline + 0.1, self.relay.drain(remaining))
            log.info("outbox_drained", service=self.name, published=published or 0)
        # 5. the producer and the group memberships (subscribers already stopped leave their groups)
        await self._within("broker", deadline + CLOSE_S / 2, self.broker.stop())
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if not await self._within("pool", deadline + CLOSE_S, pool.close(), done=True):
                pool.terminate()
        self.running_state = "stopped"
        log.info("drain_finished", service=self.name, took_s=round(time.monotonic() - started, 2))

    async def _within(self, step: str, deadline: float, work: Awaitable[Any], done: Any = None) -> Any:
        """Await one drain step until `deadline`: its result (or `done`), None when it overran
        (abandoned and logged) or failed."""
        remaining = deadline - time.monotonic()
        task = asyncio.ensure_future(work)
        try:
            result = await asyncio.wait_for(task, max(remaining, 0.01))
            return done if done is not None else result
        except TimeoutError:
            log.error("drain_step_overran", service=self.name, step=step, budget_s=round(max(remaining, 0), 2))
        except Exception as exc:
            log.warning("drain_step_failed", service=self.name, step=step, error=repr(exc))
        return None

    async def _cancel_background(self) -> None:
        for _, task in self._tasks:
            task.cancel()
        for _, task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

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
        def answer(report: Report, extra: dict[str, Any] | None = None) -> JSONResponse:
            body = report.as_json(self.name)
            body.update(extra or {})
            return JSONResponse(body, status_code=200 if report.ok else 503, headers={"Cache-Control": "no-store"})

        async def health(_: Request) -> JSONResponse:
            """Readiness with details (kept for existing clients of /health)."""
            report = await self.health.ready()
            extra: dict[str, Any] = {"consumers": {c.topic: vars(c.stats) for c in self.consumers}}
            extra["relay_published"] = self.relay.published if self.relay else 0
            return answer(report, extra)

        async def live(_: Request) -> JSONResponse:
            return answer(await self.health.live())

        async def ready(_: Request) -> JSONResponse:
            return answer(await self.health.ready())

        async def metrics(_: Request) -> Response:
            return Response(await self.metrics.exposition(), media_type=CONTENT_TYPE)

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            sblogging.configure(self.settings.log_level, self.settings.log_format)
            async with self.running():
                yield

        own: list[BaseRoute] = [Route("/health", health), Route("/health/live", live), Route("/health/ready", ready)]
        if self.settings.metrics_enabled:
            own.append(Route("/metrics", metrics))
        app = Starlette(routes=[*own, *routes], lifespan=lifespan)
        app.state.runtime = self
        return app


def load_config(path: str | None, section: str) -> dict[str, Any]:
    """One section of the YAML configuration file (SWITCHBOARD_CONFIG); {} when unset."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"configuration file {p} does not exist (SWITCHBOARD_CONFIG)")
    doc = read_yaml(p.read_text()) or {}
    return doc.get(section) or {}
