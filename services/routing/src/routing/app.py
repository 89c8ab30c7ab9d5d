"""routing's composition root: `uvicorn --factory routing.app:create_app`."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routing import handlers, service
from routing.settings import RoutingSettings
from shared import topics
from shared.runtime import Runtime, load_config

PRODUCES = {
    topics.ROUTING: "Routing decisions: work.queued, work.offered, work.offer_expired, work.assigned, "
    "work.requeued, work.overflowed, work.released, capacity.changed, work.pick_refused"
}


def build_runtime(settings: RoutingSettings | None = None) -> Runtime:
    settings = settings or RoutingSettings()
    runtime = Runtime("routing", settings, package="routing", produces=PRODUCES)
    drainer = service.Drainer(runtime, limit=settings.drain_batch)
    runtime.drainer = drainer  # type: ignore[attr-defined]
    handlers.register(runtime, drainer)
    timer: list[asyncio.Task[None]] = []

    async def load_configuration() -> None:
        import os

        cfg = load_config(settings.config_file or os.environ.get("SWITCHBOARD_CONFIG"), "routing")
        if cfg:
            async with runtime.pool.acquire() as conn, conn.transaction():
                await service.apply_config(conn, cfg)
        timer.append(asyncio.create_task(service.run_offer_timer(runtime, settings.offer_sweep_interval_s, drainer)))
        timer.append(asyncio.create_task(drainer.run()))

    async def stop_timer() -> None:
        for t in timer:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    runtime.started_hooks.append(load_configuration)
    runtime.stopping_hooks.append(stop_timer)
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

    return runtime.http_app([Route("/conversations/{conversation_id}/explain", explain)])
