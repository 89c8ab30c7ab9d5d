"""Postgres access shared by the services: pool with the service's search_path, named queries,
and a forward-only migration runner that records what it applied in the service's schema."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import orjson

# What use cases receive: a plain connection or one borrowed from a pool.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ident(name: str) -> str:
    """Validate an SQL identifier we build statements with (schema and role names)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def with_credentials(url: str, user: str, password: str) -> str:
    """The same database URL with another login role."""
    if not user:
        return url
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(user)}:{quote(password)}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def create_pool(url: str, schema: str, *, min_size: int = 1, max_size: int = 8) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first, with JSON codecs set."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": f"{ident(schema)},public", "application_name": schema},
        init=_init_connection,
    )
    assert pool is not None
    return pool


class Queries:
    """Named queries from a package's `sql/*.sql` files: `-- name: get_thing` blocks."""

    def __init__(self, package: str) -> None:
        self._q: dict[str, str] = {}
        for entry in resources.files(package).joinpath("sql").iterdir():
            if entry.name.endswith(".sql"):
                self._load(entry.read_text())

    def _load(self, text: str) -> None:
        name = None
        lines: list[str] = []
        for line in text.splitlines():
            m = re.match(r"^--\s*name:\s*(\w+)", line)
            if m:
                if name:
                    self._q[name] = "\n".join(lines).strip()
                name, lines = m.group(1), []
            elif name:
                lines.append(line)
        if name:
            self._q[name] = "\n".join(lines).strip()

    def __getattr__(self, name: str) -> str:
        try:
            return self._q[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(component: str, package: str) -> list[Migration]:
    """Read `NNNN_name.sql` files of `package`'s `migrations/` folder, in order."""
    out = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        m = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if m:
            out.append(Migration(component, int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(out, key=lambda mig: mig.version)


class MigrationError(RuntimeError):
    pass


async def migrate(conn: Conn, schema: str, migrations: Iterable[Migration]) -> list[str]:
    """Apply the migrations not yet recorded in `schema`, each in its own transaction.

    Forward-only: an applied migration whose file has changed is an error, not a re-run.
    Concurrent runners (several replicas starting) serialise on an advisory lock.
    """
    schema = ident(schema)
    applied: list[str] = []
    # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists, and a
    # service's role owns its schema but has no CREATE on the database.
    if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
        await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
              component text NOT NULL, version int NOT NULL, name text NOT NULL,
              checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (component, version))"""
    )
    lock = int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_lock($1)", lock)
    try:
        rows = await conn.fetch(f"SELECT component, version, checksum FROM {schema}.schema_migrations")
        done = {(r["component"], r["version"]): r["checksum"] for r in rows}
        for mig in migrations:
            key = (mig.component, mig.version)
            if key in done:
                if done[key] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.component}/{mig.version:04d}_{mig.name} was changed after it "
                        "was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}, public")
                await conn.execute(mig.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (component, version, name, checksum) "
                    "VALUES ($1, $2, $3, $4)",
                    mig.component,
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            applied.append(f"{mig.component}/{mig.version:04d}_{mig.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied


def jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))
