"""sessions' composition root and the agent gateway: `uvicorn --factory sessions.app:create_app`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessions import handlers, service
from sessions.settings import SessionsSettings
from shared import topics
from shared.runtime import Runtime

PRODUCES = {
    topics.SESSIONS: "The agent's topic: offers, sessions, tabs, drafts, unread counts, pane, command.rejected",
    topics.MESSAGES: "Agent replies posted into conversations",
    topics.ROUTING_COMMANDS: "work.pick and work.transfer on the agent's behalf",
    topics.PRESENCE_COMMANDS: "Heartbeats and presence choices relayed from agents' clients",
}


def build_runtime(settings: SessionsSettings | None = None) -> Runtime:
    runtime = Runtime("sessions", settings or SessionsSettings(), package="sessions", produces=PRODUCES)
    handlers.register(runtime)
    return runtime


def create_app(settings: SessionsSettings | None = None) -> Starlette:
    runtime = build_runtime(settings)

    async def workspace(request: Request) -> JSONResponse:
        async with runtime.pool.acquire() as conn:
            body = await service.workspace(conn, request.path_params["agent_id"])
        return JSONResponse(_jsonable(body))

    async def index(_: Request) -> JSONResponse:
        return JSONResponse(
            {"service": "switchboard-sessions", "endpoints": ["/health", "/agents/{agent_id}/workspace"]}
        )

    return runtime.http_app([Route("/", index), Route("/agents/{agent_id}/workspace", workspace)])


def _jsonable(value):  # type: ignore[no-untyped-def]
    from shared.db import jsonable

    return jsonable(value)
