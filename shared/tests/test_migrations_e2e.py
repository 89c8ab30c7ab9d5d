"""The migration runner: an empty schema migrates, a second run is a no-op, a changed file is refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared import db
from tools import stack
from tools.testing import Deployment

pytestmark = pytest.mark.e2e

SERVICES = {"routing": "routing", "sessions": "sessions", "presence": "presence", "assist": "assist"}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_migrating_twice_is_a_no_op(deployment: Deployment, service: str) -> None:
    url = stack.service_database_url(deployment.database_url, service)
    migrations = db.load_migrations("shared", "shared") + db.load_migrations(service, SERVICES[service])
    conn = await asyncpg.connect(url)
    try:
        first = await db.migrate(conn, service, migrations)
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", service)
        second = await db.migrate(conn, service, migrations)
        assert len(first) == len(migrations) and second == []
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", service) == tables
    finally:
        await conn.close()


async def test_replicas_starting_together_migrate_once_and_all_start(deployment: Deployment) -> None:
    """Several replicas of a service migrate its empty schema at the same moment: one applies the
    migrations, the others find them applied; none fails (creating the migrations table at once
    used to collide in PostgreSQL's catalog, and a replica's start failed)."""
    url = stack.service_database_url(deployment.database_url, "assist")
    migrations = db.load_migrations("shared", "shared") + db.load_migrations("assist", "assist")
    conns = [await asyncpg.connect(url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.migrate(conn, "assist", migrations) for conn in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, len(migrations)]
    finally:
        for conn in conns:
            await conn.close()


async def test_a_changed_migration_is_refused(deployment: Deployment) -> None:
    url = stack.service_database_url(deployment.database_url, "assist")
    migrations = db.load_migrations("assist", "assist")
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn, "assist", migrations)
        changed = [db.Migration(m.component, m.version, m.name, m.sql + "\n-- edited") for m in migrations]
        with pytest.raises(db.MigrationError, match="was changed after it was applied"):
            await db.migrate(conn, "assist", changed)
    finally:
        await conn.close()


async def test_a_service_role_cannot_read_another_services_schema(deployment: Deployment) -> None:
    routing = await asyncpg.connect(stack.service_database_url(deployment.database_url, "routing"))
    sessions = await asyncpg.connect(stack.service_database_url(deployment.database_url, "sessions"))
    try:
        await db.migrate(routing, "routing", db.load_migrations("routing", "routing"))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await sessions.fetch("SELECT * FROM routing.agents")
    finally:
        await routing.close()
        await sessions.close()
