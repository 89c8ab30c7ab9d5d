"""When exactly FastStream commits Kafka offsets, pinned on a real broker.

We use batch subscribers with AckPolicy.NACK_ON_ERROR: the offset is committed after the handler
returns (so after our transaction), never before it; when the handler raises, nothing is committed
and the partition is rewound, so the same records come again. AckPolicy.ACK, by contrast, commits
even when the handler raised: it would lose the batch, which is why we do not use it.
"""

from __future__ import annotations

import asyncio
import uuid

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
