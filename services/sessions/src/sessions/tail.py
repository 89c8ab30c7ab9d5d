"""A group-less tail of several topics from their end, for the agents', supervisor and customer streams.

Like the agent Hub, it reads without a consumer group (every gateway sees everything, nothing is
committed) from the position at start. Listeners get (topic, key, value) for every record; the
latest messages of each conversation are kept so a stream that starts late misses nothing the
transcript does not hold yet.

Some topics are read only while someone needs them: the supervisor streams' change signals
(routing's, presence's and assist's topics) are of no use to a gateway no supervisor is connected
to, and reading them costs every fetch their partitions. `watching()` holds them: the first holder
has them read from their end (its overview is computed after that, so nothing falls between), and
they are let go `RELEASE_AFTER_S` after the last holder left (a page that reloads keeps them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection
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
# How long topics read on demand stay read after their last holder left.
RELEASE_AFTER_S = 60.0
# The poll's wait: how soon a change of what is read takes effect.
POLL_MS = 200
# How long `watching()` waits for the on-demand topics to be read before it goes on without them.
WATCH_WAIT_S = 5.0


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
    """`names` maps each DESIGN.md topic name to this deployment's real name; those in `on_demand`
    are read only while `watching()` is held."""

    def __init__(
        self,
        bootstrap: str,
        names: dict[str, str],
        *,
        fetch_max_wait_ms: int = 500,
        on_demand: Collection[str] = (),
        release_after_s: float = RELEASE_AFTER_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.release_after_s = release_after_s
        self._real = {real: name for name, real in names.items()}
        self._on_demand = {names[name] for name in on_demand if name in names}
        self.listeners: set[Listener] = set()
        self.recent: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._partitions: dict[str, list[int]] = {}
        self._holders = 0
        self._released_at = 0.0
        self._reading_on_demand = False
        self._on_demand_read = asyncio.Event()  # set while the on-demand topics are read

    @property
    def reading(self) -> set[str]:
        """The real names of the topics read now."""
        extra = self._reading_on_demand
        return {real for real in self._real if extra or real not in self._on_demand}

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            **aiokafka_options(),
        )
        await self._consumer.start()
        whole_fetches(self._consumer)
        self._partitions = {real: await partitions_of(self.bootstrap, real) for real in self._real}
        await self._read(on_demand=self._holders > 0)
        self._task = asyncio.create_task(self._run(), name="gateway-tail")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """The on-demand topics read while held; entered once they are read from their end."""
        self._holders += 1
        try:
            if self._on_demand and self._consumer is not None:
                try:
                    await asyncio.wait_for(self._on_demand_read.wait(), WATCH_WAIT_S)
                except TimeoutError:  # a tail that cannot fetch now: the stream still starts
                    log.warning("tail_on_demand_late", waited_s=WATCH_WAIT_S)
            yield
        finally:
            self._holders -= 1
            if self._holders == 0:
                self._released_at = time.monotonic()

    async def _read(self, *, on_demand: bool) -> None:
        """Read the always-read topics, and the on-demand ones when `on_demand`: the partitions read
        before go on from where they were, those added start at their end."""
        consumer = self._consumer
        assert consumer is not None
        before = set(consumer.assignment())
        kept = {tp: await consumer.position(tp) for tp in before}
        self._reading_on_demand = on_demand
        wanted = [TopicPartition(real, p) for real in sorted(self.reading) for p in self._partitions[real]]
        consumer.assign(wanted)
        added = [tp for tp in wanted if tp not in kept]
        for tp in wanted:
            if tp in kept:
                consumer.seek(tp, kept[tp])
        if added:
            await consumer.seek_to_end(*added)
            for tp in added:  # resolve positions now: everything published from here on is seen
                await consumer.position(tp)
        if on_demand:
            self._on_demand_read.set()
        else:
            self._on_demand_read.clear()
        if before:
            log.info("tail_topics", reading=sorted(self.reading))

    async def _follow_holders(self) -> None:
        if not self._on_demand:
            return
        if self._holders > 0 and not self._reading_on_demand:
            await self._read(on_demand=True)
        elif (
            self._holders == 0
            and self._reading_on_demand
            and time.monotonic() - self._released_at >= self.release_after_s
        ):
            await self._read(on_demand=False)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                await self._follow_holders()
                batch = await self._consumer.getmany(timeout_ms=POLL_MS)
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
