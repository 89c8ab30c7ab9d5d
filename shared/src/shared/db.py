"""Postgres access shared by the services: pool with the service's search_path, named queries,
and a forward-only migration runner that records what it applied in the service's schema."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
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


class PooledConnection(asyncpg.Connection):
    """A pool's connection whose return to the pool costs no round trip.

    asyncpg resets every connection it takes back with one statement (RESET ALL, UNLISTEN *, unlock
    advisory locks, CLOSE ALL): a round trip per transaction, which on a conversation's path is a
    fifth of the statements. Our use cases leave no session state (their settings are SET LOCAL,
    their locks transaction-scoped), and an open transaction is still rolled back on release
    (asyncpg always does that). A user that leaves session state (the relay's LISTEN and advisory
    lock, migrations' lock and settings) calls `keep_session_state()` and gets the full reset."""

    _session_state = False

    def keep_session_state(self) -> None:
        """This connection will hold session state: reset it fully when it goes back to the pool."""
        self._session_state = True

    def get_reset_query(self) -> str:
        if self._session_state:
            self._session_state = False
            return super().get_reset_query()
        return ""


def keeps_session_state(conn: Any) -> None:
    """Mark a pooled connection (or its proxy) as holding session state (see `PooledConnection`)."""
    mark = getattr(conn, "keep_session_state", None)
    if mark is not None:
        mark()


class Pool(asyncpg.Pool):
    """asyncpg's pool whose `acquire()` waits at most `acquire_timeout` seconds by default (an
    exhausted pool raises TimeoutError instead of queueing the caller forever)."""

    acquire_timeout: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    url: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    acquire_timeout_s: float | None = 5.0,
    connect_timeout_s: float = 5.0,
    statement_timeout_ms: int = 15_000,
    random_page_cost: float = 0.0,
    command_timeout_s: float | None = None,
    keepalives_idle_s: int = 30,
    keepalives_interval_s: int = 10,
    keepalives_count: int = 3,
) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first, with JSON codecs set, and bounded
    waits: acquiring a connection (`acquire_timeout_s`), connecting (`connect_timeout_s`), each
    statement on the server (`statement_timeout_ms`, 0: none) and on the client (`command_timeout_s`,
    by default the statement timeout plus 5 s so the server's, which names the statement, fires
    first). TCP keepalives let the server notice a vanished client within about
    idle + interval * count seconds, and free its locks. `random_page_cost` > 0 sets the planner's
    price of a random page read on these connections (0: the server's)."""
    if command_timeout_s is None and statement_timeout_ms > 0:
        command_timeout_s = statement_timeout_ms / 1000 + 5.0
    planner = {"random_page_cost": repr(float(random_page_cost))} if random_page_cost > 0 else {}
    pool = Pool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        loop=None,
        connection_class=PooledConnection,
        record_class=asyncpg.Record,
        timeout=connect_timeout_s,
        command_timeout=command_timeout_s,
        server_settings={
            "search_path": f"{ident(schema)},public",
            "application_name": schema,
            "statement_timeout": str(int(statement_timeout_ms)),
            "tcp_keepalives_idle": str(int(keepalives_idle_s)),
            "tcp_keepalives_interval": str(int(keepalives_interval_s)),
            "tcp_keepalives_count": str(int(keepalives_count)),
            **planner,
        },
    )
    pool.acquire_timeout = acquire_timeout_s
    await pool
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


# The client-side bound on one migration statement (the pool's command timeout is for normal work).
MIGRATION_TIMEOUT_S = 6 * 3600.0


async def migrate(conn: Conn, schema: str, migrations: Iterable[Migration]) -> list[str]:
    """Apply the migrations not yet recorded in `schema`, each in its own transaction.

    Forward-only: an applied migration whose file has changed is an error, not a re-run.
    Concurrent runners (several replicas starting) serialise on an advisory lock.
    """
    schema = ident(schema)
    applied: list[str] = []
    keeps_session_state(conn)  # its lock and statement_timeout are the session's
    # A migration may rewrite a large table, and a replica starting beside another waits for its
    # migrations on the lock: neither is bounded by the pool's statement timeout.
    await conn.execute("SET statement_timeout = 0", timeout=MIGRATION_TIMEOUT_S)
    # The lock comes first: two replicas creating the schema or its table at once collide even with
    # IF NOT EXISTS (a unique violation in pg_type: the second replica's start failed).
    lock = int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_lock($1)", lock, timeout=MIGRATION_TIMEOUT_S)
    try:
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
                await conn.execute(mig.sql, timeout=MIGRATION_TIMEOUT_S)
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
        await conn.execute("RESET statement_timeout")
    return applied


def jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def columns(items: Sequence[Any], *fields: str) -> list[list[Any]]:
    """The items' `fields`, one list per field: the arrays of an `unnest($1::text[], $2::int[], ...)`
    statement that writes many rows at once."""
    return [[getattr(item, name) for item in items] for name in fields]
