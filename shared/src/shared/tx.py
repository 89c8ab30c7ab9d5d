"""Transactions as the consumer pipeline and the use cases see them: on PostgreSQL, or in memory.

A `Database` opens transactions. A `Tx` claims event ids in the inbox, writes outbox rows and
takes savepoints; each service builds its own store on a `Tx` (its `store_factory`).

- `PgDatabase` / `PgTx`: a pooled asyncpg connection in a transaction; the service's Postgres store
  runs its named queries on `tx.conn`.
- `MemoryDatabase` / `MemoryTx`: for handler tests. It holds the fake stores' state, an inbox and an
  outbox, and gives every transaction (and savepoint) all-or-nothing semantics by restoring a deep
  copy of that state when the block fails. Transactions run one at a time, as if serialisable.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from shared.db import Conn, Queries, columns

Q = Queries("shared")


@dataclass(frozen=True)
class OutboxRow:
    topic: str
    key: str | None
    payload: bytes
    headers: dict[str, str]


class Tx(Protocol):
    """One open transaction."""

    async def claim_inbox(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record `event_ids` as handled by `consumer`; returns those not seen before."""
        ...

    async def claim_inbox_many(self, claims: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """`claim_inbox` for several consumers: (consumer, event id) pairs; returns those not seen before."""
        ...

    async def write_outbox(self, rows: Sequence[OutboxRow]) -> list[int]:
        """Store the events; returns their outbox ids, in the order of `rows`."""
        ...

    @property
    def server_pid(self) -> int | None:
        """The database session's process id (its NOTIFYs name it), when there is one."""
        ...

    def savepoint(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A nested block whose effects are undone when it raises."""
        ...


class Database(Protocol):
    def transaction(self, *, isolation: str | None = None) -> contextlib.AbstractAsyncContextManager[Tx]: ...


class PgTx:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def claim_inbox(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        rows = await self.conn.fetch(Q.claim_inbox, consumer, list(dict.fromkeys(event_ids)))
        return {r["event_id"] for r in rows}

    async def claim_inbox_many(self, claims: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        unique = list(dict.fromkeys(claims))
        rows = await self.conn.fetch(Q.claim_inbox_many, [c for c, _ in unique], [i for _, i in unique])
        return {(r["consumer"], r["event_id"]) for r in rows}

    async def write_outbox(self, rows: Sequence[OutboxRow]) -> list[int]:
        if not rows:
            return []
        # ids are drawn in the rows' order (insert_outbox), so sorted they are the rows' ids in order
        found = await self.conn.fetch(Q.insert_outbox, *columns(rows, "topic", "key", "payload", "headers"))
        return sorted(r["id"] for r in found)

    @property
    def server_pid(self) -> int | None:
        return self.conn.get_server_pid()

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            yield


class PgDatabase:
    """Transactions on a connection pool (the pool is looked up late: it opens at service start)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self, *, isolation: str | None = None) -> AsyncIterator[PgTx]:
        async with self._pool().acquire() as conn, conn.transaction(isolation=isolation):  # type: ignore[arg-type]
            yield PgTx(conn)


class MemoryTx:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    async def claim_inbox(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        fresh = {i for i in dict.fromkeys(event_ids) if (consumer, i) not in self.db.inbox}
        self.db.inbox.update((consumer, i) for i in fresh)
        return fresh

    async def claim_inbox_many(self, claims: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        fresh = {claim for claim in dict.fromkeys(claims) if claim not in self.db.inbox}
        self.db.inbox.update(fresh)
        return fresh

    async def write_outbox(self, rows: Sequence[OutboxRow]) -> list[int]:
        first = len(self.db.outbox) + 1
        self.db.outbox.extend(rows)
        return list(range(first, first + len(rows)))

    @property
    def server_pid(self) -> int | None:
        return None

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        saved = self.db.snapshot()
        try:
            yield
        except BaseException:
            self.db.restore(saved)
            raise


class MemoryDatabase:
    """In-memory transactions over fake stores (`states`), with an inbox and an outbox."""

    def __init__(self, *states: Any) -> None:
        self.states = list(states)
        self.inbox: set[tuple[str, str]] = set()
        self.outbox: list[OutboxRow] = []
        self._lock = asyncio.Lock()

    def snapshot(self) -> Any:
        return copy.deepcopy(([vars(s) for s in self.states], self.inbox, self.outbox))

    def restore(self, saved: Any) -> None:
        states, self.inbox, self.outbox = saved
        for state, values in zip(self.states, states, strict=True):
            vars(state).clear()
            vars(state).update(values)

    @contextlib.asynccontextmanager
    async def transaction(self, *, isolation: str | None = None) -> AsyncIterator[MemoryTx]:
        async with self._lock:
            saved = self.snapshot()
            try:
                yield MemoryTx(self)
            except BaseException:
                self.restore(saved)
                raise

    def take_outbox(self) -> list[OutboxRow]:
        """What committed transactions wrote to the outbox since the last call."""
        rows, self.outbox = self.outbox, []
        return rows
