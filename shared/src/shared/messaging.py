"""Messaging shared by every service.

- `UnitOfWork`: a use case's transaction; events it emits go to the outbox in that transaction.
- `OutboxRelay`: publishes the outbox in order, one active relay per schema, rows deleted after
  the broker confirmed them, by the relay's next read (at-least-once; consumers dedupe on the event
  id). A row the broker can never take (larger than the producer's `max_request_size` or the
  topic's `max.message.bytes`) is marked dead in the outbox (`dead_at`, `dead_reason`), announced
  by a small record on TOPIC.dlq, and the relay goes on with the next rows.
- `Consumer`: a batch subscriber whose records are parsed, deduplicated through the inbox and
  handled in one transaction per batch; offsets are committed only after that transaction.

Errors are classified (`classify`); a bad record never stops a consumer:
- poison (a record that is not a valid event, `PoisonMessage`, a data error PostgreSQL refuses):
  TOPIC.dlq at once, the reason in headers; `on_invalid` may answer an unparseable record (sessions
  answers an agent's command with `command.rejected`);
- transient (deadlock 40P01, serialization failure 40001, lock not available 55P03, statement
  timeout 57014, admin/crash shutdown 57P01/57P02): retried with backoff, then the batch is rewound
  and Kafka redelivers it; never dead-lettered. A statement timeout counts as transient because
  every input is bounded at the edge (shared.contracts), so a statement that overruns says the
  database is slow or a lock is held, not that the record is bad; dead-lettering it would lose good
  work, while a rewind is retried and shows on `switchboard_transient_retries_total`;
- infrastructure (PostgreSQL or Kafka unreachable): retried, then rewound like transient errors;
  only these count towards `max_consecutive_failures`, after which the process exits so the
  orchestrator restarts it;
- anything else (a bug, a constraint the record breaks): bounded retries, then the DLQ.

Hooks (no-ops until something registers):
- `OUTBOX_HEADERS`: callables returning headers merged into each outbox row's Kafka headers. They
  are called when the event is emitted (so a handler's tracing span is the current one) and the
  result is written with the row at `flush`.
- `RECORD_CONTEXT`: callables returning a context manager entered around the handling of each
  record: its handler call inside the batch transaction, and its dead-lettering.
- Prometheus counters in the default registry (below), labelled by service and topic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import Counter, Histogram
from pydantic import SkipValidation

from shared import contracts, topics
from shared.contracts import CloudEvent, InvalidEvent, Payload
from shared.db import Conn, keeps_session_state
from shared.kafka_security import aiokafka_options, faststream_security
from shared.settings import ServiceSettings
from shared.tx import Database, OutboxRow, Q, Tx

log = structlog.get_logger("switchboard.messaging")

CONTENT_TYPE = "application/cloudevents+json"
# The producer's max_request_size (aiokafka's default, Kafka's default max.message.bytes): a larger
# outbox row can never be published.
MAX_MESSAGE_BYTES = 1_048_576
# What a dead letter keeps of a record too large to be dead-lettered whole.
DLQ_TRUNCATED_BYTES = 64 * 1024
# Published rows the relay deletes within its next read (more: a DELETE of their own first, so the
# read's exclusion list stays short).
SWEEP_WITH_READ = 64
# Ids of rows the relay published lately, remembered so a row both handed over and read goes once.
RECENT_PUBLISHED = 10_000
# How long the relay trusts a topic's max.message.bytes before reading it again.
TOPIC_LIMIT_TTL_S = 300.0

# --- hooks and metrics --------------------------------------------------------------------------

OUTBOX_HEADERS: list[Callable[[], dict[str, str]]] = []
RECORD_CONTEXT: list[Callable[[ConsumerRecord[Any, Any]], contextlib.AbstractContextManager[Any]]] = []

EVENTS_EMITTED = Counter(
    "switchboard_events_emitted_total", "Events committed to the outbox (counted after commit)", ["service", "type"]
)
RECORDS_CONSUMED = Counter(
    "switchboard_records_consumed_total",
    "Records consumed, by outcome: handled, duplicate, ignored, rejected, dead_lettered",
    ["service", "topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "switchboard_dead_letters_total",
    "Records sent to TOPIC.dlq, by kind: poison, retries_exhausted",
    ["service", "topic", "kind"],
)
TRANSIENT_RETRIES = Counter(
    "switchboard_transient_retries_total",
    "Retries and rewinds of a batch or record after a transient database error or an infrastructure failure",
    ["service", "topic"],
)
BATCH_SECONDS = Histogram(
    "switchboard_batch_seconds",
    "Time to handle one batch of records, retries included",
    ["service", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCHES_MERGED = Counter(
    "switchboard_batches_merged_total",
    "Batches of different consumers handled together, in one transaction (Coalescer)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter("switchboard_outbox_published_total", "Outbox rows published to Kafka", ["schema"])
OUTBOX_DEAD = Counter(
    "switchboard_outbox_dead_total", "Outbox rows marked dead (the broker can never take them)", ["schema"]
)


def outbox_headers() -> dict[str, str]:
    """The headers the `OUTBOX_HEADERS` hooks give an event emitted now (a failing hook is
    logged and left out: tracing never stops the business)."""
    merged: dict[str, str] = {}
    for hook in OUTBOX_HEADERS:
        try:
            merged.update(hook())
        except Exception as exc:
            log.warning("outbox_headers_hook_failed", hook=repr(hook), error=repr(exc))
    return merged


@contextlib.contextmanager
def record_context(rec: ConsumerRecord[Any, Any]) -> Iterator[None]:
    """Enter every `RECORD_CONTEXT` hook's context around handling `rec` (one that fails to
    enter is logged and skipped)."""
    if not RECORD_CONTEXT:
        yield
        return
    with contextlib.ExitStack() as stack:
        for hook in RECORD_CONTEXT:
            try:
                stack.enter_context(hook(rec))
            except Exception as exc:
                log.warning("record_context_hook_failed", hook=repr(hook), error=repr(exc))
        yield


# --- error classification -----------------------------------------------------------------------


class PoisonMessage(Exception):
    """The record can never be handled (invalid, impossible); it goes to the DLQ at once."""


class _RunCarefully(Exception):
    """A record of a batch run without savepoints was refused: roll back, run it with them."""


class Rejection(Exception):
    """The event is refused; nothing it did stays, and `payload` is emitted in its place."""

    def __init__(self, payload: Payload) -> None:
        super().__init__(getattr(payload, "reason", payload.TYPE))
        self.payload = payload


# The database or broker is unreachable: the record is fine, so rewind it rather than dead-letter it.
# (asyncpg's InterfaceError also covers programming errors, so only its connection subclass counts.)
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    OSError,
    TimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
)
# PostgreSQL's word that trying again later may work (see the module docstring).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02"})
# Classes of SQLSTATE that say the record's data itself is refused (22: data exception, e.g. a
# character PostgreSQL cannot store; 54: program limit, e.g. an index row too large): no retry helps.
POISON_SQLSTATE_CLASSES = ("22", "54")

ErrorKind = Literal["rejection", "poison", "transient", "infrastructure", "error"]


def is_infrastructure(error: BaseException) -> bool:
    """True when the error says the database or broker is unreachable, not that the record is bad."""
    if isinstance(error, INFRASTRUCTURE_ERRORS):
        return True
    if isinstance(error, KafkaError) and getattr(error, "retriable", False):
        return True
    return isinstance(error, asyncpg.exceptions.InterfaceError) and "closed" in str(error)


def is_transient(error: BaseException) -> bool:
    """True for a database error that a later attempt may not meet (deadlock, lock wait, timeout...)."""
    return isinstance(error, asyncpg.PostgresError) and getattr(error, "sqlstate", None) in TRANSIENT_SQLSTATES


def classify(error: BaseException) -> ErrorKind:
    """What the consumer does about an error raised while handling a record (module docstring)."""
    if isinstance(error, Rejection):
        return "rejection"
    if isinstance(error, PoisonMessage | InvalidEvent):
        return "poison"
    if is_transient(error):
        return "transient"
    if is_infrastructure(error):
        return "infrastructure"
    sqlstate = getattr(error, "sqlstate", None) if isinstance(error, asyncpg.PostgresError) else None
    if isinstance(sqlstate, str) and sqlstate.startswith(POISON_SQLSTATE_CLASSES):
        return "poison"
    return "error"


# Every producer of a service (the broker's, the relay's): idempotent, all acks, requests up to the
# largest record the relay lets through. No linger: a relay cycle hands all its records to the
# producer before the sender runs, so they leave in one request anyway, and a linger only held each
# hop of a conversation's path (2 ms cost 10-14 ms of arrival->offer p50 at the peak).
PRODUCER_OPTIONS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 0,
    "max_batch_size": 256 * 1024,
    "max_request_size": MAX_MESSAGE_BYTES,
    "request_timeout_ms": 30_000,
}


def make_broker(settings: ServiceSettings, client_id: str) -> KafkaBroker:
    """The Kafka broker of a service (its subscribers and the gateway's direct publishes)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        graceful_timeout=10.0,
        # SASL/TLS from KAFKA_SECURITY_PROTOCOL and friends; subscribers never create topics
        # (provisioning does, and a principal without the right would log a refusal each start)
        security=faststream_security(),
        allow_auto_create_topics=False,
        **PRODUCER_OPTIONS,
    )


def relay_producer(settings: ServiceSettings, client_id: str) -> AIOKafkaProducer:
    """The outbox relay's own producer, replaced after a failed send (see `OutboxRelay`)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        **PRODUCER_OPTIONS,
        **aiokafka_options(),
    )


# --- unit of work + outbox ---------------------------------------------------------------------


Sequencer = Callable[["UnitOfWork[Any, Any]", list[CloudEvent]], Awaitable[None]]
S = TypeVar("S")
B = TypeVar("B")
T = TypeVar("T")


class UnitOfWork(Generic[S, B]):
    """A use case's transaction: the service's `store` on it, outgoing events via `emit`, and a
    typed per-batch context `batch` (figures read once per batch, decisions written at its end).

    Events are serialised into the outbox at `flush`, after an optional sequencer has stamped
    them (sessions numbers each agent's events so clients can resume without gaps). Whoever commits
    the transaction calls `committed()` afterwards (the consumer pipeline, `Runtime.transaction`):
    the rows written go straight to the `relay`, which publishes them without reading them back."""

    def __init__(
        self,
        tx: Tx,
        store: S,
        batch: B,
        names: topics.TopicNames,
        source: str,
        sequencer: Sequencer | None = None,
        relay: OutboxRelay | None = None,
    ) -> None:
        self.tx = tx
        self.store = store
        self.batch = batch
        self.names = names
        self.source = source
        self.service = source.rsplit("/", 1)[-1]
        self.sequencer = sequencer
        self.relay = relay
        self._pending: list[tuple[str, str, CloudEvent, dict[str, str]]] = []
        self._written: list[dict[str, Any]] = []
        self._written_by: int | None = None
        self.emitted: list[CloudEvent] = []
        self.flags: set[str] = set()
        self._counted = 0
        # (event id, which statement: "" the first) -> its answer, run ahead (`Consumer.ahead`)
        self.answers: dict[tuple[str, str], Any] = {}

    async def answered(self, ev: CloudEvent, call: Callable[[], Awaitable[T]], what: str = "") -> T:
        """The answer the record's statement got ahead of its turn (`Consumer.ahead`: its first, or
        one its ahead function named `what` when it ran that one too), or `call()`'s when it did not
        run ahead."""
        if (ev.id, what) in self.answers:
            answer: T = self.answers.pop((ev.id, what))
            return answer
        return await call()

    def emit(self, payload: Payload, *, key: str | None = None, subject: str | None = None) -> CloudEvent:
        ev = contracts.event(payload, source=self.source, subject=subject)
        headers = outbox_headers() if OUTBOX_HEADERS else {}
        self._pending.append((payload.TOPIC, key or contracts.key_of(payload), ev, headers))
        self.emitted.append(ev)
        return ev

    def savepoint_state(self) -> int:
        return len(self._pending)

    def rollback_to(self, mark: int) -> None:
        del self._pending[mark:]
        del self.emitted[mark:]

    async def flush(self) -> None:
        if not self._pending:
            return
        if self.sequencer is not None:
            await self.sequencer(self, [ev for _, _, ev, _ in self._pending])
        rows = [
            OutboxRow(self.names(topic), key, ev.to_bytes(), {**headers, "ce_type": ev.type})
            for topic, key, ev, headers in self._pending
        ]
        ids = await self.tx.write_outbox(rows)
        if self.relay is not None:
            self._written_by = self.tx.server_pid  # read now: after the commit the connection is gone
            self._written.extend(
                {"id": i, "topic": r.topic, "key": r.key, "payload": r.payload, "headers": r.headers}
                for i, r in zip(ids, rows, strict=True)
            )
        self._pending.clear()

    def committed(self) -> None:
        """The transaction committed: its rows go to the relay, its events are counted (once,
        however often this is called)."""
        if self._written and self.relay is not None:
            self.relay.committed(self._written, self._written_by)
        self._written = []
        for ev in self.emitted[self._counted :]:
            EVENTS_EMITTED.labels(self.service, ev.type).inc()
        self._counted = len(self.emitted)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _record_size(row: Any) -> int:
    """What the record weighs in a batch of its own: value, key, headers, the record's and the
    batch's overheads (a topic's max.message.bytes bounds the batch)."""
    headers = {"content-type": CONTENT_TYPE, **(row["headers"] or {})}
    return (
        len(row["payload"])
        + len((row["key"] or "").encode())
        + sum(len(k.encode()) + len(str(v).encode()) + 10 for k, v in headers.items())
        + 128
    )


class OutboxRelay:
    """Publishes the outbox of one schema; one relay holds the schema's advisory lock at a time.

    The rows this process commits are handed to it at once (`committed`, from the unit of work) and
    published without being read back: no NOTIFY to wait for, no read per commit. It reads the
    outbox when another process's commit notifies it (a NOTIFY names the session that sent it),
    when it takes the lock, and after a second without a wake (the safety net: rows whose hand-over
    was lost). The rows published are deleted in bulk (`SWEEP_WITH_READ`), or with the next read.

    Health hooks: `last_cycle_at` (monotonic, refreshed every cycle, idle cycles last at most 1 s),
    `alive` (the loop runs), and `drain()` for a graceful stop."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        broker: KafkaBroker,
        *,
        batch: int = 2000,
        crash_before_publish: bool = False,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.broker = broker
        # The relay's own producer (when a factory is given; else the broker's): after a failed send
        # an idempotent producer can stay stuck on OutOfOrderSequenceNumber for good (its producer id
        # is never reset), so on any publish failure it is replaced before the chunk is retried.
        self.producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self.batch = batch
        self.crash_before_publish = crash_before_publish
        self.max_message_bytes = max_message_bytes
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.dead = 0
        self.reads = 0  # reads of the outbox
        self.last_cycle_at = time.monotonic()
        self._draining = False
        self._topic_limits: dict[str, tuple[int | None, float]] = {}
        # published rows not deleted yet: deleted by the next cycle's read, in the same statement
        self._unswept: list[int] = []
        # rows this process committed, handed over to be published without a read; the database
        # sessions they came from (their NOTIFYs need no read); the ids published lately (a row
        # both handed over and read is published once)
        self._handed: list[dict[str, Any]] = []
        self._own_pids: set[int] = set()
        self._recent: collections.deque[int] = collections.deque(maxlen=RECENT_PUBLISHED)
        self._recent_ids: set[int] = set()
        self._holding = False
        self._read_due = True

    def start(self) -> None:
        self._draining = False
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    @property
    def alive(self) -> bool:
        """The relay's loop is running (started, not stopped, not crashed)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_producer()

    async def _producer_ready(self) -> AIOKafkaProducer | None:
        if self.producer_factory is None:
            return None
        if self._producer is None:
            producer = self.producer_factory()
            await producer.start()
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def drain(self, timeout_s: float) -> int:
        """Publish everything pending now (when this instance holds the schema's lock; another
        replica relays otherwise), then stop, within `timeout_s`; returns the rows published.
        The loop finishes its cycle first: nothing is cut off between publish and delete."""
        before = self.published
        self._draining = True
        self._wake.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.warning("outbox_drain_timeout", schema=self.schema, timeout_s=timeout_s)
            except Exception as exc:
                log.warning("outbox_drain_failed", schema=self.schema, error=repr(exc))
        await self.stop()
        return self.published - before

    async def _run(self) -> None:
        backoff = 0.5
        while not self._draining:
            self.last_cycle_at = time.monotonic()
            try:
                await self._hold_lock_and_relay()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_relay_error", schema=self.schema, error=repr(exc))
                await self._close_producer()  # a fresh producer id and sequence for the retry
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _hold_lock_and_relay(self) -> None:
        async with self.pool.acquire() as conn:
            keeps_session_state(conn)  # the advisory lock and LISTEN are the session's
            lock = _lock_key(f"outbox:{self.schema}")
            if not await conn.fetchval(Q.try_advisory_lock, lock):
                if not self._draining:  # another replica relays; stand by (drain() wakes it)
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                return
            channel = f"outbox_{self.schema}"
            await conn.add_listener(channel, self._notified)
            # what was handed over before the lock was ours is found by the first read
            self._holding, self._handed, self._read_due = True, [], True
            try:
                while True:
                    self.last_cycle_at = time.monotonic()
                    # a cycle begun after drain() was called sees every row committed before it
                    final = self._draining
                    # cleared before reading: a commit notified while this cycle runs wakes the next
                    self._wake.clear()
                    sent = 0
                    if self._read_due or final:
                        self._read_due = False
                        sent = await self._relay_once(conn)
                    await self._relay_handed(conn)
                    if sent < self.batch and final:
                        await self._sweep(conn)
                        return
                    # a chunk not full took everything committed before the read: the next commit
                    # wakes the relay (its rows published now are deleted by that read, by a bulk
                    # delete, or by the read after the timeout), so no second, empty read per commit
                    if sent < self.batch:
                        try:
                            await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                        except TimeoutError:
                            self._read_due = True
                    else:
                        self._read_due = True
            finally:
                self._holding = False
                await conn.remove_listener(channel, self._notified)
                await conn.execute(Q.advisory_unlock, lock)

    def committed(self, rows: list[dict[str, Any]], pid: int | None) -> None:
        """Rows a transaction of this process committed (their outbox ids and contents): published by
        the next cycle without a read. Ignored while another replica holds the lock: its relay
        reads them, woken by their NOTIFY."""
        if not self._holding:
            return
        if pid is not None:
            self._own_pids.add(pid)
        self._handed.extend(rows)
        self._wake.set()

    def _notified(self, _conn: Any, pid: int, _channel: str, _payload: object) -> None:
        """A commit's NOTIFY: from another process's session, the next cycle reads the outbox."""
        if pid not in self._own_pids:
            self._read_due = True
        self._wake.set()

    async def _relay_handed(self, conn: Conn) -> None:
        """Publish the rows handed over (those a read published already are skipped), in the order
        their transactions committed; delete the published rows once there are enough of them."""
        handed, self._handed = self._handed, []
        for start in range(0, len(handed), self.batch):
            await self._publish_rows(conn, handed[start : start + self.batch])
        if len(self._unswept) > SWEEP_WITH_READ:
            await self._sweep(conn)

    async def _publish(self, row: Any, *, confirm: bool) -> Any:
        headers = {"content-type": CONTENT_TYPE, **(row["headers"] or {})}
        return await self._send(row["topic"], row["payload"], row["key"], headers, confirm=confirm)

    async def _send(self, topic: str, value: bytes, key: str | None, headers: dict[str, str], *, confirm: bool) -> Any:
        """One record through the relay's own producer (the broker's without a factory): the
        delivery future, or its result when `confirm`."""
        encoded_key = key.encode() if key is not None else None
        producer = await self._producer_ready()
        if producer is not None:
            fut = await producer.send(
                topic, value, key=encoded_key, headers=[(k, str(v).encode()) for k, v in headers.items()]
            )
            return await fut if confirm else fut
        return await self.broker.publish(value, topic=topic, key=encoded_key, headers=headers, no_confirm=not confirm)

    async def _sweep(self, conn: Conn) -> None:
        """Delete the rows published since the last read (they would only be published again)."""
        if self._unswept:
            await conn.execute(Q.delete_outbox, self._unswept)
            self._unswept = []

    async def _relay_once(self, conn: Conn) -> int:
        """Read and publish one chunk in order; returns the rows it read (published, dead, or
        published before from a hand-over).

        The rows published before are deleted by this read, in the same statement. Until then they
        stay in the outbox, and a relay that dies in between publishes them again (consumers dedupe)."""
        if len(self._unswept) > SWEEP_WITH_READ:
            await self._sweep(conn)
        rows = await conn.fetch(Q.sweep_and_list_outbox, self.batch, self._unswept)
        self.reads += 1
        self._unswept = []
        await self._publish_rows(conn, rows)
        return len(rows)

    async def _publish_rows(self, conn: Conn, rows: Sequence[Any]) -> None:
        """Publish `rows` in order (those too large for the broker are buried; those published
        lately, both handed over and read, are skipped); the published ones join `_unswept`, to be
        deleted."""
        rows = [row for row in rows if row["id"] not in self._recent_ids]
        if not rows:
            return
        if self.crash_before_publish:
            log.critical("fault_injected_crash_before_publish", pending=len(rows))
            os._exit(137)
        dead: dict[int, str] = {}
        sent: list[tuple[Any, Any]] = []
        limits = await self._limits({row["topic"] for row in rows})
        for row in rows:
            size = _record_size(row)
            if size > self.max_message_bytes:
                dead[row["id"]] = (
                    f"the event is about {size:,} bytes; the producer sends at most {self.max_message_bytes:,} "
                    "(max_request_size)"
                )
                continue
            limit = limits.get(row["topic"])
            if limit is not None and size > limit:
                dead[row["id"]] = (
                    f"the event is about {size:,} bytes; {row['topic']} takes at most {limit:,} (max.message.bytes)"
                )
                continue
            try:
                sent.append((row, await self._publish(row, confirm=False)))
            except MessageSizeTooLargeError as exc:
                dead[row["id"]] = f"the broker cannot take it: {exc}"
        results = await asyncio.gather(*(fut for _, fut in sent), return_exceptions=True)
        refused = [
            row for (row, _), res in zip(sent, results, strict=True) if isinstance(res, MessageSizeTooLargeError)
        ]
        failed = [
            res for res in results if isinstance(res, BaseException) and not isinstance(res, MessageSizeTooLargeError)
        ]
        if failed:
            raise failed[0]  # nothing deleted: the chunk is published again (consumers dedupe)
        # The topic's limit changed since it was read (`_limits`): the broker refuses a whole produce
        # batch when one record in it is too large, so send those rows one at a time to find which.
        # (aiokafka's idempotent producer may not recover its sequence on that partition; the rows
        # are then retried until the service restarts: `_limits` exists to avoid getting here.)
        for row in refused:
            self._topic_limits.pop(row["topic"], None)
            try:
                await self._publish(row, confirm=True)
            except MessageSizeTooLargeError as exc:
                dead[row["id"]] = f"the broker refused it as too large for {row['topic']} (max.message.bytes): {exc}"
        for row in rows:
            if row["id"] in dead:
                await self._bury(conn, row, dead[row["id"]])
        done = [r["id"] for r in rows if r["id"] not in dead]
        self._unswept.extend(done)
        for outbox_id in done:
            if len(self._recent) == self._recent.maxlen:
                self._recent_ids.discard(self._recent[0])
            self._recent.append(outbox_id)
            self._recent_ids.add(outbox_id)
        self.published += len(done)
        OUTBOX_PUBLISHED.labels(self.schema).inc(len(done))

    async def _limits(self, names: set[str]) -> dict[str, int]:
        """Each topic's max.message.bytes, read from the broker and kept `TOPIC_LIMIT_TTL_S`; a topic
        whose limit cannot be read (no DescribeConfigs right) is bounded by the producer's alone."""
        now = time.monotonic()
        stale = sorted(
            t for t in names if now - self._topic_limits.get(t, (None, -TOPIC_LIMIT_TTL_S))[1] >= TOPIC_LIMIT_TTL_S
        )
        if stale:
            found: dict[str, int] = {}
            try:
                admin = self.broker.config.admin_client  # type: ignore[attr-defined]
                wanted = [ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None}) for t in stale]
                for response in await asyncio.wait_for(admin.describe_configs(wanted), 5.0):
                    for error_code, _, _, name, entries in response.resources:
                        value = next((e[1] for e in entries if e[0] == "max.message.bytes"), None)
                        if error_code == 0 and value:
                            found[name] = int(value)
            except Exception as exc:
                log.warning("outbox_topic_limits_unknown", schema=self.schema, topics=stale, error=repr(exc))
            for name in stale:
                self._topic_limits[name] = (found.get(name), now)
        return {t: limit for t in names if (limit := self._topic_limits[t][0]) is not None}

    async def _bury(self, conn: Conn, row: Any, reason: str) -> None:
        """Announce a row the broker can never take on TOPIC.dlq, then mark it dead in the outbox."""
        headers = row["headers"] or {}
        event_id = None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            event_id = json.loads(row["payload"]).get("id")
        notice = {
            "outbox_schema": self.schema,
            "outbox_id": row["id"],
            "topic": row["topic"],
            "key": row["key"],
            "type": headers.get("ce_type"),
            "event_id": event_id if isinstance(event_id, str) else None,
            "size_bytes": len(row["payload"]),
            "reason": reason,
        }
        await self._send(
            row["topic"] + topics.DLQ_SUFFIX,
            json.dumps(notice).encode(),
            row["key"],
            {
                "content-type": "application/json",
                "dlq.consumer": f"{self.schema}:outbox",
                "dlq.kind": "outbox_oversize",
                "dlq.reason": reason[:2000],
                "dlq.error_class": "MessageSizeTooLargeError",
                "dlq.original_topic": row["topic"],
                "dlq.outbox_id": str(row["id"]),
                "dlq.event_id": notice["event_id"] or "",
                "dlq.time": datetime.now(UTC).isoformat(),
            },
            confirm=True,
        )
        await conn.execute(Q.bury_outbox, row["id"], reason)
        self.dead += 1
        OUTBOX_DEAD.labels(self.schema).inc()
        log.error(
            "outbox_row_dead",
            schema=self.schema,
            outbox_id=row["id"],
            topic=row["topic"],
            type=headers.get("ce_type"),
            size_bytes=len(row["payload"]),
            reason=reason,
        )


async def prune_inbox(conn: Conn, retention_hours: float, *, chunk: int = 5000) -> int:
    """Delete inbox rows older than `retention_hours`, `chunk` rows per statement (short locks);
    returns how many went. Keep the retention longer than the topics' so a redelivery is recognised."""
    total = 0
    while True:
        deleted = await conn.fetchval(Q.prune_inbox, float(retention_hours) * 3600.0, chunk)
        total += deleted
        if deleted < chunk:
            return total


# --- consumer pipeline -------------------------------------------------------------------------

Handler = Callable[[Any, CloudEvent, Any], Awaitable[None]]
AfterBatch = Callable[[Any], Awaitable[None]]
# Called first in a batch's transaction with the payloads about to be handled (duplicates left out):
# e.g. to lock the rows the batch will touch in one order, so that replicas never deadlock.
BeforeBatch = Callable[[Any, list[Payload]], Awaitable[None]]
# Given the decoded record (None when it is not a JSON object) and why it was refused: an event to
# emit in answer, or None. Called after the record went to the DLQ.
OnInvalid = Callable[[dict[str, Any] | None, InvalidEvent], Payload | None]
# Runs the first statement of several records' handlers (one event type) in one round trip, before
# the handlers run; answers one value per record, in order (see `Consumer.ahead`).
Ahead = Callable[[Any, list[tuple[CloudEvent, Any]]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True)
class RunAhead:
    """How an event type's records run ahead (`Consumer.ahead`): `run` their first statements;
    `only` the records it may run (the others' handlers take another path: in their turn); `whole`
    when that statement is all the handler writes or reads (it then only emits), so a record after
    it about the same agent or conversation may run ahead too, in a round trip after it."""

    run: Ahead
    whole: bool = False
    only: Callable[[Any], bool] | None = None


# What a payload is about (its agent, its conversation): records that share nothing may run ahead.
Keys = Callable[[Payload], Iterable[Hashable]]


def agents_and_conversations(payload: Payload) -> list[Hashable]:
    """`Keys` of a service whose state is per agent and per conversation: every agent the payload
    names (`agent_id`, `to_agent`, `previous_agent_id`, ...) and every conversation."""
    keys: list[Hashable] = []
    for name, kind in _key_fields(type(payload)):
        value = getattr(payload, name)
        if isinstance(value, str):
            keys.append((kind, value))
    return keys


@functools.cache
def _key_fields(model: type[Payload]) -> tuple[tuple[str, str], ...]:
    """A payload type's fields that name an agent or a conversation, found once per type."""
    fields = []
    for name in model.model_fields:
        if name in ("agent_id", "to_agent") or name.endswith(("_agent_id", "_agent")):
            fields.append((name, "agent"))
        elif name.endswith("conversation_id"):
            fields.append((name, "conversation"))
    return tuple(fields)


@dataclass
class Incoming:
    record: ConsumerRecord[Any, Any]
    envelope: CloudEvent
    payload: Payload


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    batches: int = 0
    transient_retries: int = 0
    consecutive_failures: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class Consumer:
    """One service's consumption of one topic: parse, dedupe, handle in a transaction, DLQ.

    Health hooks: `last_batch_at` (monotonic time the last batch was handled) and `in_flight`
    (a batch is being handled now)."""

    def __init__(
        self,
        *,
        service: str,
        topic: str,
        handlers: dict[str, Handler],
        database: Database,
        unit_of_work: Callable[[Tx], UnitOfWork[Any, Any]],
        broker: KafkaBroker,
        settings: ServiceSettings,
        after_batch: AfterBatch | None = None,
        before_batch: BeforeBatch | None = None,
        on_committed: Callable[[UnitOfWork[Any, Any]], None] | None = None,
        on_invalid: OnInvalid | None = None,
        savepoints: bool = False,
        exit_process: Callable[[int], None] = os._exit,
        coalescer: Coalescer | None = None,
        background: bool = False,
        ahead: dict[str, Ahead | RunAhead] | None = None,
        keys: Keys | None = None,
    ) -> None:
        self.service = service
        self.topic = topic
        self.handlers = handlers
        self.database = database
        self.unit_of_work = unit_of_work
        self.broker = broker
        self.settings = settings
        self.after_batch = after_batch
        self.before_batch = before_batch
        self.on_committed = on_committed
        self.on_invalid = on_invalid
        self.savepoints = savepoints
        self.exit_process = exit_process
        self.coalescer = coalescer
        # Per event type, the handler's first statement run for a batch's records at once (asyncpg's
        # pipelined fetchmany: one round trip, where each record's own call was one): `_run_ahead`.
        self.ahead = {t: a if isinstance(a, RunAhead) else RunAhead(a) for t, a in (ahead or {}).items()}
        self.keys = keys
        self.names = topics.TopicNames(settings.topic_prefix)
        self.consumer_name = f"{service}:{topic}"
        self._known_types = contracts.TYPES_BY_TOPIC.get(topic, frozenset())
        self.stats = ConsumerStats()
        self.last_batch_at = time.monotonic()
        self.in_flight = False
        self.source = f"/switchboard/{service}"
        self.group_id = f"{settings.topic_prefix}{service}.{topic}"
        self._consumed = {
            outcome: RECORDS_CONSUMED.labels(service, topic, outcome)
            for outcome in ("handled", "duplicate", "ignored", "rejected", "dead_lettered")
        }
        self._retries = TRANSIENT_RETRIES.labels(service, topic)
        self._batch_seconds = BATCH_SECONDS.labels(service, topic)
        envelope = contracts.envelope_model(topic)
        self.dlq_publisher = broker.publisher(
            self.names(topics.dlq(topic)),
            description=f"Dead letters of {topic} from {service}: the original records (which may not "
            "be valid events), with the reason in headers",
            schema=envelope,
        )
        self.subscriber = broker.subscriber(
            self.names(topic),
            group_id=self.group_id,
            batch=True,
            max_records=settings.max_batch,
            batch_timeout_ms=settings.batch_timeout_ms,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            auto_offset_reset="earliest",
            # offsets: committed by `Offsets` after the batches' transactions, not one request per
            # batch; a failed batch is rewound (seek back) in `_polled`
            ack_policy=AckPolicy.MANUAL,
            title=f"{service}:{topic}",
            description=f"{service} consumes {topic}: types {', '.join(sorted(handlers))}",
        )
        # a consumer off every conversation's path (a projection, automation that may lag a moment)
        # gathers its records for a while after each batch, so it wakes a few times a second under
        # load instead of once for each record of its topic
        self.gather_s = settings.background_gather_ms / 1000 if background else 0.0
        self.offsets = take_available(
            self.subscriber,
            settings.batch_timeout_ms,
            settings.max_batch,
            handle=self._polled,
            keep=self._wanted,
            gather_s=self.gather_s,
        )

        # FastStream needs a handler, and AsyncAPI documents each record as the topic's envelope
        # (SkipValidation: never validated by FastStream). The poll hands batches to `_polled` and
        # FastStream's consume path never runs; should it ever deliver, it goes the same way.
        async def consume(body: Any, message: KafkaMessage) -> None:
            raw = message.raw_message
            await self._polled(tuple(raw) if isinstance(raw, tuple | list) else (raw,), message.consumer)

        consume.__annotations__["body"] = Annotated[envelope, SkipValidation]
        self.subscriber(consume)

    async def _polled(self, records: tuple[ConsumerRecord[Any, Any], ...], consumer: Any) -> None:
        """A polled batch, handled straight from the poll (`take_available`): FastStream's per-
        message machinery (middlewares, dependency injection, its own decoding) cost about a third
        of a batch's CPU and did nothing the pipeline needs. A batch that must be retried is rewound:
        each partition seeks back to its earliest record, and Kafka delivers it again."""
        try:
            await self.process(records)
        except asyncio.CancelledError:
            raise
        except Exception:
            earliest: dict[TopicPartition, int] = {}
            for rec in records:
                tp = TopicPartition(rec.topic, rec.partition)
                earliest[tp] = min(rec.offset, earliest.get(tp, rec.offset))
            for tp, offset in earliest.items():
                consumer.seek(tp, offset)

    def _wanted(self, rec: ConsumerRecord[Any, Any]) -> bool:
        """False for a record of a known type this consumer does not handle (by its `ce_type`
        header): dropped before the pipeline, unparsed; its offset is committed with the others."""
        ce_type = _header(rec, "ce_type")
        if ce_type is not None and ce_type not in self.handlers and ce_type in self._known_types:
            self._count("ignored")
            return False
        return True

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle one batch; raises only when the batch must be retried from Kafka (not committed)."""
        self.in_flight = True
        started = time.perf_counter()
        try:
            await self._process(records)
            self.last_batch_at = time.monotonic()
        finally:
            self.in_flight = False
            self._batch_seconds.observe(time.perf_counter() - started)

    async def _process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        self.stats.batches += 1
        incoming: list[Incoming] = []
        for rec in records:
            doc: dict[str, Any] | None = None
            try:
                doc = contracts.decode(rec.value)
                env, payload = contracts.parse_document(doc, self.topic)
            except InvalidEvent as exc:
                await self._refuse(rec, doc, exc)
                continue
            if env.type not in self.handlers:
                self._count("ignored")
                continue
            incoming.append(Incoming(rec, env, payload))
        if incoming:
            if self.coalescer is not None:
                await self.coalescer.handle(self, incoming)
            else:
                await self._handle_batch(incoming)

    async def _handle_batch(self, incoming: list[Incoming]) -> None:
        attempts = 0
        careful = False
        while True:
            try:
                await _in_transaction([(self, incoming)], careful=careful)
                return
            except asyncio.CancelledError:
                raise
            except _RunCarefully:
                careful = True  # rolled back; again, each record in a savepoint of its own
                continue
            except Exception as exc:
                kind = classify(exc)
                if kind in ("transient", "infrastructure"):
                    attempts += 1
                    if attempts > self.settings.transient_retries:
                        self._rewind(exc, kind)
                    await self._back_off(attempts, exc, kind, size=len(incoming))
                    continue
                if len(incoming) == 1:
                    await self._one_by_one(incoming, first_error=exc)
                else:
                    log.warning(
                        "batch_failed_isolating", consumer=self.consumer_name, size=len(incoming), error=repr(exc)
                    )
                    await self._one_by_one(incoming)
                return

    async def _handle_one(self, uow: UnitOfWork[Any, Any], item: Incoming, *, careful: bool) -> str:
        """Run the record's handler. With `savepoints`, a `Rejection` undoes what that record did and
        emits the refusal in its place: savepoints cost two round trips a record and refusals are
        rare, so a batch first runs without them and, when a record is refused, the whole batch is
        rolled back and runs again `careful`ly, each record in its own savepoint."""
        handler = self.handlers[item.envelope.type]
        with record_context(item.record):
            if not self.savepoints:
                await handler(uow, item.envelope, item.payload)
                return "handled"
            if not careful:
                try:
                    await handler(uow, item.envelope, item.payload)
                except Rejection:
                    raise _RunCarefully from None
                return "handled"
            mark = uow.savepoint_state()
            try:
                async with uow.tx.savepoint():
                    await handler(uow, item.envelope, item.payload)
            except Rejection as rej:
                uow.rollback_to(mark)
                uow.emit(rej.payload)
                return f"rejected: {rej}"
            return "handled"

    async def _one_by_one(self, batch: list[Incoming], first_error: BaseException | None = None) -> None:
        for item in batch:
            attempts = 0
            error: BaseException | None = first_error
            first_error = None
            while True:
                if error is None:
                    try:
                        await _in_transaction([(self, [item])], careful=True)
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        error = exc
                kind = classify(error)
                if isinstance(error, Rejection):
                    emitted = await self._emit_alone(item.envelope.id, error.payload)
                    outcome = f"rejected: {error}" if emitted else "duplicate"
                    self._count(outcome.split(":", 1)[0])
                    self._log_handled(item, outcome, 0.0)
                    break
                if kind == "poison":
                    await self.dead_letter(item.record, error, "poison")
                    break
                attempts += 1
                if attempts > self.settings.transient_retries:
                    if kind in ("transient", "infrastructure"):
                        self._rewind(error, kind)
                    await self.dead_letter(item.record, error, "retries_exhausted")
                    break
                await self._back_off(attempts, error, kind, event_id=item.envelope.id)
                error = None

    async def _refuse(self, rec: ConsumerRecord[Any, Any], doc: dict[str, Any] | None, error: InvalidEvent) -> None:
        """A record that is not a valid event: to the DLQ, and answered if `on_invalid` says how."""
        await self.dead_letter(rec, error, "poison")
        try:
            answer = self.on_invalid(doc, error) if self.on_invalid is not None else None
        except Exception as exc:  # the answer is a courtesy: a record it cannot describe is only dead-lettered
            log.warning("invalid_record_unanswerable", consumer=self.consumer_name, offset=rec.offset, error=repr(exc))
            answer = None
        if answer is None:
            return
        # The record may have no usable id: dedupe the answer on the record's content instead.
        inbox_id = "invalid:" + hashlib.sha256(rec.value or b"").hexdigest()
        attempts = 0
        while True:
            try:
                if await self._emit_alone(inbox_id, answer):
                    self.stats.rejected += 1
                    log.info(
                        "invalid_record_answered", consumer=self.consumer_name, offset=rec.offset, type=answer.TYPE
                    )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = classify(exc)
                attempts += 1
                if attempts > self.settings.transient_retries:
                    if kind in ("transient", "infrastructure"):
                        self._rewind(exc, kind)
                    log.error("invalid_record_answer_failed", consumer=self.consumer_name, error=repr(exc))
                    return
                await self._back_off(attempts, exc, kind)

    async def _emit_alone(self, inbox_id: str, payload: Payload) -> bool:
        """Emit `payload` in a transaction of its own, once per `inbox_id` (False: done before)."""
        uow: UnitOfWork[Any, Any] | None = None
        async with self.database.transaction() as tx:
            if await tx.claim_inbox(self.consumer_name, [inbox_id]):
                uow = self.unit_of_work(tx)
                uow.emit(payload)
                await uow.flush()
        if uow is None:
            return False
        uow.committed()
        return True

    def _rewind(self, error: BaseException, kind: ErrorKind) -> None:
        """Give the batch back to Kafka (not committed: redelivered); infrastructure failures count
        towards the exit, transient database errors do not."""
        self._retries.inc()
        if kind == "infrastructure":
            self._count_failure(error)
        log.warning("batch_rewound", consumer=self.consumer_name, kind=kind, error=repr(error))
        raise error

    async def _back_off(self, attempts: int, error: BaseException, kind: ErrorKind, **context: Any) -> None:
        if kind in ("transient", "infrastructure"):
            self.stats.transient_retries += 1
            self._retries.inc()
        log.warning(
            "handler_retry", consumer=self.consumer_name, attempt=attempts, kind=kind, error=repr(error), **context
        )
        await asyncio.sleep(min(0.1 * 2**attempts, 2.0))

    def _count(self, outcome: str) -> None:
        if outcome == "handled":
            self.stats.handled += 1
        elif outcome == "duplicate":
            self.stats.duplicates += 1
        elif outcome == "ignored":
            self.stats.ignored += 1
        elif outcome == "rejected":
            self.stats.rejected += 1
        self._consumed[outcome].inc()

    def _count_failure(self, error: BaseException) -> None:
        self.stats.consecutive_failures += 1
        if self.stats.consecutive_failures >= self.settings.max_consecutive_failures:
            log.critical(
                "too_many_consecutive_failures",
                consumer=self.consumer_name,
                failures=self.stats.consecutive_failures,
                error=repr(error),
            )
            self.exit_process(70)

    async def dead_letter(self, rec: ConsumerRecord[Any, Any], error: BaseException, kind: str) -> None:
        """Send the original record to TOPIC.dlq with the reason; awaits the broker's ack."""
        reason = str(error) or error.__class__.__name__
        headers = {
            "dlq.consumer": self.consumer_name,
            "dlq.reason": reason[:2000],
            "dlq.kind": kind,
            "dlq.error_class": error.__class__.__name__,
            "dlq.original_topic": rec.topic,
            "dlq.original_partition": str(rec.partition),
            "dlq.original_offset": str(rec.offset),
            "dlq.time": datetime.now(UTC).isoformat(),
        }
        value = rec.value or b""
        with record_context(rec):
            try:
                await self.dlq_publisher.publish(value, key=rec.key, headers=headers)
            except MessageSizeTooLargeError:
                # the record and our headers together exceed what the DLQ topic takes: keep its start
                headers["dlq.truncated_from_bytes"] = str(len(value))
                await self.dlq_publisher.publish(value[:DLQ_TRUNCATED_BYTES], key=rec.key, headers=headers)
        self.stats.dead_lettered += 1
        self._consumed["dead_lettered"].inc()
        DEAD_LETTERS.labels(self.service, self.topic, kind).inc()
        log.warning(
            "dead_lettered",
            consumer=self.consumer_name,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            kind=kind,
            reason=reason[:300],
        )

    def _log_handled(self, item: Incoming, outcome: str, duration_ms: float) -> None:
        rec = item.record
        data = item.envelope.data
        log.info(
            "message_handled",
            consumer=self.consumer_name,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            event_id=item.envelope.id,
            type=item.envelope.type,
            agent_id=data.get("agent_id"),
            conversation_id=data.get("conversation_id"),
            outcome=outcome,
            duration_ms=round(duration_ms, 3),
        )


@dataclass(eq=False)
class _Waiting:
    consumer: Consumer
    incoming: list[Incoming]
    done: bool = False
    error: BaseException | None = None


class Coalescer:
    """A service's batches that wait at the same moment, handled in one transaction.

    Each of a service's consumers reads its own topic; at a centre's peak, batches of several topics
    are ready together (an assignment on routing's topic, the agent's new presence, the next
    command), and each was a transaction of its own: BEGIN, inbox, locks, sequencer, outbox, COMMIT,
    and a relay pass, for a record or two. Now a batch that arrives while another of the service's
    batches is being handled waits for it, and whatever has gathered by then is handled together:
    one transaction for all, and one of each batch hook (the service's row locks first, in one
    sorted statement for all its agents: `before_batch` must be one function across the consumers).
    A batch that arrives while nothing is being handled is handled at once, alone, as before: no
    clock, no waiting at idle.

    Everything but the common case goes the way it always went: when the batches together fail
    (a refusal that needs savepoints, an invalid record, a database error), the transaction is
    rolled back and each batch is handled on its own by its consumer's pipeline (careful mode,
    retries, rewinds, dead letters). Offsets stay each consumer's: a consumer commits past a batch
    once the transaction that held it has committed."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._waiting: list[_Waiting] = []
        self._lock = asyncio.Lock()
        self._merged = BATCHES_MERGED.labels(service)
        self.transactions = 0  # transactions that held more than one batch
        self.batches = 0  # batches they held

    async def handle(self, consumer: Consumer, incoming: list[Incoming]) -> None:
        """Handle `incoming` (alone or with others); raises as `Consumer._handle_batch` would."""
        me = _Waiting(consumer, incoming)
        self._waiting.append(me)
        try:
            async with self._lock:
                if not me.done:
                    group, self._waiting = self._waiting, []
                    await self._run(group)
        except asyncio.CancelledError:
            if me in self._waiting:
                self._waiting.remove(me)
            raise
        if me.error is not None:
            raise me.error

    async def _run(self, group: list[_Waiting]) -> None:
        try:
            if len(group) > 1 and await self._together(group):
                for w in group:
                    w.done = True
                return
            for w in group:
                try:
                    await w.consumer._handle_batch(w.incoming)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the batch is to be rewound: by its own consumer
                    w.error = exc
                w.done = True
        except BaseException:
            # cancelled (the service stops): the batches not handled go back, each to its own consumer
            self._waiting[:0] = [w for w in group if not w.done]
            raise

    async def _together(self, group: list[_Waiting]) -> bool:
        """One transaction for the group's batches; False (rolled back) when they must go one by one."""
        if len({w.consumer.before_batch for w in group if w.consumer.before_batch is not None}) > 1:
            return False
        try:
            await _in_transaction([(w.consumer, w.incoming) for w in group])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("merged_batches_one_by_one", service=self.service, batches=len(group), error=repr(exc))
            return False
        self.transactions += 1
        self.batches += len(group)
        self._merged.inc(len(group))
        return True


async def _in_transaction(parts: list[tuple[Consumer, list[Incoming]]], *, careful: bool = False) -> None:
    """Handle batches in one transaction: one consumer's batch, or the batches a `Coalescer` gathered
    (their consumers share one `before_batch`, or have none). One inbox statement claims every event
    under its own consumer's name; `before_batch` runs once over the fresh payloads, the handlers
    batch after batch, each distinct `after_batch` and `on_committed` once. Raises (rolled back) as
    the handlers or the database do."""
    consumers = list(dict.fromkeys(consumer for consumer, _ in parts))
    first = consumers[0]
    before = next((c.before_batch for c in consumers if c.before_batch is not None), None)
    started = time.perf_counter()
    outcomes: list[tuple[Consumer, Incoming, str]] = []
    async with first.database.transaction() as tx:
        uow = first.unit_of_work(tx)
        if len(consumers) == 1:
            ids = await tx.claim_inbox(first.consumer_name, [i.envelope.id for _, batch in parts for i in batch])
            fresh = {(first.consumer_name, eid) for eid in ids}
        else:
            fresh = await tx.claim_inbox_many([(c.consumer_name, i.envelope.id) for c, batch in parts for i in batch])
        if before is not None:
            payloads: dict[tuple[str, str], Payload] = {}
            for consumer, batch in parts:
                for item in batch:
                    claim = (consumer.consumer_name, item.envelope.id)
                    if claim in fresh:
                        payloads[claim] = item.payload
            await before(uow, list(payloads.values()))
        if not careful:
            await _run_ahead(uow, parts, fresh)
        seen: set[tuple[str, str]] = set()
        for consumer, batch in parts:
            for item in batch:
                claim = (consumer.consumer_name, item.envelope.id)
                if claim not in fresh or claim in seen:
                    outcomes.append((consumer, item, "duplicate"))
                    continue
                seen.add(claim)
                outcomes.append((consumer, item, await consumer._handle_one(uow, item, careful=careful)))
        for after in dict.fromkeys(c.after_batch for c in consumers if c.after_batch is not None):
            await after(uow)
        await uow.flush()
    uow.committed()
    for on_committed in dict.fromkeys(c.on_committed for c in consumers if c.on_committed is not None):
        on_committed(uow)
    elapsed_ms = (time.perf_counter() - started) * 1000
    for consumer in consumers:
        consumer.stats.consecutive_failures = 0
    for consumer, item, outcome in outcomes:
        consumer._count(outcome.split(":", 1)[0])
        consumer._log_handled(item, outcome, elapsed_ms / len(outcomes))


async def _run_ahead(
    uow: UnitOfWork[Any, Any], parts: list[tuple[Consumer, list[Incoming]]], fresh: set[tuple[str, str]]
) -> None:
    """Run the handlers' first statements ahead, several records' in one round trip each
    (`Consumer.ahead`), and leave the answers to the handlers (`UnitOfWork.answered`).

    A record runs ahead when every record before it in the transaction that names one of its keys
    (`Consumer.keys`: its agents, its conversations) ran ahead too, with a `whole` statement (one
    that is all its handler does in the database), in an earlier round trip. So the records about
    one agent or one conversation keep their order, and nothing a record reads was changed before
    its turn by a record that did not run yet. Records about nothing the others name run in the
    first round trip. A record in its turn (no `RunAhead` for its type, not `only`, or after one of
    those about the same key) holds its keys back from running ahead for the rest of the
    transaction; a record without keys stops the walk. Only a transaction without savepoints runs
    ahead: a refused record rolls the whole transaction back, its ahead writes with it, and the
    careful run that follows runs none."""
    held: set[Hashable] = set()  # keys named by a record in its turn, or by one ahead but not `whole`
    after: dict[Hashable, int] = {}  # key -> the round of the last `whole` record ahead about it
    rounds: dict[int, dict[RunAhead, list[Incoming]]] = {}
    seen: set[tuple[str, str]] = set()
    for consumer, batch in parts:
        for item in batch:
            claim = (consumer.consumer_name, item.envelope.id)
            if claim not in fresh or claim in seen:
                continue  # a duplicate: never handled
            seen.add(claim)
            keys = set(consumer.keys(item.payload)) if consumer.keys is not None else set()
            if not keys:
                break
            how = consumer.ahead.get(item.envelope.type)
            runs = how is not None and (how.only is None or how.only(item.payload)) and not keys & held
            if how is None or not runs:
                held |= keys
                continue
            n = 1 + max((after[k] for k in keys if k in after), default=0)
            rounds.setdefault(n, {}).setdefault(how, []).append(item)
            if how.whole:
                after.update(dict.fromkeys(keys, n))
            else:
                held |= keys
        else:
            continue
        break
    for n in sorted(rounds):
        for how, items in rounds[n].items():
            answers = await how.run(uow, [(item.envelope, item.payload) for item in items])
            for item, answer in zip(items, answers, strict=True):
                uow.answers[(item.envelope.id, "")] = answer


def _header(rec: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in rec.headers or ():
        if key == name:
            return value.decode(errors="replace") if value is not None else None
    return None


# How often a busy consumer commits its offsets (an idle one commits at once).
COMMIT_INTERVAL_S = 0.5

# aiokafka's fetcher waits this long (its `prefetch_backoff`, 0.1 s) for fetched records to be taken
# before it fetches the consumer's other partitions without theirs: see `whole_fetches`.
WHOLE_FETCH_BACKOFF_S = 3600.0


def whole_fetches(consumer: Any) -> None:
    """Make a consumer's every fetch ask for all its partitions.

    aiokafka keeps one fetch in flight per broker. When a partition's records have waited 0.1 s
    untaken (the batch before them is still being handled), it fetches the other partitions
    without that one; once those records are taken, the partition's next records wait for that
    fetch to come back, which, when nothing else arrives, is `fetch_max_wait_ms` later: a stall of
    a hop on the conversation's path, up to 2 s. Our poll takes everything there at once, so the
    fetcher waits for that instead, and the fetch it sends next covers every partition. (A private
    attribute: `shared/tests/test_messaging.py` fails if an aiokafka upgrade renames it.)"""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and getattr(fetcher, "_prefetch_backoff", None) != WHOLE_FETCH_BACKOFF_S:
        fetcher._prefetch_backoff = WHOLE_FETCH_BACKOFF_S


class Offsets:
    """A consumer's offset commits, taken off the path of each batch.

    Offsets are committed only after the transactions of the batches before them (as before), but
    not once per batch: a batch's commit was a broker round trip on every hop of a conversation's
    path. `take_available`'s poll commits the consumer's position before it polls when the last
    commit is `COMMIT_INTERVAL_S` old, and at once when nothing arrived; `stop` commits last. The
    position then is past every batch handled, or rewound to a failed batch's earliest record
    (`Consumer._polled` seeks back). A crash or a rebalance between two commits redelivers what was
    handled since: the inbox recognises it (at-least-once with dedupe, as everywhere)."""

    def __init__(self) -> None:
        self.pending = False
        self.last = time.monotonic()

    async def commit(self, consumer: Any) -> None:
        if not self.pending:
            return
        try:
            await consumer.commit()
        except KafkaError as exc:  # a rebalance in progress, the coordinator moving: next time
            log.warning("offset_commit_deferred", error=repr(exc))
            return
        self.pending = False
        self.last = time.monotonic()


def take_available(
    subscriber: Any,
    idle_wait_ms: int,
    max_records: int,
    *,
    handle: Callable[[tuple[ConsumerRecord[Any, Any], ...], Any], Awaitable[None]],
    keep: Callable[[ConsumerRecord[Any, Any]], bool] | None = None,
    gather_s: float = 0.0,
) -> Offsets:
    """Make a batch subscriber take what has arrived, at once, and never wait on a clock.

    FastStream's batch poll (`getmany(timeout_ms=batch_timeout_ms)`) returns as soon as records are
    there, but after an empty poll it sleeps `batch_timeout_ms` more: a record arriving in that
    sleep waits for it, on every hop of a conversation's path. Here an empty poll just polls again,
    and the poll itself waits up to `idle_wait_ms` for the first record to arrive (returning the
    moment one does). Batches form only under load: whatever arrived while the last batch was
    being handled, up to `max_records`. The poll hands each batch to `handle` directly (under the
    subscriber's lock, so a graceful stop waits for it) and FastStream's consume path is not used.
    Records `keep` refuses never reach `handle` (nor cost it a batch). Offsets are committed by the
    returned `Offsets` (the subscriber acks manually).

    With `gather_s`, a poll that brought records is followed by that long a pause before the next
    poll: the first record after a quiet spell is handled at once, those that follow it are taken
    together, at most `gather_s` (plus the fetch that brings them) later. For a consumer off the
    path of a conversation: under load it wakes (a fetch, a batch, a transaction) once per
    `gather_s`, not once for each record of its topic."""
    offsets = Offsets()

    async def get_msg(consumer: Any) -> tuple[ConsumerRecord[Any, Any], ...]:
        whole_fetches(consumer)
        if offsets.pending and time.monotonic() - offsets.last >= COMMIT_INTERVAL_S:
            await offsets.commit(consumer)
        fetched = await consumer.getmany(timeout_ms=idle_wait_ms, max_records=max_records)
        if not fetched:
            await offsets.commit(consumer)  # quiet: commit what was handled now
            return ()
        offsets.pending = True
        records = (rec for recs in fetched.values() for rec in recs)
        batch = tuple(records if keep is None else (rec for rec in records if keep(rec)))
        if batch:
            with subscriber.lock:
                await handle(batch, consumer)
        if gather_s > 0:
            await asyncio.sleep(gather_s)
        return ()

    original_stop = subscriber.stop

    async def stop() -> None:
        """FastStream's stop (the batch in hand finishes, then its consumer stops), with the
        offsets of what was handled committed in between."""
        consumer = subscriber.consumer
        if consumer is not None:
            consumer_stop = consumer.stop

            async def commit_then_stop() -> None:
                with contextlib.suppress(Exception):
                    await offsets.commit(consumer)
                await consumer_stop()

            consumer.stop = commit_then_stop
        await original_stop()

    subscriber.get_msg = get_msg
    subscriber.stop = stop
    return offsets


def declare_publishers(broker: KafkaBroker, names: topics.TopicNames, produced: dict[str, str]) -> None:
    """Declare what a service publishes (via its outbox) so the AsyncAPI document is complete."""
    for topic, description in produced.items():
        broker.publisher(names(topic), description=description, schema=contracts.envelope_model(topic))
