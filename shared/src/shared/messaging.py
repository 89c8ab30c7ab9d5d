"""Messaging shared by every service.

- `UnitOfWork`: a use case's transaction; events it emits go to the outbox in that transaction.
- `OutboxRelay`: publishes the outbox in order, one active relay per schema, rows deleted after
  the broker confirmed them (at-least-once; consumers dedupe on the event id).
- `Consumer`: a batch subscriber whose records are parsed, deduplicated through the inbox and
  handled in one transaction per batch; offsets are committed only after that transaction.
  Errors are classified: poison -> TOPIC.dlq at once; others -> bounded retries, then the DLQ;
  infrastructure down -> rewind, and exit the process after too many consecutive failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import SkipValidation

from shared import contracts, topics
from shared.contracts import CloudEvent, InvalidEvent, Payload
from shared.db import Conn
from shared.settings import ServiceSettings
from shared.tx import Database, OutboxRow, Q, Tx

log = structlog.get_logger("switchboard.messaging")

CONTENT_TYPE = "application/cloudevents+json"


class PoisonMessage(Exception):
    """The record can never be handled (invalid, impossible); it goes to the DLQ at once."""


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
)


def is_infrastructure(error: BaseException) -> bool:
    """True when the error says the database or broker is unreachable, not that the record is bad."""
    if isinstance(error, INFRASTRUCTURE_ERRORS):
        return True
    return isinstance(error, asyncpg.exceptions.InterfaceError) and "closed" in str(error)


def make_broker(settings: ServiceSettings, client_id: str) -> KafkaBroker:
    """The Kafka broker of a service: idempotent producer, all acks, small linger for batching."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        graceful_timeout=10.0,
    )


# --- unit of work + outbox ---------------------------------------------------------------------


Sequencer = Callable[["UnitOfWork[Any, Any]", list[CloudEvent]], Awaitable[None]]
S = TypeVar("S")
B = TypeVar("B")


class UnitOfWork(Generic[S, B]):
    """A use case's transaction: the service's `store` on it, outgoing events via `emit`, and a
    typed per-batch context `batch` (figures read once per batch, decisions written at its end).

    Events are serialised into the outbox at `flush`, after an optional sequencer has stamped
    them (sessions numbers each agent's events so clients can resume without gaps)."""

    def __init__(
        self,
        tx: Tx,
        store: S,
        batch: B,
        names: topics.TopicNames,
        source: str,
        sequencer: Sequencer | None = None,
    ) -> None:
        self.tx = tx
        self.store = store
        self.batch = batch
        self.names = names
        self.source = source
        self.sequencer = sequencer
        self._pending: list[tuple[str, str, CloudEvent]] = []
        self.emitted: list[CloudEvent] = []
        self.flags: set[str] = set()

    def emit(self, payload: Payload, *, key: str | None = None, subject: str | None = None) -> CloudEvent:
        ev = contracts.event(payload, source=self.source, subject=subject)
        self._pending.append((payload.TOPIC, key or contracts.key_of(payload), ev))
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
            await self.sequencer(self, [ev for _, _, ev in self._pending])
        await self.tx.write_outbox(
            [OutboxRow(self.names(topic), key, ev.to_bytes(), {"ce_type": ev.type}) for topic, key, ev in self._pending]
        )
        self._pending.clear()


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class OutboxRelay:
    """Publishes the outbox of one schema; one relay holds the schema's advisory lock at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        broker: KafkaBroker,
        *,
        batch: int = 2000,
        crash_before_publish: bool = False,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.broker = broker
        self.batch = batch
        self.crash_before_publish = crash_before_publish
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._hold_lock_and_relay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox_relay_error", schema=self.schema, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _hold_lock_and_relay(self) -> None:
        async with self.pool.acquire() as conn:
            lock = _lock_key(f"outbox:{self.schema}")
            if not await conn.fetchval(Q.try_advisory_lock, lock):
                await asyncio.sleep(1.0)  # another replica relays; stand by
                return
            channel = f"outbox_{self.schema}"
            await conn.add_listener(channel, self._notified)
            try:
                while True:
                    sent = await self._relay_once(conn)
                    if sent < self.batch:
                        self._wake.clear()
                        if sent == 0:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            finally:
                await conn.remove_listener(channel, self._notified)
                await conn.execute(Q.advisory_unlock, lock)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _relay_once(self, conn: Conn) -> int:
        rows = await conn.fetch(Q.list_outbox, self.batch)
        if not rows:
            return 0
        if self.crash_before_publish:
            log.critical("fault_injected_crash_before_publish", pending=len(rows))
            os._exit(137)
        futures = []
        for row in rows:
            headers = {"content-type": CONTENT_TYPE, **(row["headers"] or {})}
            fut = await self.broker.publish(
                row["payload"],
                topic=row["topic"],
                key=row["key"].encode() if row["key"] is not None else None,
                headers=headers,
                no_confirm=True,
            )
            futures.append(fut)
        await asyncio.gather(*futures)
        await conn.execute(Q.delete_outbox, [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)


# --- consumer pipeline -------------------------------------------------------------------------

Handler = Callable[[Any, CloudEvent, Any], Awaitable[None]]
AfterBatch = Callable[[Any], Awaitable[None]]


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
    consecutive_failures: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class Consumer:
    """One service's consumption of one topic: parse, dedupe, handle in a transaction, DLQ."""

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
        on_committed: Callable[[UnitOfWork[Any, Any]], None] | None = None,
        savepoints: bool = False,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.service = service
        self.topic = topic
        self.handlers = handlers
        self.database = database
        self.unit_of_work = unit_of_work
        self.broker = broker
        self.settings = settings
        self.after_batch = after_batch
        self.on_committed = on_committed
        self.savepoints = savepoints
        self.exit_process = exit_process
        self.names = topics.TopicNames(settings.topic_prefix)
        self.consumer_name = f"{service}:{topic}"
        self._known_types = contracts.TYPES_BY_TOPIC.get(topic, frozenset())
        self.stats = ConsumerStats()
        self.source = f"/switchboard/{service}"
        self.group_id = f"{settings.topic_prefix}{service}.{topic}"
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
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=f"{service}:{topic}",
            description=f"{service} consumes {topic}: types {', '.join(sorted(handlers))}",
        )

        # AsyncAPI documents each record as the topic's envelope; SkipValidation keeps FastStream
        # from validating bodies (`process` parses the raw records itself: poison -> DLQ).
        async def consume(body: Any, message: KafkaMessage) -> None:
            await self._consume(body, message)

        consume.__annotations__["body"] = Annotated[envelope, SkipValidation]
        self.subscriber(consume)

    async def _consume(self, body: Any, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = list(raw) if isinstance(raw, tuple | list) else [raw]
        await self.process(records)

    async def process(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle one batch; raises only when the batch must be retried from Kafka (not committed)."""
        self.stats.batches += 1
        incoming: list[Incoming] = []
        for rec in records:
            ce_type = _header(rec, "ce_type")
            if ce_type is not None and ce_type not in self.handlers and ce_type in self._known_types:
                self.stats.ignored += 1  # a known type this consumer does not handle: skip unparsed
                continue
            try:
                env, payload = contracts.parse(rec.value, self.topic)
            except InvalidEvent as exc:
                await self.dead_letter(rec, exc, "poison")
                continue
            if env.type not in self.handlers:
                self.stats.ignored += 1
                continue
            incoming.append(Incoming(rec, env, payload))
        if not incoming:
            return
        try:
            await self._in_transaction(incoming)
            self.stats.consecutive_failures = 0
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(incoming) == 1:
                await self._one_by_one(incoming, first_error=exc)
            else:
                log.warning("batch_failed_isolating", consumer=self.consumer_name, size=len(incoming), error=repr(exc))
                await self._one_by_one(incoming)

    async def _in_transaction(self, batch: list[Incoming]) -> None:
        started = time.perf_counter()
        async with self.database.transaction() as tx:
            uow = self.unit_of_work(tx)
            fresh = await tx.claim_inbox(self.consumer_name, [i.envelope.id for i in batch])
            seen: set[str] = set()
            outcomes: list[tuple[Incoming, str]] = []
            for item in batch:
                eid = item.envelope.id
                if eid not in fresh or eid in seen:
                    self.stats.duplicates += 1
                    outcomes.append((item, "duplicate"))
                    continue
                seen.add(eid)
                outcome = await self._handle_one(uow, item)
                outcomes.append((item, outcome))
            if self.after_batch is not None:
                await self.after_batch(uow)
            await uow.flush()
        if self.on_committed is not None:
            self.on_committed(uow)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for item, outcome in outcomes:
            self._log_handled(item, outcome, elapsed_ms / len(batch))

    async def _handle_one(self, uow: UnitOfWork, item: Incoming) -> str:
        handler = self.handlers[item.envelope.type]
        if not self.savepoints:
            await handler(uow, item.envelope, item.payload)
            self.stats.handled += 1
            return "handled"
        mark = uow.savepoint_state()
        try:
            async with uow.tx.savepoint():
                await handler(uow, item.envelope, item.payload)
        except Rejection as rej:
            uow.rollback_to(mark)
            uow.emit(rej.payload)
            self.stats.rejected += 1
            return f"rejected: {rej}"
        self.stats.handled += 1
        return "handled"

    async def _one_by_one(self, batch: list[Incoming], first_error: BaseException | None = None) -> None:
        for item in batch:
            attempts = 0
            error: BaseException | None = first_error
            first_error = None
            while True:
                if error is None:
                    try:
                        await self._in_transaction([item])
                        self.stats.consecutive_failures = 0
                        break
                    except asyncio.CancelledError:
                        raise
                    except Rejection as rej:
                        await self._reject_alone(item, rej)
                        break
                    except Exception as exc:
                        error = exc
                if isinstance(error, Rejection):
                    await self._reject_alone(item, error)
                    break
                if isinstance(error, PoisonMessage):
                    await self.dead_letter(item.record, error, "poison")
                    break
                attempts += 1
                if attempts > self.settings.transient_retries:
                    if is_infrastructure(error):
                        self._count_failure(error)
                        raise error  # not committed: Kafka redelivers once the infrastructure is back
                    await self.dead_letter(item.record, error, "retries_exhausted")
                    self._count_failure(error)
                    break
                log.warning(
                    "handler_retry",
                    consumer=self.consumer_name,
                    attempt=attempts,
                    event_id=item.envelope.id,
                    error=repr(error),
                )
                await asyncio.sleep(min(0.1 * 2**attempts, 2.0))
                error = None

    async def _reject_alone(self, item: Incoming, rej: Rejection) -> None:
        async with self.database.transaction() as tx:
            if await tx.claim_inbox(self.consumer_name, [item.envelope.id]):
                uow = self.unit_of_work(tx)
                uow.emit(rej.payload)
                await uow.flush()
        self.stats.rejected += 1
        self._log_handled(item, f"rejected: {rej}", 0.0)

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
        await self.dlq_publisher.publish(rec.value or b"", key=rec.key, headers=headers)
        self.stats.dead_lettered += 1
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


def _header(rec: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in rec.headers or ():
        if key == name:
            return value.decode(errors="replace") if value is not None else None
    return None


def declare_publishers(broker: KafkaBroker, names: topics.TopicNames, produced: dict[str, str]) -> None:
    """Declare what a service publishes (via its outbox) so the AsyncAPI document is complete."""
    for topic, description in produced.items():
        broker.publisher(names(topic), description=description, schema=contracts.envelope_model(topic))
