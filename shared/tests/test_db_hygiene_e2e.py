"""Database hygiene (issue 12) on real PostgreSQL: bounded waits on the pool, timeouts that classify
as transient, migrations not cut short by them, and the inbox pruned in chunks."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from shared import db, messaging
from tools import stack
from tools.testing import Deployment

pytestmark = pytest.mark.e2e


async def test_the_pool_bounds_every_wait_and_keeps_connections_alive(deployment: Deployment) -> None:
    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence", max_size=1, acquire_timeout_s=0.3, statement_timeout_ms=300)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "300ms"
            assert await conn.fetchval("SHOW tcp_keepalives_idle") == "30"
            with pytest.raises(asyncpg.exceptions.QueryCanceledError) as slow:
                await conn.execute("SELECT pg_sleep(2)")
            assert messaging.classify(slow.value) == "transient"
            with pytest.raises(TimeoutError) as exhausted:  # the only connection is taken
                async with pool.acquire():
                    pass
            assert messaging.classify(exhausted.value) == "infrastructure"
    finally:
        await pool.close()


async def test_migrations_are_not_bound_by_the_statement_timeout(deployment: Deployment) -> None:
    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence", statement_timeout_ms=200)
    slow = db.Migration("hygiene", 1, "slow", "SELECT pg_sleep(0.5); CREATE TABLE slow_done (one int);")
    try:
        async with pool.acquire() as conn:
            assert await db.migrate(conn, "presence", [slow]) == ["hygiene/0001_slow"]
            assert await conn.fetchval("SHOW statement_timeout") == "200ms"  # back to the pool's
    finally:
        await pool.close()


async def test_prune_inbox_deletes_only_old_rows_in_chunks(deployment: Deployment) -> None:
    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence")
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn, "presence", db.load_migrations("shared", "shared"))
            await conn.executemany(
                "INSERT INTO inbox (consumer, event_id, received_at) "
                "VALUES ($1, $2, now() - make_interval(hours => $3))",
                [("c", f"old-{i}", 240) for i in range(12)] + [("c", f"new-{i}", 1) for i in range(3)],
            )
            assert await messaging.prune_inbox(conn, 8 * 24, chunk=5) == 12
            left = await conn.fetch("SELECT event_id FROM inbox ORDER BY event_id")
            assert [r["event_id"] for r in left] == ["new-0", "new-1", "new-2"]
            assert await messaging.prune_inbox(conn, 8 * 24, chunk=5) == 0
    finally:
        await pool.close()


async def test_a_relay_drains_what_is_pending_and_stops(deployment: Deployment) -> None:
    """`drain` publishes what is committed now and returns how many; the relay is then not alive."""
    from faststream.kafka import KafkaBroker

    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence")
    broker = KafkaBroker(deployment.infra.bootstrap)
    await broker.start()
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn, "presence", db.load_migrations("shared", "shared"))
        relay = messaging.OutboxRelay(pool, "presence", broker)
        relay.start()
        await asyncio.sleep(0.2)
        assert relay.alive
        async with pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, '{}')",
                [(deployment.topic("presence.v1"), f"agent-{i}", b"{}") for i in range(5)],
            )
        before = relay.published
        published = await relay.drain(10.0)
        assert not relay.alive
        async with pool.acquire() as conn:  # no waiting: all of it went before drain returned
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        assert relay.published == 5 and published == 5 - before
    finally:
        await broker.stop()
        await pool.close()


async def test_a_connection_goes_back_to_the_pool_without_a_round_trip_unless_it_holds_session_state(
    deployment: Deployment,
) -> None:
    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence", max_size=1)
    ran: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda q: ran.append(q.query))
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 1234")
        async with pool.acquire() as conn:  # the same connection (max_size 1)
            assert ran == ["BEGIN;", "SET LOCAL statement_timeout = 1234", "COMMIT;"]  # no reset query
            ran.clear()
            tx = conn.transaction()
            await tx.start()  # left open: the release still rolls it back
            await conn.execute("CREATE TEMP TABLE rolled_back (one int)")
        async with pool.acquire() as conn:
            assert not any("RESET" in q for q in ran)
            assert await conn.fetchval("SELECT to_regclass('rolled_back')") is None
            # session state, marked: the full reset on release (LISTEN, advisory lock, SET)
            db.keeps_session_state(conn)
            await conn.execute("LISTEN hygiene")
            await conn.fetchval("SELECT pg_try_advisory_lock(42)")
            await conn.execute("SET statement_timeout = 1234")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                )
                == 0
            )
            assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
    finally:
        await pool.close()


async def test_a_transactions_events_enter_the_outbox_in_one_statement_and_in_emission_order(
    deployment: Deployment,
) -> None:
    from shared.tx import OutboxRow, PgTx

    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence")
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn, "presence", db.load_migrations("shared", "shared"))
            await conn.execute("DELETE FROM outbox")
            # keys and topics out of sorted order, one key absent: the order is the emission order
            rows = [
                OutboxRow(f"t{(7 * i) % 5}", None if i == 3 else f"k{(11 * i) % 13}", f"p{i}".encode(), {"n": str(i)})
                for i in range(40)
            ]
            async with conn.transaction():
                ids = await PgTx(conn).write_outbox(rows)
                assert await PgTx(conn).write_outbox([]) == []  # nothing to write: no statement
            stored = await conn.fetch("SELECT id, topic, key, payload, headers FROM outbox ORDER BY id")
            assert [(r["topic"], r["key"], bytes(r["payload"]), r["headers"]) for r in stored] == [
                (r.topic, r.key, r.payload, r.headers) for r in rows
            ]
            assert ids == [r["id"] for r in stored]  # each row's id, in the rows' order
    finally:
        await pool.close()


async def _until(condition: Any, what: str, within_s: float = 10.0) -> None:
    """Until `condition()` (a value or an awaitable of one) is true, at most `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not (await res if asyncio.iscoroutine(res := condition()) else res):
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


async def _empty(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_the_relay_publishes_what_its_process_commits_without_reading_it_back(deployment: Deployment) -> None:
    """A unit of work hands its committed rows to the relay, which publishes them with no read of
    the outbox; another process's commit (its NOTIFY names another session) is read; a row both
    handed over and read is published once; the published rows are deleted in bulk."""
    from faststream.kafka import KafkaBroker

    from shared import contracts as c
    from shared import topics
    from shared.tx import PgDatabase

    url = stack.service_database_url(deployment.database_url, "presence")
    pool = await db.create_pool(url, "presence", max_size=2)  # the relay's session, and one for commits
    broker = KafkaBroker(deployment.infra.bootstrap)
    await broker.start()
    relay = messaging.OutboxRelay(pool, "presence", broker)
    other = await asyncpg.connect(url, server_settings={"search_path": "presence"})
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn, "presence", db.load_migrations("shared", "shared"))
            await conn.execute("DELETE FROM outbox")
        relay.start()
        await _until(lambda: relay._holding and relay.reads >= 1, "the relay takes the lock and reads once")
        database = PgDatabase(lambda: pool)

        async def commit(n: int) -> None:
            async with database.transaction() as tx:
                uow: messaging.UnitOfWork[None, None] = messaging.UnitOfWork(
                    tx, None, None, topics.TopicNames(deployment.prefix), "/switchboard/presence", relay=relay
                )
                for i in range(n):
                    uow.emit(c.PresenceChanged(agent_id=f"agent-{i}", status="available", source="manual"))
                await uow.flush()
            uow.committed()

        # the first hand-over from a session tells the relay the session is this process's (its
        # NOTIFY may come first, and be read: once per session of the pool)
        await commit(1)
        await _until(lambda: relay.published == 1, "the rows handed over are published")
        reads = relay.reads
        await commit(2)
        await _until(lambda: relay.published == 3, "the rows handed over are published")
        await asyncio.sleep(0.2)  # the NOTIFY too has come
        assert relay.reads == reads  # not read back

        await other.execute(
            "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, 'agent-x', '{}', '{}')",
            deployment.topic(topics.PRESENCE),
        )
        await _until(lambda: relay.published == 4, "another process's row is read and published")
        assert relay.reads == reads + 1
        foreign = await other.fetchval("SELECT max(id) FROM outbox")
        relay.committed(
            [
                {
                    "id": foreign,
                    "topic": deployment.topic(topics.PRESENCE),
                    "key": "agent-x",
                    "payload": b"{}",
                    "headers": {},
                }
            ],
            None,
        )  # handed over after it was read
        await commit(messaging.SWEEP_WITH_READ)  # enough published rows for a bulk delete
        await _until(lambda: relay.published == 4 + messaging.SWEEP_WITH_READ, "the second commit is published")
        assert relay.reads == reads + 1  # the row read before was not published again, nothing read
        await _until(lambda: _empty(other), "the published rows are deleted in bulk")
    finally:
        await relay.drain(5.0)
        await other.close()
        await broker.stop()
        await pool.close()
