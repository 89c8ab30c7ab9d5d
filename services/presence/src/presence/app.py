"""presence's composition root: `uvicorn --factory presence.app:create_app`."""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from presence import handlers, service
from presence.settings import PresenceSettings
from shared import topics
from shared.db import jsonable
from shared.runtime import Runtime, load_config

PRODUCES = {topics.PRESENCE: "presence.changed with previous, source, reason and closed channels"}


def build_runtime(settings: PresenceSettings | None = None) -> Runtime:
    settings = settings or PresenceSettings()
    runtime: Runtime[Any, Any] = Runtime(
        "presence", settings, package="presence", produces=PRODUCES, store=lambda tx: tx, batch=dict
    )
    handlers.register(runtime)

    async def started() -> None:
        cfg = load_config(settings.config_file or os.environ.get("SWITCHBOARD_CONFIG"), "presence")
        if cfg:
            async with runtime.pool.acquire() as conn, conn.transaction():
                await service.apply_config(conn, cfg)

    runtime.started_hooks.append(started)
    runtime.background(
        lambda: service.run_device_timer(runtime, settings.device_timeout_s, settings.device_sweep_interval_s)
    )
    return runtime


def create_app(settings: PresenceSettings | None = None) -> Starlette:
    runtime = build_runtime(settings)

    async def get_presence(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow(service.Q.get_presence, agent_id)
            history = await conn.fetch(service.Q.list_history, agent_id, 20) if row else []
        if row is None:
            return JSONResponse({"error": f"presence has no record of agent {agent_id!r}"}, status_code=404)
        body = {**dict(row), "history": [dict(h) for h in history]}
        return JSONResponse(jsonable(body))

    async def team_summary(request: Request) -> JSONResponse:
        team = request.path_params["team"]
        async with runtime.pool.acquire() as conn:
            rows = await conn.fetch(service.Q.team_summary, team)
        if not rows:
            return JSONResponse({"error": f"no agents in team {team!r}"}, status_code=404)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return JSONResponse(
            jsonable({"team": team, "agents": len(rows), "by_status": counts, "members": [dict(r) for r in rows]})
        )

    return runtime.http_app(
        [
            Route("/agents/{agent_id}/presence", get_presence),
            Route("/teams/{team}/presence", team_summary),
        ]
    )
