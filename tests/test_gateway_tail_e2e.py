"""The gateway's tail on a real broker: the topics only supervisor streams need are read while one
is open (from their end, before its first overview), and let go a while after the last one left;
the topics always read go on across each change without a gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from sessions import tail as tail_module
from sessions.supervisor import ON_DEMAND, WATCHED
from sessions.tail import Tail
from shared import topics
from tools.testing import Deployment

Seen = list[tuple[str, bytes]]


@asynccontextmanager
async def tailing(deployment: Deployment, release_after_s: float) -> AsyncIterator[tuple[Tail, Seen]]:
    tail = Tail(
        deployment.infra.bootstrap,
        {name: deployment.topic(name) for name in WATCHED},
        fetch_max_wait_ms=100,
        on_demand=ON_DEMAND,
        release_after_s=release_after_s,
    )
    seen: Seen = []
    tail.listeners.add(lambda topic, _key, value: seen.append((topic, value)))
    await tail.start()
    try:
        yield tail, seen
    finally:
        await tail.stop()


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.02)


async def test_supervisor_topics_are_read_only_while_a_supervisor_watches(deployment: Deployment) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=deployment.infra.bootstrap)
    await producer.start()

    async def publish(topic: str, value: bytes) -> None:
        await producer.send_and_wait(deployment.topic(topic), value, key=b"agent-1")

    try:
        async with tailing(deployment, release_after_s=0.0) as (tail, seen):
            routing, sessions = deployment.topic(topics.ROUTING), deployment.topic(topics.SESSIONS)
            assert sessions in tail.reading and routing not in tail.reading

            # no supervisor: the agents' topic is read, routing's is not
            await publish(topics.ROUTING, b"r-unwatched")
            await publish(topics.SESSIONS, b"s-1")
            await until(lambda: (topics.SESSIONS, b"s-1") in seen)

            # a supervisor: entered once routing's topic is read from its end (what came before is not
            # replayed), while the agents' topic goes on where it was
            async with tail.watching():
                assert routing in tail.reading
                await publish(topics.ROUTING, b"r-watched")
                await publish(topics.SESSIONS, b"s-2")
                await until(lambda: (topics.ROUTING, b"r-watched") in seen and (topics.SESSIONS, b"s-2") in seen)
            # the last supervisor left: routing's topic is let go; nothing of the agents' topic is missed
            await until(lambda: routing not in tail.reading)
            await publish(topics.ROUTING, b"r-after")
            for i in range(3, 23):
                await publish(topics.SESSIONS, b"s-%d" % i)
            await until(lambda: (topics.SESSIONS, b"s-22") in seen)
            assert [v for t, v in seen if t == topics.ROUTING] == [b"r-watched"]
            assert [v for t, v in seen if t == topics.SESSIONS] == [b"s-%d" % i for i in range(1, 23)]
    finally:
        await producer.stop()


async def test_a_supervisor_who_reconnects_keeps_the_topics_read(deployment: Deployment) -> None:
    async with tailing(deployment, release_after_s=tail_module.RELEASE_AFTER_S) as (tail, _):
        routing = deployment.topic(topics.ROUTING)
        async with tail.watching(), tail.watching():  # two supervisors
            assert routing in tail.reading
        await asyncio.sleep(3 * tail_module.POLL_MS / 1000)
        assert routing in tail.reading  # a page reloading in the meantime finds them read
        async with tail.watching():
            assert routing in tail.reading
