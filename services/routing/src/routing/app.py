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
from routing.service import RoutingBatch, RoutingRuntime
from routing.settings import RoutingSettings
from routing.store import FakeRoutingStore, PgRoutingStore, RoutingStore
from shared import topics
from shared.auth import Auth, Unauthorised, supervisor_or_error, token_of
from shared.runtime import Runtime
from shared.tx import Database, MemoryDatabase, PgTx, Tx

log = structlog.get_logger("switchboard.routing")

PRODUCES = {
    topics.ROUTING: "Routing decisions: work.queued, work.offered, work.offer_expired, work.assigned, "
    "work.requeued, work.overflowed, work.released, capacity.changed, work.pick_refused"
}
# The drain loop also runs this often when nothing woke it (a missed wake-up costs at most this).
DRAIN_SAFETY_INTERVAL_S = 5.0


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
    runtime: RoutingRuntime = Runtime(
        "routing",
        settings,
        package="routing",
        produces=PRODUCES,
        store=store_factory(database),
        batch=RoutingBatch,
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

    runtime.started_hooks.append(load_configuration)
    runtime.periodic(
        "offer_timer", lambda: service.expire_once(runtime, drainer), interval_s=settings.offer_sweep_interval_s
    )
    # woken after commits that may have freed capacity or queued work, and at start to resync
    runtime.periodic(
        "drain",
        lambda: service.drain_once(runtime, settings.drain_batch, drainer),
        interval_s=DRAIN_SAFETY_INTERVAL_S,
        wake=drainer.wake,
    )
    runtime.periodic(
        "positions", lambda: service.announce_once(runtime), interval_s=settings.position_update_interval_s
    )
    return runtime, drainer


def build_runtime(settings: RoutingSettings | None = None, database: Database | None = None) -> RoutingRuntime:
    return _build(settings, database)[0]


def create_app(settings: RoutingSettings | None = None, database: Database | None = None) -> Starlette:
    runtime, drainer = _build(settings, database)

    async def explain(request: Request) -> JSONResponse:
        cid = request.path_params["conversation_id"]
        async with runtime.reading() as store:
            decisions = await store.list_decisions(cid)
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

    auth = Auth.from_env()

    async def admin_config(request: Request) -> JSONResponse:
        """GET: the applied configuration. POST (YAML or JSON body): validate, diff, and apply
        atomically unless ?dry_run=true. Needs a supervisor token."""
        principal, error, status = supervisor_or_error(
            auth, request.headers, request.query_params, "changing routing configuration"
        )
        if principal is None:
            return JSONResponse({"error": error}, status_code=status)
        if request.method == "GET":
            async with runtime.reading() as store:
                return JSONResponse({"routing": await store.find_config_document()})
        text = (await request.body()).decode()
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

    def supervisor_only(request: Request, action: str) -> JSONResponse | None:
        principal, error, status = supervisor_or_error(auth, request.headers, request.query_params, action)
        return None if principal is not None else JSONResponse({"error": error}, status_code=status)

    async def get_queues(request: Request) -> JSONResponse:
        if refused := supervisor_only(request, "reading the queues"):
            return refused
        async with runtime.reading() as store:
            return JSONResponse(await reads.queues(store, datetime.now(UTC)))

    async def get_agents(request: Request) -> JSONResponse:
        if refused := supervisor_only(request, "reading every agent's routing state"):
            return refused
        async with runtime.reading() as store:
            return JSONResponse(await reads.agents(store))

    async def get_agent(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        try:
            principal = auth.verify(token_of(request.headers, request.query_params))
        except Unauthorised as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        if not principal.can_read(agent_id):
            return JSONResponse(
                {"error": f"reading {agent_id}'s routing state needs {agent_id}'s own token or the supervisor role"},
                status_code=403,
            )
        async with runtime.reading() as store:
            item = await reads.agent(store, agent_id)
        if item is None:
            return JSONResponse({"error": f"routing has no configured agent {agent_id!r}"}, status_code=404)
        return JSONResponse(item)

    async def get_work(request: Request) -> JSONResponse:
        if refused := supervisor_only(request, "reading the work in progress"):
            return refused
        raw = request.query_params.get("limit", str(reads.MAX_WORK))
        if not raw.isdigit() or int(raw) < 1:
            return JSONResponse({"error": f"limit must be a positive whole number, not {raw!r}"}, status_code=400)
        async with runtime.reading() as store:
            return JSONResponse(await reads.work(store, datetime.now(UTC), int(raw)))

    return runtime.http_app(
        [
            Route("/conversations/{conversation_id}/explain", explain),
            Route("/admin/config", admin_config, methods=["GET", "POST"]),
            Route("/queues", get_queues),
            Route("/agents", get_agents),
            Route("/agents/{agent_id}", get_agent),
            Route("/work", get_work),
        ]
    )
