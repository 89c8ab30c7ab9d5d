"""routing's composition root: `uvicorn --factory routing.app:create_app`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routing import config, handlers, service
from routing.settings import RoutingSettings
from shared import topics
from shared.auth import Auth, supervisor_or_error
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.routing")

PRODUCES = {
    topics.ROUTING: "Routing decisions: work.queued, work.offered, work.offer_expired, work.assigned, "
    "work.requeued, work.overflowed, work.released, capacity.changed, work.pick_refused"
}


def build_runtime(settings: RoutingSettings | None = None) -> Runtime:
    settings = settings or RoutingSettings()
    runtime: Runtime[Any, Any] = Runtime(
        "routing", settings, package="routing", produces=PRODUCES, store=lambda tx: tx, batch=dict
    )
    drainer = service.Drainer(runtime, limit=settings.drain_batch)
    runtime.drainer = drainer  # type: ignore[attr-defined]
    handlers.register(runtime, drainer)

    async def load_configuration() -> None:
        import os

        path = settings.config_file or os.environ.get("SWITCHBOARD_CONFIG")
        if path:
            cfg = config.parse(await asyncio.to_thread(Path(path).read_text))
            async with runtime.pool.acquire() as conn, conn.transaction():
                changes = await config.apply(conn, cfg, source=f"file {path}")
            if changes:
                log.info("configuration_applied", source=path, changes=changes)

    runtime.started_hooks.append(load_configuration)
    runtime.background(lambda: service.run_offer_timer(runtime, settings.offer_sweep_interval_s, drainer))
    runtime.background(drainer.run)
    runtime.background(lambda: service.run_position_updates(runtime, settings.position_update_interval_s))
    return runtime


def create_app(settings: RoutingSettings | None = None) -> Starlette:
    runtime = build_runtime(settings)

    async def explain(request: Request) -> JSONResponse:
        from routing.store import Q

        cid = request.path_params["conversation_id"]
        async with runtime.pool.acquire() as conn:
            rows = await conn.fetch(Q.list_decisions, cid)
        if not rows:
            return JSONResponse({"error": f"routing has no record of conversation {cid!r}"}, status_code=404)
        return JSONResponse(
            {
                "conversation_id": cid,
                "decisions": [{"at": r["at"].isoformat(), "kind": r["kind"], **r["detail"]} for r in rows],
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
        async with runtime.pool.acquire() as conn:
            if request.method == "GET":
                doc = await conn.fetchval("SELECT document FROM config_applied ORDER BY id DESC LIMIT 1")
                return JSONResponse({"routing": doc})
            text = (await request.body()).decode()
            try:
                cfg = config.parse(text, section="routing" if "routing:" in text or '"routing"' in text else None)
            except config.ConfigError as exc:
                return JSONResponse({"error": "invalid configuration", "problems": exc.problems}, status_code=422)
            dry = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
            async with conn.transaction():
                previous = await conn.fetchval("SELECT document FROM config_applied ORDER BY id DESC LIMIT 1")
                if dry:
                    return JSONResponse({"dry_run": True, "changes": config.diff(previous, config.document(cfg))})
                changes = await config.apply(conn, cfg, source=f"admin api by {principal.subject}")
        runtime.drainer.request()  # type: ignore[attr-defined]  # new capacity or queues may fit waiting work
        return JSONResponse({"applied": True, "changes": changes})

    return runtime.http_app(
        [
            Route("/conversations/{conversation_id}/explain", explain),
            Route("/admin/config", admin_config, methods=["GET", "POST"]),
        ]
    )
