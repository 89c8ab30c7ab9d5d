"""When exactly Kafka offsets are committed, pinned on a real broker.

Our consumers (`shared.messaging.Consumer`) ack manually: the offsets are committed after the
batches' transactions, by the poll (at once when nothing more arrived, at most every
COMMIT_INTERVAL_S under load) and at stop, never before the transaction; when a batch fails it is
rewound (nack: seek back), nothing past it is committed, and the same records come again. Records
of types the consumer does not handle never reach it, and their offsets are committed with the rest.

FastStream's own policies, pinned below for reference: NACK_ON_ERROR commits after the handler
returns (a broker round trip per batch, which is why we commit on our own); AckPolicy.ACK commits
even when the handler raised: it would lose the batch, which is why we never use it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

pytestmark = pytest.mark.e2e


async def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    om = offsets.get(TopicPartition(topic, 0))
    return None if om is None or om.offset < 0 else om.offset


async def _setup(bootstrap: str, n: int) -> str:
    topic = f"offsets-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for i in range(n):
        await producer.send_and_wait(topic, f"m{i}".encode())
    await producer.stop()
    return topic


async def _run(
    bootstrap: str, topic: str, policy: AckPolicy, fail_first: bool
) -> tuple[list[list[bytes]], list[int | None], int | None]:
    group = f"g-{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker(bootstrap)
    calls: list[list[bytes]] = []
    seen_inside: list[int | None] = []
    done = asyncio.Event()

    @broker.subscriber(
        topic,
        group_id=group,
        batch=True,
        ack_policy=policy,
        auto_offset_reset="earliest",
        max_records=100,
        batch_timeout_ms=200,
    )
    async def handle(body: list[bytes]) -> None:
        calls.append(list(body))
        seen_inside.append(await _committed(bootstrap, group, topic))
        if fail_first and len(calls) == 1:
            raise RuntimeError("handler failed")
        done.set()

    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(0.5)
    finally:
        await broker.stop()
    return calls, seen_inside, await _committed(bootstrap, group, topic)


async def test_nack_on_error_commits_after_the_handler_returns(infra) -> None:
    topic = await _setup(infra.bootstrap, 3)
    _calls, seen_inside, committed = await _run(infra.bootstrap, topic, AckPolicy.NACK_ON_ERROR, fail_first=False)
    assert seen_inside[0] is None  # nothing committed while the handler runs
    assert committed == 3  # the whole batch, once the handler returned


async def test_nack_on_error_does_not_commit_when_the_handler_raises(infra) -> None:
    topic = await _setup(infra.bootstrap, 3)
    calls, seen_inside, committed = await _run(infra.bootstrap, topic, AckPolicy.NACK_ON_ERROR, fail_first=True)
    assert len(calls) >= 2
    assert calls[1][0] == calls[0][0] == b"m0"  # rewound: the failed batch comes again
    assert seen_inside[1] is None  # the failure committed nothing
    assert committed == 3


async def test_ack_policy_commits_even_when_the_handler_raises(infra) -> None:
    """Why we do not use AckPolicy.ACK: a raising handler's batch is committed, i.e. lost."""
    topic = await _setup(infra.bootstrap, 3)
    group_calls: list[list[bytes]] = []
    group = f"g-{uuid.uuid4().hex[:8]}"
    broker = KafkaBroker(infra.bootstrap)
    failed = asyncio.Event()

    @broker.subscriber(
        topic,
        group_id=group,
        batch=True,
        ack_policy=AckPolicy.ACK,
        auto_offset_reset="earliest",
        max_records=100,
        batch_timeout_ms=200,
    )
    async def handle(body: list[bytes]) -> None:
        group_calls.append(list(body))
        failed.set()
        raise RuntimeError("handler failed")

    await broker.start()
    try:
        await asyncio.wait_for(failed.wait(), 30)
        await asyncio.sleep(1.0)
    finally:
        await broker.stop()
    assert await _committed(infra.bootstrap, group, topic) == 3
    assert len(group_calls) == 1  # never redelivered


async def _conversations_topic(bootstrap: str, prefix: str, partitions: int) -> str:
    """A deployment's conversations topic (and its DLQ) under `prefix`, for one of our consumers."""
    from shared import topics

    topic = prefix + topics.CONVERSATIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1), NewTopic(topic + topics.DLQ_SUFFIX, 1, 1)])
    await admin.close()
    return topic


def _our_consumer(service: str, prefix: str, arrived: Any, settings: Any) -> tuple[KafkaBroker, Any]:
    """Our consumer pipeline (`shared.messaging.Consumer`) of conversation arrivals, in memory."""
    from shared import topics
    from shared.messaging import Consumer, UnitOfWork
    from shared.tx import MemoryDatabase

    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    consumer = Consumer(
        service=service,
        topic=topics.CONVERSATIONS,
        handlers={"conversation.arrived": arrived},
        database=MemoryDatabase(),
        unit_of_work=lambda tx: UnitOfWork(tx, None, None, topics.TopicNames(prefix), f"/switchboard/{service}"),
        broker=broker,
        settings=settings,
        exit_process=lambda code: None,
    )
    return broker, consumer


async def test_our_consumer_commits_after_its_transactions_skips_what_it_does_not_handle_and_rewinds_failures(
    infra,
) -> None:
    from shared import contracts as c
    from shared.settings import ServiceSettings

    prefix = f"off{uuid.uuid4().hex[:6]}-"
    topic = await _conversations_topic(infra.bootstrap, prefix, 1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap)
    await producer.start()
    sent = [
        c.ConversationEnded(conversation_id="c-0"),  # a known type this consumer does not handle
        c.ConversationArrived(conversation_id="c-1", channel="chat"),
        c.ConversationEnded(conversation_id="c-1"),
    ]
    for payload in sent:
        ev = c.event(payload, source="/tests")
        await producer.send_and_wait(topic, ev.to_bytes(), headers=[("ce_type", ev.type.encode())])
    await producer.stop()

    settings = ServiceSettings(
        kafka_bootstrap_servers=infra.bootstrap, topic_prefix=prefix, transient_retries=0, batch_timeout_ms=100
    )
    seen: list[tuple[str, int | None]] = []
    handled = asyncio.Event()

    async def arrived(uow: object, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
        seen.append((data.conversation_id, await _committed(infra.bootstrap, consumer.group_id, topic)))
        if len(seen) == 1:
            raise ConnectionError("PostgreSQL went away")  # infrastructure: rewound, not dead-lettered
        handled.set()

    broker, consumer = _our_consumer("offsets", prefix, arrived, settings)
    await broker.start()
    try:
        await asyncio.wait_for(handled.wait(), 30)
        committed = None
        for _ in range(100):  # quiet now: the poll commits what was handled
            committed = await _committed(infra.bootstrap, consumer.group_id, topic)
            if committed == 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await broker.stop()
    # the failed batch committed nothing; it came again and then everything was committed, the
    # records the consumer does not handle included (they never reached it)
    assert [cid for cid, _ in seen] == ["c-1", "c-1"]
    assert seen[0][1] in (None, 0, 1) and seen[1][1] in (None, 0, 1)  # never past the record in hand
    assert committed == 3
    assert consumer.stats.handled == 1 and consumer.stats.ignored >= 2


async def test_a_record_is_never_held_for_the_wait_of_a_fetch_that_left_its_partition_out(infra) -> None:
    """aiokafka fetches a consumer's other partitions without one whose records have waited 0.1 s
    untaken (here: B, while A's batch is handled); once B is taken, the partition's next record (C)
    would wait for that fetch to come back, `fetch_max_wait_ms` later when nothing else arrives.
    Our poll makes every fetch ask for all the partitions (`messaging.whole_fetches`): C is handled
    as soon as it arrives, not 30 s later."""
    from shared import contracts as c
    from shared.settings import ServiceSettings

    prefix = f"whole{uuid.uuid4().hex[:6]}-"
    topic = await _conversations_topic(infra.bootstrap, prefix, 2)
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap)
    await producer.start()

    async def send(conversation_id: str) -> None:
        ev = c.event(c.ConversationArrived(conversation_id=conversation_id, channel="chat"), source="/tests")
        await producer.send_and_wait(topic, ev.to_bytes(), partition=0, headers=[("ce_type", ev.type.encode())])

    handling_a, handled = asyncio.Event(), {cid: asyncio.Event() for cid in "ABC"}

    async def arrived(uow: object, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
        if data.conversation_id == "A":
            handling_a.set()
            await asyncio.sleep(0.5)  # a slow batch: B arrives meanwhile and waits untaken
        handled[data.conversation_id].set()

    settings = ServiceSettings(kafka_bootstrap_servers=infra.bootstrap, topic_prefix=prefix, fetch_max_wait_ms=30_000)
    broker, _ = _our_consumer("whole", prefix, arrived, settings)
    await send("A")
    await broker.start()
    try:
        await asyncio.wait_for(handling_a.wait(), 30)
        await send("B")
        await asyncio.wait_for(handled["B"].wait(), 30)
        await send("C")
        try:
            await asyncio.wait_for(handled["C"].wait(), 10)
        except TimeoutError:
            raise AssertionError("C waited for a fetch that left its partition out") from None
    finally:
        await broker.stop()
        await producer.stop()
