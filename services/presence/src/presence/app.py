"""presence's composition root: `uvicorn --factory presence.app:create_app`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from presence import config, domain, handlers, service
from presence.metrics import register_metrics
from presence.service import PresenceBatch
from presence.settings import PresenceSettings
from presence.store import FakePresenceStore, PgPresenceStore, PresenceStore
from shared import topics
from shared.db import jsonable
from shared.http import install, principal_of, reader_of, service_auth, supervisor_of
from shared.runtime import Runtime
from shared.tx import Database, MemoryDatabase, PgTx, Tx

PRODUCES = {topics.PRESENCE: "presence.changed with previous, source, reason and closed channels"}
HISTORY_SHOWN = 20


def _store_factory(database: Database | None) -> Callable[[Tx], PresenceStore]:
    """PostgreSQL by default; the fake held by a MemoryDatabase in handler tests."""
    if isinstance(database, MemoryDatabase):
        fake = next(s for s in database.states if isinstance(s, FakePresenceStore))
        return lambda tx: fake

    def postgres(tx: Tx) -> PresenceStore:
        assert isinstance(tx, PgTx)
        return PgPresenceStore(tx.conn)

    return postgres


def build_runtime(
    settings: PresenceSettings | None = None, database: Database | None = None
) -> Runtime[PresenceStore, PresenceBatch]:
    settings = settings or PresenceSettings()
    runtime: Runtime[PresenceStore, PresenceBatch] = Runtime(
        "presence",
        settings,
        package="presence",
        produces=PRODUCES,
        store=_store_factory(database),
        batch=PresenceBatch,
        database=database,
    )
    handlers.register(runtime)
    sweep = service.DisconnectSweep(runtime, settings.device_timeout_s)

    async def started() -> None:
        cfg = config.load(settings.config_file or os.environ.get("SWITCHBOARD_CONFIG"))
        async with runtime.transaction() as uow:
            await service.apply_config(uow.store, cfg)
        sweep.restart()

    runtime.started_hooks.append(lambda: runtime.retrying(started, "apply_configuration"))
    runtime.periodic("device_sweep", sweep.step, interval_s=settings.device_sweep_interval_s)
    return runtime


def create_app(settings: PresenceSettings | None = None, database: Database | None = None) -> Starlette:
    runtime = build_runtime(settings, database)
    register_metrics(runtime)
    auth = service_auth(runtime)

    async def get_presence(request: Request) -> JSONResponse:
        """One agent's presence and recent history: the agent's own, or any for a supervisor."""
        agent_id = request.path_params["agent_id"]
        reader_of(request, auth, agent_id, "presence")
        async with runtime.reading() as store:
            record = await store.find_presence(agent_id)
            history = await store.list_history(agent_id, HISTORY_SHOWN) if record else []
        if record is None:
            return JSONResponse({"error": f"presence has no record of agent {agent_id!r}"}, status_code=404)
        body = {**dataclasses.asdict(record), "history": [dataclasses.asdict(h) for h in history]}
        return JSONResponse(jsonable(body))

    async def team_summary(request: Request) -> JSONResponse:
        """A team's presence, for supervisors."""
        team = request.path_params["team"]
        supervisor_of(request, auth, f"reading team {team}'s presence")
        async with runtime.reading() as store:
            members = await store.list_team(team)
        if not members:
            return JSONResponse({"error": f"no agents in team {team!r}"}, status_code=404)
        counts: dict[str, int] = {}
        for m in members:
            counts[m.status] = counts.get(m.status, 0) + 1
        return JSONResponse(
            jsonable(
                {
                    "team": team,
                    "agents": len(members),
                    "by_status": counts,
                    "members": [dataclasses.asdict(m) for m in members],
                }
            )
        )

    async def list_agents(request: Request) -> JSONResponse:
        """Every agent's presence, for the supervisor view."""
        supervisor_of(request, auth, "reading every agent's presence")
        async with runtime.reading() as store:
            agents = await store.list_agents()
        return JSONResponse(jsonable({"agents": [dataclasses.asdict(a) for a in agents]}))

    async def list_statuses(request: Request) -> JSONResponse:
        """The statuses an agent may choose: the base presences, then the configured custom ones."""
        principal_of(request, auth)
        async with runtime.reading() as store:
            custom = await store.list_statuses()
        settable = [s for name, s in domain.base_statuses().items() if name != "inactive"]
        return JSONResponse({"statuses": [dataclasses.asdict(s) for s in [*settable, *custom]]})

    return install(
        runtime.http_app(
            [
                Route("/agents", list_agents),
                Route("/statuses", list_statuses),
                Route("/agents/{agent_id}/presence", get_presence),
                Route("/teams/{team}/presence", team_summary),
            ]
        )
    )
