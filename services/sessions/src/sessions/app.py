"""sessions' composition root and the agent gateway: `uvicorn --factory sessions.app:create_app`."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute

from sessions import handlers, service
from sessions.gateway import Gateway, Hub
from sessions.settings import SessionsSettings
from shared import topics
from shared.auth import Auth, supervisor_or_error
from shared.runtime import Runtime, load_config

PRODUCES = {
    topics.SESSIONS: "The agent's topic: offers, sessions, tabs, drafts, unread counts, pane, command.rejected",
    topics.MESSAGES: "Agent replies posted into conversations",
    topics.SESSIONS_COMMANDS: "Commands received on the gateway's WebSocket, on the agent's behalf",
    topics.ROUTING_COMMANDS: "work.pick when an agent opens a waiting conversation",
    topics.PRESENCE_COMMANDS: "Heartbeats of connected clients",
}


def build_runtime(settings: SessionsSettings | None = None) -> Runtime:
    settings = settings or SessionsSettings()
    runtime: Runtime[Any, Any] = Runtime(
        "sessions", settings, package="sessions", produces=PRODUCES, store=lambda tx: tx
    )
    runtime.sequencer = service.stamp_sequence
    handlers.register(runtime)

    async def load_configuration() -> None:
        cfg = load_config(settings.config_file or os.environ.get("SWITCHBOARD_CONFIG"), "sessions")
        async with runtime.pool.acquire() as conn, conn.transaction():
            await service.apply_config(conn, cfg)

    runtime.started_hooks.append(load_configuration)
    return runtime


def create_app(settings: SessionsSettings | None = None) -> Starlette:
    settings = settings or SessionsSettings()
    runtime = build_runtime(settings)
    auth = Auth(settings.gateway_secret, settings.oidc_jwks_url, settings.oidc_issuer, settings.oidc_audience)
    hub = Hub(settings.kafka_bootstrap_servers, runtime.names(topics.SESSIONS), settings.resume_buffer)
    gateway = Gateway(runtime, auth, hub, settings.heartbeat_interval_s, service.workspace)
    runtime.started_hooks.append(hub.start)
    runtime.stopping_hooks.append(hub.stop)

    async def index(_: Request) -> HTMLResponse:
        page = resources.files("sessions").joinpath("static/workspace.html").read_text()
        return HTMLResponse(page)

    async def profiles(request: Request) -> JSONResponse:
        """Supervisors edit experience profiles: PUT {"settings": {...}}; GET lists them."""
        principal, error, status = supervisor_or_error(
            auth, request.headers, request.query_params, "editing experience profiles"
        )
        if principal is None:
            return JSONResponse({"error": error}, status_code=status)
        async with runtime.pool.acquire() as conn:
            if request.method == "PUT":
                name = request.path_params.get("name")
                body = await request.json()
                try:
                    await service.apply_config(
                        conn,
                        {
                            "profiles": {name: body.get("settings") or {}},
                            "agents": {a: {"profile": name} for a in body.get("agents", [])},
                        },
                    )
                except ValueError as exc:
                    return JSONResponse({"error": str(exc)}, status_code=422)
            rows = await conn.fetch(service.Q.list_profiles)
        return JSONResponse({r["name"]: r["settings"] for r in rows})

    app = runtime.http_app(
        [
            Route("/", index),
            Route("/agents/{agent_id}/workspace", gateway.http_workspace),
            WebSocketRoute("/agents/{agent_id}/stream", gateway.websocket),
            Route("/admin/profiles", profiles, methods=["GET"]),
            Route("/admin/profiles/{name}", profiles, methods=["PUT"]),
        ]
    )
    app.state.gateway = gateway
    return app
