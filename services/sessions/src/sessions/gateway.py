"""The agent gateway: authenticated HTTP + WebSocket access to one agent's workspace.

- Tokens: `shared.auth` (one configuration for every service: HS256 with SWITCHBOARD_AUTH_SECRET,
  or an OIDC provider's tokens). `sub` is the agent id; `roles` may hold "supervisor", who may
  read any agent but act only as themselves. A refused socket gets HTTP 401/403 at the handshake.
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
- Bounds (`GatewayLimits`): the hub's resume buffer per agent and overall, agents without sockets
  forgotten after a while; each socket's queue bounded, a client too slow for it closed with 1013
  "too slow; reconnect" (it resumes from its last seq); on stop every socket closes with 1012
  "service restarting; reconnect".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from pydantic_settings import BaseSettings, SettingsConfigDict
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
from shared.http import HttpError, principal_of, read_json, reader_of
from shared.kafka_security import aiokafka_options
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.gateway")

T = TypeVar("T")
MAX_FRAME = 64 * 1024
# close codes: the service stops (reconnect, to another replica), the client reads too slowly
RESTARTING, RESTART_REASON = 1012, "service restarting; reconnect"
TOO_SLOW, TOO_SLOW_REASON = 1013, "too slow; reconnect"
CLOSE_TIMEOUT_S = 5.0
READS = ("conversation.history", "kb.search", "kb.article", "dashboard.get")
# Requests the gateway forwards to assist for the agent (answered on the socket, nothing published).
ASSIST_WRITES = ("suggestion.feedback", "case_summary.save")
VERDICTS = ("accepted", "edited", "rejected")
SNIPPET = 200


class GatewayLimits(BaseSettings):
    """The gateway's bounds on memory per agent, per socket and per request (SESSIONS_ prefix)."""

    model_config = SettingsConfigDict(env_prefix="SESSIONS_", extra="ignore")

    # events kept for reconnects over all agents (each agent keeps at most SESSIONS_RESUME_BUFFER)
    resume_buffer_total: int = 100_000
    # an agent without an open socket keeps its buffer this long after its last event or socket
    resume_idle_s: float = 600.0
    # events waiting to be written to one socket; past this the client is too slow: closed with 1013
    socket_queue: int = 1000
    # a request body (the profiles API, the customer demo) larger than this is refused (413)
    max_body_bytes: int = 64 * 1024


class Outgoing(Generic[T]):
    """A socket's bounded queue of frames. A client that falls `size` frames behind is too slow:
    `overflowed` is set, and its connection closes it with 1013 so the client resumes from what
    it has (the hub's buffer or a fresh snapshot) instead of the server holding an unbounded
    backlog."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[T] = asyncio.Queue(maxsize=max(size, 1))
        self.overflowed = asyncio.Event()

    def put(self, item: T) -> bool:
        if self.overflowed.is_set():
            return False
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed.set()
            return False
        return True

    async def get(self) -> T:
        return await self.queue.get()


class Sockets:
    """The app's open WebSockets, closed with 1012 when the service stops so clients reconnect
    (to another replica) at once instead of waiting for a timeout."""

    def __init__(self) -> None:
        self.open: set[WebSocket] = set()
        self.stopping = False

    @contextlib.asynccontextmanager
    async def held(self, ws: WebSocket) -> AsyncIterator[bool]:
        """Registers an accepted socket; yields False (after closing it) when the service is stopping."""
        if self.stopping:
            await close(ws, RESTARTING, RESTART_REASON)
            yield False
            return
        self.open.add(ws)
        try:
            yield True
        finally:
            self.open.discard(ws)

    def gone(self, failure: BaseException) -> bool:
        """The failure only says the socket is gone: the client left, or we closed it (stopping)."""
        return isinstance(failure, WebSocketDisconnect) or (isinstance(failure, RuntimeError) and self.stopping)

    async def close_all(self) -> None:
        self.stopping = True
        sockets, self.open = list(self.open), set()
        if sockets:
            log.info("websockets_closing", count=len(sockets), code=RESTARTING)
        await asyncio.gather(*(close(ws, RESTARTING, RESTART_REASON) for ws in sockets))


async def refuse(ws: WebSocket, status: int, reason: str) -> None:
    """Refuse a WebSocket before accepting it: an HTTP `status` (401, 403) with `{"error": reason}`
    where the server can answer the handshake so, else a close with 4000 + status and the reason."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": reason}, status_code=status))
    else:
        await ws.close(code=4000 + status, reason=reason[:120])


async def close(ws: WebSocket, code: int, reason: str) -> None:
    """Close `ws` with `code` and `reason`, bounded in time (a client that does not read cannot
    hold the close handshake), ignoring a socket already gone."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=code, reason=reason[:120]), CLOSE_TIMEOUT_S)


class Hub:
    """Fans each agent's sessions.v1 events out to its sockets, keeping the last `buffer` events per
    agent for reconnects. It reads no topic itself: the gateway's one Kafka tail (sessions.tail)
    hands it the records of sessions.v1 (`on_record`); it keeps a consumer only for positions.

    Memory is bounded: at most `buffer` events per agent and `total` over all agents (the least
    recently active agents without a socket go first), and an agent without a socket is forgotten
    `idle_s` after its last event or socket (`sweep`). A resume older than what is kept gets the
    snapshot, as for any resume point too old."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        buffer: int = 1000,
        *,
        total: int = 100_000,
        idle_s: float = 600.0,
        socket_queue: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.buffer = max(buffer, 1)
        self.total = max(total, self.buffer)
        self.idle_s = idle_s
        self.socket_queue = socket_queue
        self.clock = clock
        # least recently active first; `touched` is each agent's last event or socket change
        self.rings: OrderedDict[str, deque[tuple[int, bytes]]] = OrderedDict()
        self.touched: dict[str, float] = {}
        self.size = 0
        self.subscribers: dict[str, set[Outgoing[tuple[int, bytes]]]] = {}
        self.slow_disconnects = 0
        self._offsets: AIOKafkaConsumer | None = None
        self._partitions: list[int] = []
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **aiokafka_options()
        )
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
        ring = self.rings.get(key)
        if ring is None:
            ring = self.rings[key] = deque(maxlen=self.buffer)
        elif ring and seq <= ring[-1][0]:
            return  # a republished event (relay retry): already seen
        if len(ring) < self.buffer:
            self.size += 1
        ring.append((seq, value))
        self._touch(key)
        for out in self.subscribers.get(key, ()):
            out.put((seq, value))  # a full queue marks its socket too slow; the connection closes it
        if self.size > self.total:
            self._shrink()

    def _touch(self, agent: str) -> None:
        self.touched[agent] = self.clock()
        if agent in self.rings:
            self.rings.move_to_end(agent)

    def _forget(self, agent: str) -> None:
        ring = self.rings.pop(agent, None)
        self.touched.pop(agent, None)
        if ring is not None:
            self.size -= len(ring)

    def _shrink(self) -> None:
        """Over `total`: drop the least recently active agents without a socket, then (all have
        sockets) the oldest events of the least recently active ones."""
        for agent in [a for a in self.rings if not self.subscribers.get(a)]:
            if self.size <= self.total:
                return
            self._forget(agent)
        for ring in self.rings.values():
            while ring and self.size > self.total:
                ring.popleft()
                self.size -= 1
            if self.size <= self.total:
                return

    async def sweep(self) -> int:
        """Forget the agents without a socket and idle for `idle_s` (a `Runtime.periodic` step)."""
        cutoff = self.clock() - self.idle_s
        for agent in [a for a, t in self.touched.items() if t < cutoff and not self.subscribers.get(a)]:
            self._forget(agent)
        return 0

    def subscribe(self, agent: str) -> Outgoing[tuple[int, bytes]]:
        out: Outgoing[tuple[int, bytes]] = Outgoing(self.socket_queue)
        self.subscribers.setdefault(agent, set()).add(out)
        self._touch(agent)
        return out

    def unsubscribe(self, agent: str, out: Outgoing[tuple[int, bytes]]) -> None:
        held = self.subscribers.get(agent)
        if held is not None:
            held.discard(out)
            if not held:
                del self.subscribers[agent]
        if agent in self.rings:
            self._touch(agent)  # the idle time counts from the last socket's end
        else:
            self.touched.pop(agent, None)

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
        runtime: Runtime[SessionsStore, service.SessionsBatch],
        auth: Auth,
        hub: Hub,
        heartbeat_interval_s: float,
        services: Services,
        sockets: Sockets | None = None,
    ) -> None:
        self.runtime = runtime
        self.auth = auth
        self.hub = hub
        self.heartbeat_interval_s = heartbeat_interval_s
        self.services = services
        self.sockets = sockets or Sockets()
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
        reader_of(request, self.auth, agent_id, "workspace")
        snapshot = await self.snapshot(agent_id, token_of(request.headers, request.query_params))
        return JSONResponse(orjson.loads(orjson.dumps(snapshot, default=str)))

    async def websocket(self, ws: WebSocket) -> None:
        agent_id = ws.path_params["agent_id"]
        token = token_of(ws.headers, ws.query_params)
        try:
            principal = self.auth.verify(token)
        except Unauthorised as exc:
            await refuse(ws, 401, str(exc))
            return
        if not principal.can_read(agent_id):
            await refuse(ws, 403, f"reading {agent_id}'s stream needs {agent_id}'s own token or the supervisor role")
            return
        await ws.accept()
        async with self.sockets.held(ws) as open_:
            if open_:
                await self._serve(ws, principal, token, agent_id)

    async def _serve(self, ws: WebSocket, principal: Principal, token: str | None, agent_id: str) -> None:
        device = ws.query_params.get("device") or "web"
        out = self.hub.subscribe(agent_id)
        tasks: list[asyncio.Task[Any]] = []
        try:
            last = await self._start_stream(ws, agent_id, token, ws.query_params.get("after_seq"))
            forward = asyncio.create_task(self._forward(ws, out, last))
            too_slow = asyncio.create_task(out.overflowed.wait())
            tasks += [forward, too_slow, asyncio.create_task(self._receive(ws, principal, token, agent_id, device))]
            if principal.can_act(agent_id):
                tasks.append(asyncio.create_task(self._heartbeats(agent_id, device)))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if too_slow in done:
                # the writer may be stuck on a client that does not read: stop it, then say why
                forward.cancel()
                self.hub.slow_disconnects += 1
                log.info("websocket_too_slow", agent_id=agent_id, queued=out.queue.qsize())
                await close(ws, TOO_SLOW, TOO_SLOW_REASON)
            for t in done:
                failure = None if t.cancelled() else t.exception()
                if failure is not None and not self.sockets.gone(failure):
                    log.warning("websocket_error", agent_id=agent_id, error=repr(failure))
        except (WebSocketDisconnect, RuntimeError) as exc:
            if not self.sockets.gone(exc):
                raise
        finally:
            for t in tasks:
                t.cancel()
            self.hub.unsubscribe(agent_id, out)

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

    async def _forward(self, ws: WebSocket, out: Outgoing[tuple[int, bytes]], last: int) -> None:
        while True:
            seq, value = await out.get()
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

    async def http_command(self, request: Request) -> JSONResponse:
        """`POST /agents/{agent_id}/commands`: one command for the agent, by the agent itself or, on
        the agent's behalf, by a supervisor (the CLI's `accept`, `reject`, `close`, `transfer`).
        Published like the WebSocket's commands; the outcome arrives on the agent's stream
        (`command.rejected` when it cannot be carried out). 202 with the command id."""
        agent_id = request.path_params["agent_id"]
        principal = principal_of(request, self.auth)
        if principal.subject != agent_id and not principal.is_supervisor:
            raise HttpError(
                403,
                f"{principal.subject} may not act for {agent_id}: an agent acts on its own workspace only; "
                "acting on another agent's behalf needs the supervisor role",
            )
        msg = await read_json(request, max_bytes=MAX_FRAME)
        if (
            not isinstance(msg, dict)
            or not isinstance(msg.get("type"), str)
            or not isinstance(msg.get("data", {}), dict)
        ):
            raise HttpError(400, 'a command is a JSON object: {"type": ..., "id": optional, "data": {...}}')
        kind = msg["type"]
        data = {**(msg.get("data") or {})}
        if kind == c.TransferWork.TYPE:
            if not principal.is_supervisor and data.get("conversation_id") is None:
                raise HttpError(400, "work.transfer needs a conversation_id")
            data["agent_id"] = agent_id
            topic = topics.ROUTING_COMMANDS
            key = str(data.get("conversation_id") or agent_id)
        else:
            data.setdefault("agent_id", agent_id)
            if data["agent_id"] != agent_id:
                raise HttpError(400, f"the command's agent_id {data['agent_id']!r} is not {agent_id!r} of the path")
            topic = topics.PRESENCE_COMMANDS if kind == c.SetPresence.TYPE else topics.SESSIONS_COMMANDS
            key = agent_id
        on_behalf = principal.subject != agent_id
        event = {
            "specversion": "1.0",
            "id": str(msg.get("id") or uuid.uuid4()),
            "source": f"/gateway/supervisor/{principal.subject}" if on_behalf else f"/gateway/{agent_id}/http",
            "type": kind,
            "subject": agent_id,
            "datacontenttype": "application/json",
            "data": data,
        }
        try:
            envelope, _ = c.parse(orjson.dumps(event), topic)
        except c.InvalidEvent as exc:
            raise HttpError(400, str(exc)) from exc
        if envelope.type == c.SupervisorAct.TYPE:
            raise HttpError(400, "supervisor.act comes from the supervisor stream (/supervisor/stream)")
        await self.runtime.broker.publish(
            envelope.to_bytes(),
            topic=self.runtime.names(topic),
            key=key.encode(),
            headers={"content-type": "application/cloudevents+json", "ce_type": envelope.type},
        )
        log.info("command_accepted", by=principal.subject, agent_id=agent_id, type=envelope.type, id=envelope.id)
        return JSONResponse(
            {"accepted": envelope.type, "command_id": envelope.id, "agent_id": agent_id, "on_behalf_of": on_behalf},
            status_code=202,
        )

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


def _event_frame(value: bytes) -> str:
    return '{"kind":"event","event":' + value.decode() + "}"
