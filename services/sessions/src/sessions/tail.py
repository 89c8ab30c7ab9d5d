"""A group-less tail of several topics from their end, for the supervisor and customer streams.

Like the agent Hub, it reads without a consumer group (every gateway sees everything, nothing is
committed) from the position at start. Listeners get (topic, key, value) for every record; the
latest messages of each conversation are kept so a stream that starts late misses nothing the
transcript does not hold yet."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import topics
from shared.kafka_security import aiokafka_options
from shared.messaging import whole_fetches

log = structlog.get_logger("switchboard.gateway")

Listener = Callable[[str, str | None, bytes], None]
RECENT_PER_CONVERSATION = 200
RECENT_CONVERSATIONS = 5000


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partitions; the topic must exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **aiokafka_options())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = sorted(p["partition"] for d in described if d["topic"] == topic for p in d["partitions"])
    if not parts:
        raise RuntimeError(f"topic {topic} has no partitions: create the topics first (make up does)")
    return parts


def message_of(event: dict[str, Any]) -> dict[str, Any]:
    """A message.posted event as the browser shows a message."""
    data = event.get("data") or {}
    return {
        "message_id": data.get("message_id"),
        "sender": data.get("sender"),
        "sender_id": data.get("sender_id"),
        "visibility": data.get("visibility", "public"),
        "text": data.get("text", ""),
        "time": event.get("time"),
        "delivery": "sent",
    }


class Tail:
    """`names` maps each DESIGN.md topic name to this deployment's real name."""

    def __init__(self, bootstrap: str, names: dict[str, str], *, fetch_max_wait_ms: int = 500) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._real = {real: name for name, real in names.items()}
        self.listeners: set[Listener] = set()
        self.recent: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            **aiokafka_options(),
        )
        await self._consumer.start()
        whole_fetches(self._consumer)
        tps = [TopicPartition(real, p) for real in self._real for p in await partitions_of(self.bootstrap, real)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve positions now: everything published from here on is seen
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="gateway-tail")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("tail_fetch_error", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batch.items():
                topic = self._real.get(tp.topic, tp.topic)
                for rec in records:
                    if rec.value is not None:
                        self.dispatch(topic, rec.key.decode(errors="replace") if rec.key else None, rec.value)

    def dispatch(self, topic: str, key: str | None, value: bytes) -> None:
        if topic == topics.MESSAGES and key is not None:
            self._remember(key, value)
        for listener in list(self.listeners):
            try:
                listener(topic, key, value)
            except Exception as exc:  # one broken stream must not stop the others
                log.warning("tail_listener_error", error=repr(exc))

    def _remember(self, conversation_id: str, value: bytes) -> None:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if event.get("type") != "message.posted":
            return
        ring = self.recent.get(conversation_id)
        if ring is None:
            ring = self.recent[conversation_id] = deque(maxlen=RECENT_PER_CONVERSATION)
            while len(self.recent) > RECENT_CONVERSATIONS:
                self.recent.popitem(last=False)
        else:
            self.recent.move_to_end(conversation_id)
        ring.append(message_of(event))

    def recent_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return list(self.recent.get(conversation_id, ()))
