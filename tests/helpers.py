"""Helpers for the cross-service tests: the four services in-process on a deployment."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from assist.app import build_runtime as assist_runtime
from assist.settings import AssistSettings
from presence.app import build_runtime as presence_runtime
from presence.settings import PresenceSettings
from routing.app import build_runtime as routing_runtime
from routing.settings import RoutingSettings
from sessions.app import build_runtime as sessions_runtime
from sessions.settings import SessionsSettings
from tools import stack
from tools.testing import Deployment

DEMO_CONFIG = str(stack.ROOT / "deploy/demo/switchboard.yaml")


def routing(dep: Deployment, **kw: Any):  # type: ignore[no-untyped-def]
    return routing_runtime(dep.settings(RoutingSettings, "routing", **{"config_file": DEMO_CONFIG, **kw}))


def sessions(dep: Deployment, **kw: Any):  # type: ignore[no-untyped-def]
    return sessions_runtime(dep.settings(SessionsSettings, "sessions", **kw))


def presence(dep: Deployment, **kw: Any):  # type: ignore[no-untyped-def]
    return presence_runtime(dep.settings(PresenceSettings, "presence", **kw))


def assist(dep: Deployment, **kw: Any):  # type: ignore[no-untyped-def]
    return assist_runtime(dep.settings(AssistSettings, "assist", **kw))


def all_services(dep: Deployment) -> list[Any]:
    return [routing(dep), sessions(dep), presence(dep), assist(dep)]


async def routing_sees(
    dep: Deployment, agent: str, presence: str | tuple[str, ...], closed: list[str] | None = None
) -> None:
    """Wait until routing's presence projection holds the change (projections are asynchronous).
    `presence` may list several values: an agent just signed in may already be busy with an offer."""
    wanted = (presence,) if isinstance(presence, str) else presence
    conn = await asyncpg.connect(dep.database_url)
    try:
        for _ in range(400):
            row = await conn.fetchrow("SELECT presence, closed_channels FROM routing.agents WHERE agent_id = $1", agent)
            if row and row["presence"] in wanted and (closed is None or list(row["closed_channels"]) == closed):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"routing never saw {agent} {presence} {closed}")
    finally:
        await conn.close()
