"""presence's composition root: `uvicorn --factory presence.app:create_app`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from presence import handlers
from presence.settings import PresenceSettings
from shared import topics
from shared.runtime import Runtime

PRODUCES = {topics.PRESENCE: "presence.changed with previous, source and reason"}


def build_runtime(settings: PresenceSettings | None = None) -> Runtime:
    runtime = Runtime("presence", settings or PresenceSettings(), package="presence", produces=PRODUCES)
    handlers.register(runtime)
    return runtime


def create_app(settings: PresenceSettings | None = None) -> Starlette:
    runtime = build_runtime(settings)

    async def get_presence(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, manual, updated_at FROM agents WHERE agent_id = $1", agent_id)
        if row is None:
            return JSONResponse({"error": f"presence has no record of agent {agent_id!r}"}, status_code=404)
        return JSONResponse(
            {
                "agent_id": agent_id,
                "status": row["status"],
                "manual": row["manual"],
                "since": row["updated_at"].isoformat(),
            }
        )

    return runtime.http_app([Route("/agents/{agent_id}/presence", get_presence)])
