"""routing's composition root: `uvicorn --factory routing.app:create_app`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routing import config, handlers, reads, service
from routing.metrics import register_metrics
from routing.service import RoutingBatch, RoutingRuntime
from routing.settings import RoutingSettings
from routing.store import Decision, FakeRoutingStore, PgRoutingStore, RoutingStore
from shared import topics
from shared.http import HttpError, install, principal_of, read_body, reader_of, service_auth, supervisor_of
from shared.runtime import Runtime
from shared.tx import Database, MemoryDatabase, PgTx, Tx

log = structlog.get_logger("switchboard.routing")

PRODUCES = {
    topics.ROUTING: "Routing decisions: work.queued, work.offered, work.offer_expired, work.assigned, "
    "work.requeued, work.overflowed, work.released, capacity.changed, work.pick_refused"
}
# The drain loop also runs this often when nothing woke it (a missed wake-up costs at most this).
DRAIN_SAFETY_INTERVAL_S = 5.0
# How often routing checks whether the agents' planner statistics are stale (and refreshes them).
STATISTICS_INTERVAL_S = 5.0
# A routing configuration document (YAML or JSON) larger than this is refused (413).
MAX_CONFIG_BYTES = 1024 * 1024


def store_factory(database: Database | None) -> Callable[[Tx], RoutingStore]:
    """PostgreSQL by default; the `FakeRoutingStore` a `MemoryDatabase` holds in handler tests."""
    if isinstance(database, MemoryDatabase):
        fake = next(s for s in database.states if isinstance(s, FakeRoutingStore))
        return lambda tx: fake

    def pg(tx: Tx) -> RoutingStore:
        assert isinstance(tx, PgTx)
        return PgRoutingStore(tx.conn)

    return pg


def _build(settings: RoutingSettings | None, database: Database | None) -> tuple[RoutingRuntime, service.Drainer]:
    settings = settings or RoutingSettings()
    known = service.KnownSetup()
    runtime: RoutingRuntime = Runtime(
        "routing",
        settings,
        package="routing",
        produces=PRODUCES,
        store=store_factory(database),
        batch=lambda: RoutingBatch(
            known=known, drain_with_batch=settings.drain_with_batch, drain_limit=settings.drain_batch
        ),
        database=database,
    )
    drainer = service.Drainer()
    handlers.register(runtime, drainer)

    async def load_configuration() -> None:
        path = settings.config_file or os.environ.get("SWITCHBOARD_CONFIG")
        if path:
            cfg = config.parse(await asyncio.to_thread(Path(path).read_text))
            async with runtime.transaction() as uow:
                changes = await config.apply(uow.store, cfg, source=f"file {path}")
            if changes:
                log.info("configuration_applied", source=path, changes=changes)

    # replicas starting together apply the same file: a deadlock between them is retried
    runtime.started_hooks.append(lambda: runtime.retrying(load_configuration, "load_configuration"))
    runtime.periodic(
        "offer_timer", lambda: service.expire_once(runtime, drainer), interval_s=settings.offer_sweep_interval_s
    )
    # woken after commits that may have freed capacity or queued work, and at start to resync
    runtime.periodic(
        "drain",
        lambda: service.drain_step(runtime, settings.drain_batch, drainer),
        interval_s=DRAIN_SAFETY_INTERVAL_S,
        wake=drainer.wake,
    )
    runtime.periodic(
        "positions", lambda: service.announce_once(runtime), interval_s=settings.position_update_interval_s
    )
    runtime.periodic("statistics", lambda: service.refresh_statistics_once(runtime), interval_s=STATISTICS_INTERVAL_S)
    return runtime, drainer


def build_runtime(settings: RoutingSettings | None = None, database: Database | None = None) -> RoutingRuntime:
    return _build(settings, database)[0]


def held_by(decisions: list[Decision], agent_id: str) -> bool:
    """The agent holds or held the conversation: routing assigned it (or transferred it) to them."""
    return any(
        (d.kind == "assigned" and d.detail.get("agent_id") == agent_id)
        or (d.kind == "transferred" and d.detail.get("to_agent") == agent_id)
        for d in decisions
    )


def create_app(settings: RoutingSettings | None = None, database: Database | None = None) -> Starlette:
    runtime, drainer = _build(settings, database)
    register_metrics(runtime)
    auth = service_auth(runtime)

    async def explain(request: Request) -> JSONResponse:
        """A conversation's routing history: for supervisors, and for the agents who held it."""
        principal = principal_of(request, auth)
        cid = request.path_params["conversation_id"]
        async with runtime.reading() as store:
            decisions = await store.list_decisions(cid)
        if not principal.is_supervisor and not held_by(decisions, principal.subject):
            # the same answer whether or not routing knows it: an agent learns nothing of others' work
            raise HttpError(
                403,
                f"{principal.subject} has not held conversation {cid!r}: its routing history needs the supervisor role",
            )
        if not decisions:
            return JSONResponse({"error": f"routing has no record of conversation {cid!r}"}, status_code=404)
        return JSONResponse(
            {
                "conversation_id": cid,
                "decisions": [
                    {"at": d.at.isoformat() if d.at else None, "kind": d.kind, **d.detail} for d in decisions
                ],
            }
        )

    async def admin_config(request: Request) -> JSONResponse:
        """GET: the applied configuration. POST (YAML or JSON body): validate, diff, and apply
        atomically unless ?dry_run=true. Needs a supervisor token."""
        principal = supervisor_of(request, auth, "changing routing configuration")
        if request.method == "GET":
            async with runtime.reading() as store:
                return JSONResponse({"routing": await store.find_config_document()})
        raw = await read_body(request, max_bytes=MAX_CONFIG_BYTES)
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise HttpError(400, f"the configuration is not UTF-8 text: {exc}") from exc
        try:
            cfg = config.parse(text, section="routing" if "routing:" in text or '"routing"' in text else None)
        except config.ConfigError as exc:
            return JSONResponse({"error": "invalid configuration", "problems": exc.problems}, status_code=422)
        if request.query_params.get("dry_run", "").lower() in ("1", "true", "yes"):
            async with runtime.reading() as store:
                previous = await store.find_config_document()
            return JSONResponse({"dry_run": True, "changes": config.diff(previous, config.document(cfg))})
        async with runtime.transaction() as uow:
            changes = await config.apply(uow.store, cfg, source=f"admin api by {principal.subject}")
        drainer.request()  # new capacity or queues may fit waiting work
        return JSONResponse({"applied": True, "changes": changes})

    async def get_queues(request: Request) -> JSONResponse:
        supervisor_of(request, auth, "reading the queues")
        async with runtime.reading() as store:
            return JSONResponse(await reads.queues(store, datetime.now(UTC)))

    async def get_agents(request: Request) -> JSONResponse:
        supervisor_of(request, auth, "reading every agent's routing state")
        async with runtime.reading() as store:
            return JSONResponse(await reads.agents(store))

    async def get_agent(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        reader_of(request, auth, agent_id, "routing state")
        async with runtime.reading() as store:
            item = await reads.agent(store, agent_id)
        if item is None:
            return JSONResponse({"error": f"routing has no configured agent {agent_id!r}"}, status_code=404)
        return JSONResponse(item)

    async def get_work(request: Request) -> JSONResponse:
        supervisor_of(request, auth, "reading the work in progress")
        raw = request.query_params.get("limit", str(reads.MAX_WORK))
        if not raw.isdigit() or int(raw) < 1:
            return JSONResponse({"error": f"limit must be a positive whole number, not {raw!r}"}, status_code=400)
        async with runtime.reading() as store:
            return JSONResponse(await reads.work(store, datetime.now(UTC), int(raw)))

    return install(
        runtime.http_app(
            [
                Route("/conversations/{conversation_id}/explain", explain),
                Route("/admin/config", admin_config, methods=["GET", "POST"]),
                Route("/queues", get_queues),
                Route("/agents", get_agents),
                Route("/agents/{agent_id}", get_agent),
                Route("/work", get_work),
            ]
        )
    )
