"""sessions' composition root and the agent gateway: `uvicorn --factory sessions.app:create_app`."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from importlib import resources

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from sessions import config, handlers, service
from sessions.customer import CustomerDemo
from sessions.gateway import Gateway, GatewayLimits, Hub, Sockets
from sessions.metrics import register_metrics
from sessions.services_http import Services
from sessions.settings import SessionsSettings
from sessions.store import FakeSessionsStore, PgSessionsStore, SessionsStore
from sessions.supervisor import ON_DEMAND, WATCHED, Limits, Supervisor
from sessions.tail import Tail
from shared import topics
from shared.config import load
from shared.http import install, read_json, service_auth, supervisor_of
from shared.runtime import Runtime
from shared.tx import Database, MemoryDatabase, PgTx, Tx

PRODUCES = {
    topics.SESSIONS: "The agent's topic: offers, sessions, tabs, drafts, unread counts, pane, messages, "
    "presence, supervisor actions, command.rejected",
    topics.MESSAGES: "Agent replies, supervisors' whispers and barge-ins, and the demo page's customer messages",
    topics.SESSIONS_COMMANDS: "Commands received on the gateway's WebSockets: the agent's own, and supervisor.act "
    "from the supervisor stream",
    topics.ROUTING_COMMANDS: "work.pick when an agent opens a waiting conversation; work.transfer",
    topics.PRESENCE_COMMANDS: "Heartbeats of connected clients; presence.set chosen by the agent (or a supervisor)",
    topics.CONVERSATIONS: "conversation.participant_changed when a supervisor joins or leaves; conversation.arrived "
    "from the customer demo page",
}
# Pages: scripts, styles and connections from this origin only, no inline script, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' {ws}; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")


def store_factory(database: Database | None) -> Callable[[Tx], SessionsStore]:
    """PostgreSQL on a PgTx; with a MemoryDatabase, the fake store it holds."""
    if isinstance(database, MemoryDatabase):
        fake = next(s for s in database.states if isinstance(s, FakeSessionsStore))
        return lambda tx: fake

    def on_postgres(tx: Tx) -> SessionsStore:
        assert isinstance(tx, PgTx)
        return PgSessionsStore(tx.conn)

    return on_postgres


def build_runtime(
    settings: SessionsSettings | None = None, database: Database | None = None
) -> Runtime[SessionsStore, service.SessionsBatch]:
    """The service's consumers on PostgreSQL, or on `database` (a MemoryDatabase holding a
    FakeSessionsStore, for handler tests). The `sessions:` configuration is checked here."""
    settings = settings or SessionsSettings()
    cfg = load(settings.config_file or os.environ.get("SWITCHBOARD_CONFIG"), config.SessionsConfig, "sessions")
    runtime: Runtime[SessionsStore, service.SessionsBatch] = Runtime(
        "sessions",
        settings,
        package="sessions",
        produces=PRODUCES,
        store=store_factory(database),
        batch=service.SessionsBatch,
        database=database,
    )
    runtime.sequencer = service.stamp_sequence
    handlers.register(runtime)

    async def apply_configuration() -> None:
        async with runtime.transaction() as uow:
            await service.apply_config(uow.store, cfg)

    runtime.started_hooks.append(lambda: runtime.retrying(apply_configuration, "apply_configuration"))
    return runtime


def page(name: str) -> Callable[[Request], Awaitable[Response]]:
    """One of the package's static pages, with its security headers."""

    async def serve(request: Request) -> Response:
        text = resources.files("sessions").joinpath(f"static/{name}").read_text()
        host = request.headers.get("host", "")
        # WebSockets to this very origin (not every browser counts ws: as 'self')
        ws = f"ws://{host} wss://{host}" if HOST.fullmatch(host) else ""
        headers = {
            "Content-Security-Policy": CSP.format(ws=ws),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        return HTMLResponse(text, headers=headers)

    return serve


def create_app(settings: SessionsSettings | None = None, database: Database | None = None) -> Starlette:
    settings = settings or SessionsSettings()
    runtime = build_runtime(settings, database)
    auth = service_auth(runtime)
    limits = GatewayLimits()
    hub = Hub(
        settings.kafka_bootstrap_servers,
        runtime.names(topics.SESSIONS),
        settings.resume_buffer,
        total=limits.resume_buffer_total,
        idle_s=limits.resume_idle_s,
        socket_queue=limits.socket_queue,
    )
    tail = Tail(
        settings.kafka_bootstrap_servers,
        {name: runtime.names(name) for name in WATCHED},
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        on_demand=ON_DEMAND,
    )
    services = Services(settings)
    sockets = Sockets()
    register_metrics(runtime, sockets)
    gateway = Gateway(runtime, auth, hub, settings.heartbeat_interval_s, services, sockets)
    supervisor = Supervisor(
        runtime,
        auth,
        services,
        tail,
        settings.overview_debounce_s,
        Limits(settings.supervisor_wait_factor, settings.supervisor_wait_s, settings.supervisor_handle_s),
        sockets,
        limits.socket_queue,
    )
    # first on stop: every WebSocket closes with 1012 so its client reconnects to another replica
    runtime.stopping_hooks.insert(0, sockets.close_all)
    if not runtime.in_memory:  # handler tests have no Kafka to tail
        tail.listeners.add(hub.on_record)  # one tail reads sessions.v1 for both
        runtime.started_hooks += [hub.start, tail.start]
        runtime.stopping_hooks += [hub.stop, tail.stop]
        runtime.periodic("gateway_buffers", hub.sweep, interval_s=max(min(limits.resume_idle_s / 4, 60.0), 0.05))
    runtime.stopping_hooks.append(services.close)

    async def profiles(request: Request) -> JSONResponse:
        """Supervisors edit experience profiles: PUT {"settings": {...}}; GET lists them."""
        supervisor_of(request, auth, "editing experience profiles")
        if request.method == "PUT":
            name = request.path_params["name"]
            body = await read_json(request, max_bytes=limits.max_body_bytes)
            if not isinstance(body, dict):
                return JSONResponse({"error": 'send {"settings": {...}, "agents": [...]}'}, status_code=422)
            try:
                profile = config.SessionProfile.model_validate(body.get("settings") or {})
            except ValidationError as exc:
                problems = config.problems(exc)
                return JSONResponse(
                    {"error": f"invalid experience profile {name!r}: {'; '.join(problems)}", "problems": problems},
                    status_code=422,
                )
            agents = body.get("agents") or []
            if not isinstance(agents, list) or not all(isinstance(a, str) and a for a in agents):
                return JSONResponse({"error": "agents: a list of agent ids"}, status_code=422)
            async with runtime.transaction() as uow:
                await service.put_profile(uow.store, name, profile, agents)
        async with runtime.reading() as store:
            stored = await store.list_profiles()
        return JSONResponse({n: p.stored() for n, p in stored.items()})

    routes: list[BaseRoute] = [
        Route("/", page("workspace.html")),
        Route("/supervisor", page("supervisor.html")),
        Mount("/static", StaticFiles(directory=str(resources.files("sessions").joinpath("static"))), name="static"),
        Route("/agents/{agent_id}/workspace", gateway.http_workspace),
        Route("/agents/{agent_id}/commands", gateway.http_command, methods=["POST"]),
        WebSocketRoute("/agents/{agent_id}/stream", gateway.websocket),
        Route("/supervisor/overview", supervisor.http_overview),
        WebSocketRoute("/supervisor/stream", supervisor.websocket),
        Route("/admin/profiles", profiles, methods=["GET"]),
        Route("/admin/profiles/{name}", profiles, methods=["PUT"]),
    ]
    if settings.customer_demo:
        demo = CustomerDemo(
            runtime, auth, tail, sockets, production=settings.production, max_body_bytes=limits.max_body_bytes
        )
        routes += [
            Route("/customer", page("customer.html")),
            Route("/customer/conversations", demo.start, methods=["POST"]),
            WebSocketRoute("/customer/conversations/{conversation_id}/stream", demo.websocket),
        ]
    app = install(runtime.http_app(routes))
    app.state.gateway = gateway
    app.state.supervisor = supervisor
    return app
