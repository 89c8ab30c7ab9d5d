"""routing's Postgres access: named queries in sql/, domain objects out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from routing import domain
from shared.db import Conn, Queries

Q = Queries("routing")


def _agent(r: asyncpg.Record) -> domain.AgentView:
    return domain.AgentView(
        agent_id=r["agent_id"],
        presence=r["presence"],
        queues=frozenset(r["queues"]),
        limits={k: int(v) for k, v in r["limits"].items()},
        used={k: int(v) for k, v in r["used"].items()},
        exclusive=frozenset(r["exclusive"]),
        auto_accept=frozenset(r["auto_accept"]),
        total_used=r["total_used"],
        exclusive_held=r["exclusive_held"],
        idle_since=r["idle_since"],
        closed_channels=frozenset(r["closed_channels"]),
        skills={k: int(v) for k, v in (r["skills"] or {}).items()},
        last_assigned_at=r["last_assigned_at"],
    )


async def list_queues(conn: Conn) -> dict[str, domain.Queue]:
    rows = await conn.fetch(Q.list_queues)
    return {
        r["name"]: domain.Queue(
            r["name"],
            tuple(r["channels"]),
            r["assignment_method"],
            tuple(r["allowed_presences"]),
            r["priority"],
            r["offer_timeout_s"],
            r["skill_matching"],
            r["closest_after_s"],
            r["operating_hours"],
            r["overflow"],
            tuple(r["prioritisation"] or ()),
            r["preferred_wait_s"],
        )
        for r in rows
    }


async def list_rules(conn: Conn) -> list[domain.Rule]:
    return [domain.Rule(r["name"], r["queue"], r["conditions"]) for r in await conn.fetch(Q.list_rules)]


async def list_default_queues(conn: Conn) -> dict[str, str]:
    return {r["channel"]: r["queue"] for r in await conn.fetch(Q.list_default_queues)}


async def list_channels(conn: Conn) -> dict[str, bool]:
    return {r["name"]: r["exclusive"] for r in await conn.fetch(Q.list_channels)}


async def list_candidate_agents(
    conn: Conn, presences: list[str], channels: list[str], limit: int
) -> list[domain.AgentView]:
    """The `limit` longest-idle agents with a free unit in one of `channels` (an index walk)."""
    return [_agent(r) for r in await conn.fetch(Q.list_candidate_agents, presences, channels, limit)]


async def list_waiting_work(conn: Conn, limit: int) -> list[tuple[domain.WaitingWork, dict[str, Any]]]:
    rows = await conn.fetch(Q.list_waiting_work, limit)
    return [
        (
            domain.WaitingWork(
                r["conversation_id"],
                r["channel"],
                r["queue"],
                r["enqueued_at"],
                r["priority"],
                frozenset(r["passed_by"]),
                {k: int(v) for k, v in (r["required_skills"] or {}).items()},
                (r["arrival"] or {}).get("attributes") or {},
                (r["arrival"] or {}).get("preferred_agent_id"),
            ),
            r["arrival"],
        )
        for r in rows
    ]


async def reserve_capacity(conn: Conn, agent_id: str, channel: str, presences: list[str]) -> asyncpg.Record | None:
    return await conn.fetchrow(Q.reserve_capacity, agent_id, channel, presences)


async def release_capacity(conn: Conn, agent_id: str, channel: str) -> asyncpg.Record | None:
    return await conn.fetchrow(Q.release_capacity, agent_id, channel)


async def insert_work(
    conn: Conn,
    conversation_id: str,
    channel: str,
    queue: str,
    priority: int,
    arrival: dict[str, Any],
    at: datetime,
) -> bool:
    skills = arrival.get("required_skills") or {}
    return (
        await conn.fetchval(Q.insert_work, conversation_id, channel, queue, priority, arrival, at, skills) is not None
    )


async def list_agents_by_id(conn: Conn, agent_ids: list[str]) -> list[domain.AgentView]:
    return [_agent(r) for r in await conn.fetch(Q.list_agents_by_id, agent_ids)]
