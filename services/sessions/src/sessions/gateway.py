"""The agent gateway: authenticated HTTP + WebSocket access to one agent's workspace.

- Tokens: HS256 signed with SESSIONS_GATEWAY_SECRET (embedded default), or checked against an
  OIDC provider's JWKS (SESSIONS_OIDC_JWKS_URL). `sub` is the agent id; `roles` may hold
  "supervisor", who may read any agent but act only as themselves.
- Snapshot: the workspace from one database read, its event sequence `seq`, and the Kafka
  position of the agent's partition taken *before* that read: a client reading sessions.v1 from
  there and skipping events with seq <= snapshot seq misses nothing and sees nothing twice.
- WebSocket: the snapshot (or, on resume, the events after the client's last seq), then the live
  stream of that agent's events only, in order; commands from the client are checked against the
  token and published to sessions.commands.v1 (`presence.set` to presence.commands.v1); read
  requests (`conversation.history`, `kb.search`, `kb.article`, `dashboard.get`) are answered on
  the socket; the agent's verdicts for assist (`suggestion.feedback`, `case_summary.save`) are
  sent to assist over HTTP with the agent's token and answered `accepted` or `error`; heartbeats
  go to presence for the connection. Frames over 64 KB are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from typing import Any
from urllib.parse import quote

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from sessions import service
from sessions.services_http import ServiceError, Services
from sessions.store import SessionsStore
from sessions.tail import partitions_of
from shared import contracts as c
from shared import topics
from shared.auth import Auth, Principal, Unauthorised, token_of
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.gateway")

MAX_FRAME = 64 * 1024
READS = ("conversation.history", "kb.search", "kb.article", "dashboard.get")
# Requests the gateway forwards to assist for the agent (answered on the socket, nothing published).
ASSIST_WRITES = ("suggestion.feedback", "case_summary.save")
VERDICTS = ("accepted", "edited", "rejected")
SNIPPET = 200


class Hub:
    """Fans each agent's sessions.v1 events out to its sockets, keeping the last `buffer` events per
    agent for reconnects. It reads no topic itself: the gateway's one Kafka tail (sessions.tail)
    hands it the records of sessions.v1 (`on_record`); it keeps a consumer only for positions."""

    def __init__(self, bootstrap: str, topic: str, buffer: int = 1000) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.buffer = buffer
        self.rings: dict[str, deque[tuple[int, bytes]]] = {}
        self.subscribers: dict[str, set[asyncio.Queue[tuple[int, bytes]]]] = {}
        self._offsets: AIOKafkaConsumer | None = None
        self._partitions: list[int] = []
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self._offsets.start()
        self._partitions = await partitions_of(self.bootstrap, self.topic)

    async def stop(self) -> None:
        if self._offsets is not None:
            await self._offsets.stop()

    def on_record(self, topic: str, key: str | None, value: bytes) -> None:
        """A record of the tail (DESIGN.md topic names); only sessions.v1's are the hub's."""
        if topic != topics.SESSIONS or key is None:
            return
        try:
            seq = int(orjson.loads(value)["data"]["seq"])
        except (ValueError, KeyError, TypeError):
            return  # not a sequenced event (e.g. written by hand): clients cannot place it
        ring = self.rings.setdefault(key, deque(maxlen=self.buffer))
        if ring and seq <= ring[-1][0]:
            return  # a republished event (relay retry): already seen
        ring.append((seq, value))
        for queue in self.subscribers.get(key, ()):
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
        runtime: Runtime[SessionsStore, None],
        auth: Auth,
        hub: Hub,
        heartbeat_interval_s: float,
        services: Services,
    ) -> None:
        self.runtime = runtime
        self.auth = auth
        self.hub = hub
        self.heartbeat_interval_s = heartbeat_interval_s
        self.services = services
        self.commands = runtime.names(topics.SESSIONS_COMMANDS)

    async def snapshot(self, agent_id: str, token: str | None) -> dict[str, Any]:
        # routing's queues (None: routing cannot say, so no filter) and presence's statuses are
        # read first: slow or down services delay the snapshot, never its consistency
        queues, statuses = await asyncio.gather(
            self.services.agent_queues(agent_id, token), self.services.statuses(token)
        )
        position = await self.hub.position(agent_id)  # before the read: see the module docstring
        async with self.runtime.reading() as store:
            body = await service.workspace(store, agent_id, queues=queues)
        body["statuses"] = statuses
        body["kafka"] = position
        return body

    async def http_workspace(self, request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        try:
            principal = self.auth.verify(token_of(request.headers, request.query_params))
        except Unauthorised as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        if not _may_read(principal, agent_id):
            return JSONResponse({"error": f"{principal.subject} may not read {agent_id}'s workspace"}, status_code=403)
        snapshot = await self.snapshot(agent_id, token_of(request.headers, request.query_params))
        return JSONResponse(orjson.loads(orjson.dumps(snapshot, default=str)))

    async def websocket(self, ws: WebSocket) -> None:
        agent_id = ws.path_params["agent_id"]
        token = token_of(ws.headers, ws.query_params)
        try:
            principal = self.auth.verify(token)
        except Unauthorised as exc:
            await ws.close(code=4401, reason=str(exc)[:120])
            return
        if not _may_read(principal, agent_id):
            await ws.close(code=4403, reason=f"{principal.subject} may not read {agent_id}")
            return
        await ws.accept()
        device = ws.query_params.get("device") or "web"
        queue = self.hub.subscribe(agent_id)
        tasks: list[asyncio.Task[Any]] = []
        try:
            last = await self._start_stream(ws, agent_id, token, ws.query_params.get("after_seq"))
            tasks.append(asyncio.create_task(self._forward(ws, queue, last)))
            tasks.append(asyncio.create_task(self._receive(ws, principal, token, agent_id, device)))
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

    async def _start_stream(self, ws: WebSocket, agent_id: str, token: str | None, after: str | None) -> int:
        if after is not None and after.isdigit():
            async with self.runtime.reading() as store:
                committed = await store.get_seq(agent_id)
            replay = self.hub.replay(agent_id, int(after), committed)
            if replay is not None:
                await ws.send_text(orjson.dumps({"kind": "resumed", "after_seq": int(after)}).decode())
                last = int(after)
                for seq, value in replay:
                    await ws.send_text(_event_frame(value))
                    last = seq
                return last
        snap = await self.snapshot(agent_id, token)
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

    async def _receive(
        self, ws: WebSocket, principal: Principal, token: str | None, agent_id: str, device: str
    ) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw: str | bytes = message.get("text") or message.get("bytes") or b""
            if len(raw) > MAX_FRAME:
                reply = {"kind": "error", "reason": f"frame of {len(raw)} bytes refused: at most {MAX_FRAME}"}
            else:
                reply = await self._command(raw, principal, token, agent_id, device)
            await ws.send_text(orjson.dumps(reply, default=str).decode())

    async def _command(
        self, text: str | bytes, principal: Principal, token: str | None, agent_id: str, device: str
    ) -> dict[str, Any]:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {"kind": "error", "reason": 'commands are JSON objects: {"type": ..., "data": {...}}'}
        if not isinstance(msg, dict) or not isinstance(msg.get("data", {}), dict):
            return {"kind": "error", "reason": 'commands are JSON objects: {"type": ..., "data": {...}}'}
        if msg.get("type") in READS:
            try:
                return await self._read(str(msg["type"]), msg.get("data") or {}, principal, token, agent_id)
            except ServiceError as exc:
                return {"kind": "error", "type": msg["type"], "reason": str(exc)}
        if msg.get("type") in ASSIST_WRITES:
            command_id = str(msg.get("id") or uuid.uuid4())
            if not principal.can_act(agent_id):
                return {
                    "kind": "error",
                    "command_id": command_id,
                    "type": msg["type"],
                    "reason": f"{principal.subject} may not act for {agent_id}: "
                    "an agent acts on its own workspace only",
                }
            return await self._assist_write(str(msg["type"]), command_id, msg.get("data") or {}, token, agent_id)
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
        # presence.set goes to presence, for this agent only; everything else is a sessions command
        topic = topics.PRESENCE_COMMANDS if msg.get("type") == c.SetPresence.TYPE else topics.SESSIONS_COMMANDS
        try:
            envelope, _ = c.parse(orjson.dumps(event), topic)
        except c.InvalidEvent as exc:
            return {"kind": "error", "reason": str(exc)}
        if envelope.type == c.SupervisorAct.TYPE:
            return {"kind": "error", "reason": "supervisor.act comes from the supervisor stream, not an agent's"}
        await self.runtime.broker.publish(
            envelope.to_bytes(),
            topic=self.runtime.names(topic),
            key=agent_id.encode(),
            headers={"content-type": "application/cloudevents+json", "ce_type": envelope.type},
        )
        return {"kind": "accepted", "command_id": envelope.id, "type": envelope.type}

    async def _read(
        self, kind: str, data: dict[str, Any], principal: Principal, token: str | None, agent_id: str
    ) -> dict[str, Any]:
        """A read request: answered on the socket, nothing published."""
        if kind == "conversation.history":
            conversation_id = str(data.get("conversation_id") or "")
            if not conversation_id:
                return {"kind": "error", "type": kind, "reason": "conversation.history needs a conversation_id"}
            before = data.get("before_message_id")
            async with self.runtime.reading() as store:
                try:
                    page = await service.history(
                        store, agent_id, conversation_id, str(before) if before else None, limit=50
                    )
                except PermissionError as exc:
                    return {"kind": "error", "type": kind, "reason": str(exc)}
            return {
                "kind": "history",
                "conversation_id": conversation_id,
                "messages": page["messages"],
                "more": bool(page["more"]),
            }
        if kind == "kb.search":
            query = str(data.get("query") or "").strip()
            if not query:
                return {"kind": "error", "type": kind, "reason": "kb.search needs a query"}
            if len(query) > 500:
                return {"kind": "error", "type": kind, "reason": f"a query of {len(query)} characters: at most 500"}
            found = await self.services.get("assist", "/kb/search", token, {"q": query})
            return {"kind": "kb_results", "query": query, "results": await self._with_snippets(found, token)}
        if kind == "kb.article":
            article_id = str(data.get("id") or "")
            if not article_id or "/" in article_id:
                return {"kind": "error", "type": kind, "reason": "kb.article needs an article id"}
            article = await self.services.get("assist", f"/kb/articles/{article_id}", token)
            return {
                "kind": "kb_article",
                "article": {k: article.get(k) for k in ("id", "title", "body", "tags")},
            }
        queues = await self.services.agent_queues(agent_id, token)
        async with self.runtime.reading() as store:
            dashboard = await service.dashboard(store, agent_id, queues)
        return {"kind": "dashboard", "dashboard": dashboard}

    async def _assist_write(
        self, kind: str, command_id: str, data: dict[str, Any], token: str | None, agent_id: str
    ) -> dict[str, Any]:
        """The agent's verdict on a suggested reply, or its reviewed case summary, saved by assist."""

        def refused(reason: str) -> dict[str, Any]:
            return {"kind": "error", "command_id": command_id, "type": kind, "reason": reason}

        if kind == "suggestion.feedback":
            suggestion_id = str(data.get("suggestion_id") or "")
            verdict = data.get("verdict") or "rejected"
            if not suggestion_id:
                return refused("suggestion.feedback needs a suggestion_id")
            if verdict not in VERDICTS:
                return refused(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
            body: dict[str, Any] = {"verdict": verdict}
            if data.get("text") is not None:
                body["text"] = str(data["text"])
            path = f"/suggestions/{quote(suggestion_id, safe='')}/feedback"
            try:
                await self.services.call("POST", "assist", path, token, body=body)
            except ServiceError as exc:
                if exc.status == 409:
                    return refused(f"this suggested reply already has a verdict ({exc.reason})")
                if exc.status == 404:
                    return refused(f"assist does not know this suggested reply ({exc.reason})")
                return refused(str(exc))
            return {
                "kind": "accepted",
                "command_id": command_id,
                "type": kind,
                "suggestion_id": suggestion_id,
                "verdict": verdict,
            }
        conversation_id = str(data.get("conversation_id") or "")
        if not conversation_id:
            return refused("case_summary.save needs a conversation_id")
        async with self.runtime.reading() as store:
            held = await store.held_conversation(agent_id, conversation_id)
        if not held:
            return refused(f"{agent_id} has not held conversation {conversation_id!r}: its case summary is not theirs")
        summary = {k: v for k, v in data.items() if k not in ("conversation_id", "agent_id")}
        path = f"/conversations/{quote(conversation_id, safe='')}/case-summary"
        try:
            saved = await self.services.call("PUT", "assist", path, token, body=summary)
        except ServiceError as exc:
            return refused(str(exc))
        return {
            "kind": "accepted",
            "command_id": command_id,
            "type": kind,
            "conversation_id": conversation_id,
            "case_summary": {k: saved.get(k) for k in ("status", "saved", "saved_by", "saved_at", "draft")},
        }

    async def _with_snippets(self, found: dict[str, Any], token: str | None) -> list[dict[str, Any]]:
        """assist's hits as {id, title, score, snippet}; the snippet is the article's opening."""
        hits = list(found.get("articles") or found.get("results") or [])

        async def snippet(hit: dict[str, Any]) -> str:
            if hit.get("snippet"):
                return str(hit["snippet"])
            try:
                article = await self.services.get("assist", f"/kb/articles/{hit['id']}", token)
            except ServiceError:
                return ""
            body = " ".join(str(article.get("body") or "").split())
            return body if len(body) <= SNIPPET else body[: SNIPPET - 1].rsplit(" ", 1)[0] + "…"

        snippets = await asyncio.gather(*(snippet(h) for h in hits))
        return [
            {"id": h.get("id"), "title": h.get("title"), "score": h.get("score"), "snippet": s}
            for h, s in zip(hits, snippets, strict=True)
        ]

    async def _heartbeats(self, agent_id: str, device: str) -> None:
        topic = self.runtime.names(topics.PRESENCE_COMMANDS)
        while True:
            ev = c.event(c.AgentHeartbeat(agent_id=agent_id, device_id=device), source=f"/gateway/{agent_id}/{device}")
            with contextlib.suppress(Exception):
                await self.runtime.broker.publish(
                    ev.to_bytes(), topic=topic, key=agent_id.encode(), headers={"ce_type": ev.type}
                )
            await asyncio.sleep(self.heartbeat_interval_s)


def _may_read(principal: Principal, agent_id: str) -> bool:
    """An agent reads its own workspace, a supervisor any; a customer's token reads none."""
    return "customer" not in principal.roles and principal.can_read(agent_id)


def _event_frame(value: bytes) -> str:
    return '{"kind":"event","event":' + value.decode() + "}"
