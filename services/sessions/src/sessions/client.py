"""AgentClient: an agent's workspace kept current from Kafka, without gaps or duplicates.

It loads the gateway's snapshot (the workspace, its `seq`, and the Kafka position taken before the
read), then reads the agent's partition of sessions.v1 from that position, skipping events whose
seq the snapshot already reflects.

    async with AgentClient(gateway_url, token, bootstrap) as client:
        print(client.workspace["sessions"])
        async for event in client.events():
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka_security import aiokafka_options


class AgentClient:
    def __init__(self, gateway_url: str, token: str, bootstrap: str, agent_id: str | None = None) -> None:
        from shared.auth import Auth

        self.gateway_url = gateway_url.rstrip("/")
        self.token = token
        self.bootstrap = bootstrap
        self.agent_id = agent_id or Auth("").verify_unsigned_subject(token)
        self.workspace: dict[str, Any] = {}
        self.seq = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> AgentClient:
        await self.load()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_consumer()

    async def _stop_consumer(self) -> None:
        if self._consumer is None:
            return
        consumer, self._consumer = self._consumer, None
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's group-less consumer re-raises the cancellation of its own internal task on
            # stop; swallow that one only, never a cancellation aimed at us.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    async def load(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(
                f"{self.gateway_url}/agents/{self.agent_id}/workspace",
                headers={"Authorization": f"Bearer {self.token}"},
            )
        if r.status_code != 200:
            raise PermissionError(f"snapshot refused ({r.status_code}): {r.text}")
        self.workspace = r.json()
        self.seq = int(self.workspace["seq"])
        pos = self.workspace["kafka"]
        await self._stop_consumer()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **aiokafka_options()
        )
        await self._consumer.start()
        tp = TopicPartition(pos["topic"], pos["partition"])
        self._consumer.assign([tp])
        self._consumer.seek(tp, pos["offset"])
        return self.workspace

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """This agent's events after the snapshot, in order, each once."""
        assert self._consumer is not None, "call load() first"
        async for rec in self._consumer:
            if rec.key is None or rec.key.decode() != self.agent_id:
                continue
            event = orjson.loads(rec.value)
            seq = int(event["data"].get("seq", 0))
            if seq <= self.seq:
                continue  # already in the snapshot (or seen)
            self.seq = seq
            yield event
