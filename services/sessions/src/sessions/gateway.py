"""The agent gateway: authenticated HTTP + WebSocket access to one agent's workspace.

- Tokens: HS256 signed with SESSIONS_GATEWAY_SECRET (embedded default), or checked against an
  OIDC provider's JWKS (SESSIONS_OIDC_JWKS_URL). `sub` is the agent id; `roles` may hold
  "supervisor", who may read any agent but act only as themselves.
- Snapshot: the workspace from one database read, its event sequence `seq`, and the Kafka
  position of the agent's partition taken *before* that read: a client reading sessions.v1 from
  there and skipping events with seq <= snapshot seq misses nothing and sees nothing twice.
- WebSocket: the snapshot (or, on resume, the events after the client's last seq), then the live
  stream of that agent's events only, in order; commands from the client are checked against the
  token and published to sessions.commands.v1; heartbeats go to presence for the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from shared import contracts as c
from shared import topics
from shared.auth import Auth, Principal, Unauthorised, token_of
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.gateway")


class Hub:
    """Tails sessions.v1 once for this gateway and fans each agent's events out to its sockets,
    keeping the last `buffer` events per agent for reconnects."""

    def __init__(self, bootstrap: str, topic: str, buffer: int = 1000) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.buffer = buffer
        self.rings: dict[str, deque[tuple[int, bytes]]] = {}
        self.subscribers: dict[str, set[asyncio.Queue[tuple[int, bytes]]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._partitions: list[int] = []
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await self._consumer.start()
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self._offsets.start()
        parts = await self._partitions_of(self.topic)
        self._partitions = parts
        tps = [TopicPartition(self.topic, p) for p in parts]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve positions now: everything published from here on reaches the hub
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="gateway-hub")

    async def _partitions_of(self, topic: str) -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        parts = sorted(p["partition"] for d in described if d["topic"] == topic for p in d["partitions"])
        if not parts:
            raise RuntimeError(f"topic {topic} has no partitions: create the topics first (make up does)")
        return parts

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for consumer in (self._consumer, self._offsets):
            if consumer is not None:
                await consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub_fetch_error", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for records in batch.values():
                for rec in records:
                    self._dispatch(rec.key, rec.value)

    def _dispatch(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        agent = key.decode(errors="replace")
        try:
            seq = int(orjson.loads(value)["data"]["seq"])
        except (ValueError, KeyError, TypeError):
            return  # not a sequenced event (e.g. written by hand): clients cannot place it
        ring = self.rings.setdefault(agent, deque(maxlen=self.buffer))
        if ring and seq <= ring[-1][0]:
            return  # a republished event (relay retry): already seen
        ring.append((seq, value))
        for queue in self.subscribers.get(agent, ()):
            queue.put_nowait((seq, value))

    def subscribe(self, agent: str) -> asyncio.Queue[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.subscribers.setdefault(agent, set()).add(queue)
        return queue

    def unsubscribe(self, agent: str, queue: asyncio.Queue[tuple[int, bytes]]) -> None:
        self.subscribers.get(agent, set()).discard(queue)

    def replay(self, agent: str, after_seq: int, committed_seq: int) -> list[tuple[int, bytes]] | None:
        """Events after `after_seq`, or None when the buffer no longer reaches back that far."""
        ring = self.rings.get(agent)
        if ring and ring[0][0] <= after_seq + 1:
            return [(s, v) for s, v in ring if s > after_seq]
        if committed_seq == after_seq:
            return []  # nothing happened since; what comes next arrives live
        return None

    async def position(self, agent: str) -> dict[str, Any]:
        """The agent's partition and its end offset now (taken before a snapshot read)."""
        assert self._offsets is not None
        partition = self._partitioner(agent.encode(), self._partitions, self._partitions)
        tp = TopicPartition(self.topic, partition)
        end = (await self._offsets.end_offsets([tp]))[tp]
        return {"topic": self.topic, "partition": partition, "offset": end}


class Gateway:
    def __init__(
        self,
        runtime: Runtime,
        auth: Auth,
        hub: Hub,
        heartbeat_interval_s: float,
        workspace: Callable[[Any, str], Awaitable[dict[str, Any]]],
    ) -> None:
        self.runtime = runtime
        self.auth = auth
        self.hub = hub
        self.heartbeat_interval_s = heartbeat_interval_s
        self.workspace = workspace
        self.commands = runtime.names(topics.SESSIONS_COMMANDS)

    async def snapshot(self, agent_id: str) -> dict[str, Any]:
        position = await self.hub.position(agent_id)  # before the read: see the module docstring
        async with self.runtime.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            body = await self.workspace(conn, agent_id)
        body["kafka"] = position
        return body

    async def http_workspace(self, request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        try:
            principal = self.auth.verify(token_of(request.headers, request.query_params))
        except Unauthorised as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        if not principal.can_read(agent_id):
            return JSONResponse({"error": f"{principal.subject} may not read {agent_id}'s workspace"}, status_code=403)
        return JSONResponse(orjson.loads(orjson.dumps(await self.snapshot(agent_id), default=str)))

    async def websocket(self, ws: WebSocket) -> None:
        agent_id = ws.path_params["agent_id"]
        try:
            principal = self.auth.verify(token_of(ws.headers, ws.query_params))
        except Unauthorised as exc:
            await ws.close(code=4401, reason=str(exc)[:120])
            return
        if not principal.can_read(agent_id):
            await ws.close(code=4403, reason=f"{principal.subject} may not read {agent_id}")
            return
        await ws.accept()
        device = ws.query_params.get("device") or "web"
        queue = self.hub.subscribe(agent_id)
        tasks: list[asyncio.Task[Any]] = []
        try:
            last = await self._start_stream(ws, agent_id, ws.query_params.get("after_seq"))
            tasks.append(asyncio.create_task(self._forward(ws, queue, last)))
            tasks.append(asyncio.create_task(self._receive(ws, principal, agent_id, device)))
            if principal.can_act(agent_id):
                tasks.append(asyncio.create_task(self._heartbeats(agent_id, device)))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                failure = t.exception()
                if failure is not None and not isinstance(failure, WebSocketDisconnect):
                    log.warning("websocket_error", agent_id=agent_id, error=repr(failure))
        except WebSocketDisconnect:
            pass
        finally:
            for t in tasks:
                t.cancel()
            self.hub.unsubscribe(agent_id, queue)

    async def _start_stream(self, ws: WebSocket, agent_id: str, after: str | None) -> int:
        if after is not None and after.isdigit():
            async with self.runtime.pool.acquire() as conn:
                committed = await conn.fetchval("SELECT seq FROM agent_seq WHERE agent_id = $1", agent_id) or 0
            replay = self.hub.replay(agent_id, int(after), committed)
            if replay is not None:
                await ws.send_text(orjson.dumps({"kind": "resumed", "after_seq": int(after)}).decode())
                last = int(after)
                for seq, value in replay:
                    await ws.send_text(_event_frame(value))
                    last = seq
                return last
        snap = await self.snapshot(agent_id)
        reason = "resume point too old" if after is not None else None
        await ws.send_text(
            orjson.dumps({"kind": "snapshot", "reason": reason, "workspace": snap}, default=str).decode()
        )
        return int(snap["seq"])

    async def _forward(self, ws: WebSocket, queue: asyncio.Queue[tuple[int, bytes]], last: int) -> None:
        while True:
            seq, value = await queue.get()
            if seq <= last:
                continue  # in the snapshot or the replay already
            await ws.send_text(_event_frame(value))
            last = seq

    async def _receive(self, ws: WebSocket, principal: Principal, agent_id: str, device: str) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw: str | bytes = message.get("text") or message.get("bytes") or b""
            reply = await self._command(raw, principal, agent_id, device)
            await ws.send_text(orjson.dumps(reply).decode())

    async def _command(self, text: str | bytes, principal: Principal, agent_id: str, device: str) -> dict[str, Any]:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {"kind": "error", "reason": 'commands are JSON objects: {"type": ..., "data": {...}}'}
        if not isinstance(msg, dict) or not isinstance(msg.get("data", {}), dict):
            return {"kind": "error", "reason": 'commands are JSON objects: {"type": ..., "data": {...}}'}
        data = {**msg.get("data", {})}
        data.setdefault("agent_id", agent_id)
        if data["agent_id"] != agent_id or not principal.can_act(agent_id):
            return {
                "kind": "error",
                "reason": f"{principal.subject} may not act for {data['agent_id']}: "
                "an agent acts on its own workspace only",
            }
        event = {
            "specversion": "1.0",
            "id": str(msg.get("id") or uuid.uuid4()),
            "source": f"/gateway/{agent_id}/{device}",
            "type": msg.get("type"),
            "subject": agent_id,
            "datacontenttype": "application/json",
            "data": data,
        }
        try:
            envelope, _ = c.parse(orjson.dumps(event), topics.SESSIONS_COMMANDS)
        except c.InvalidEvent as exc:
            return {"kind": "error", "reason": str(exc)}
        await self.runtime.broker.publish(
            envelope.to_bytes(),
            topic=self.commands,
            key=agent_id.encode(),
            headers={"content-type": "application/cloudevents+json", "ce_type": envelope.type},
        )
        return {"kind": "accepted", "command_id": envelope.id, "type": envelope.type}

    async def _heartbeats(self, agent_id: str, device: str) -> None:
        topic = self.runtime.names(topics.PRESENCE_COMMANDS)
        while True:
            ev = c.event(c.AgentHeartbeat(agent_id=agent_id, device_id=device), source=f"/gateway/{agent_id}/{device}")
            with contextlib.suppress(Exception):
                await self.runtime.broker.publish(
                    ev.to_bytes(), topic=topic, key=agent_id.encode(), headers={"ce_type": ev.type}
                )
            await asyncio.sleep(self.heartbeat_interval_s)


def _event_frame(value: bytes) -> str:
    return '{"kind":"event","event":' + value.decode() + "}"
