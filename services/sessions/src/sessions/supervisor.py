"""The supervisor's view: one overview composed from routing, presence and sessions, a stream that
pushes it again when anything moves, and actions published as `supervisor.act` commands.

- `GET /supervisor/overview` (supervisor role): queues and work from routing, presence and the
  settable statuses from presence, open sessions and escalations from sessions' own store, each
  conversation flagged.
- `/supervisor/stream` (WebSocket): the overview on connect, then again (debounced, coalesced)
  after events on routing.v1, presence.v1, sessions.v1, assist.v1 and conversations.messages.v1;
  `supervisor.observe` sends a conversation's transcript then its messages live; whisper, barge,
  force_transfer, force_close and set_presence become a `supervisor.act` command keyed by the
  agent concerned."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from sessions import service
from sessions.gateway import TOO_SLOW, TOO_SLOW_REASON, Outgoing, Sockets, close, refuse
from sessions.services_http import ServiceError, Services
from sessions.store import SessionsStore
from sessions.tail import Tail, message_of
from shared import contracts as c
from shared import topics
from shared.auth import Auth, Principal, Unauthorised, token_of
from shared.http import supervisor_of
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.gateway")

MAX_FRAME = 64 * 1024
WATCHED = (topics.ROUTING, topics.PRESENCE, topics.SESSIONS, topics.ASSIST, topics.MESSAGES)
# Of those, the topics only supervisor streams need: the gateway's tail reads them while one is open.
ON_DEMAND = (topics.ROUTING, topics.PRESENCE, topics.ASSIST)
# The page's command -> the supervisor.act action and the fields it may carry.
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "supervisor.whisper": ("whisper", ("conversation_id", "text")),
    "supervisor.barge": ("barge", ("conversation_id", "text")),
    "supervisor.force_transfer": ("force_transfer", ("conversation_id", "to_queue", "to_agent", "reason")),
    "supervisor.force_close": ("force_close", ("conversation_id", "reason")),
    "supervisor.set_presence": ("set_presence", ("agent_id", "status", "reason")),
    "supervisor.leave": ("leave", ("conversation_id",)),
}


@dataclass(frozen=True)
class Limits:
    """When a conversation is flagged: waiting longer than `wait_factor` times its queue's
    service-level threshold or than `wait_s`; handled longer than `handle_s`."""

    wait_factor: float = 2.0
    wait_s: float = 120.0
    handle_s: float = 900.0


def flags_of(
    work: dict[str, Any], threshold_s: float | None, signals: list[str], limits: Limits = Limits()
) -> list[str]:
    """What a supervisor should look at in one conversation, in a fixed order."""
    flags: list[str] = []
    waited = float(work.get("waited_s") or 0)
    if work.get("state") in ("waiting", "offered") and (
        waited > limits.wait_s or (threshold_s is not None and waited > limits.wait_factor * threshold_s)
    ):
        flags.append("waited_too_long")
    if work.get("state") == "assigned" and float(work.get("handle_s") or 0) > limits.handle_s:
        flags.append("handled_too_long")
    if work.get("overflowed"):
        flags.append("overflowed")
    if int(work.get("transfers") or 0) > 1:
        flags.append("transferred_repeatedly")
    flags.extend(s for s in ("asks_for_manager", "upset") if s in signals)
    return flags


def compose(
    queues: list[dict[str, Any]],
    routing_agents: list[dict[str, Any]],
    work: list[dict[str, Any]],
    presence_agents: list[dict[str, Any]],
    open_sessions: dict[str, int],
    escalations: dict[str, list[str]],
    now: datetime,
    limits: Limits = Limits(),
) -> dict[str, Any]:
    """The overview from what each service said (pure: the reads are the caller's)."""
    presence = {str(p["agent_id"]): p for p in presence_agents}
    routed = {str(a["agent_id"]): a for a in routing_agents}
    agents = []
    for agent_id in sorted(set(presence) | set(routed)):
        p = presence.get(agent_id) or {}
        r = routed.get(agent_id) or {}
        agents.append(
            {
                "agent_id": agent_id,
                "presence": {
                    "status": p.get("status") or r.get("presence"),
                    "base": p.get("base") or r.get("presence"),
                    "since": p.get("since"),
                },
                "load": r.get("capacity") or {},
                "queues": r.get("queues") or [],
                "team": p.get("team"),
                "sessions": open_sessions.get(agent_id, 0),
            }
        )
    thresholds = {str(q["name"]): q.get("service_level_threshold_s") for q in queues}
    conversations = [
        {
            "conversation_id": w["conversation_id"],
            "channel": w.get("channel"),
            "queue": w.get("queue"),
            "agent_id": w.get("agent_id"),
            "customer": w.get("customer_name"),
            "subject": w.get("subject"),
            "priority": w.get("priority"),
            "waited_s": w.get("waited_s"),
            "handle_s": w.get("handle_s"),
            "state": w.get("state"),
            "transfers": w.get("transfers", 0),
            "flags": flags_of(
                w, thresholds.get(str(w.get("queue"))), escalations.get(w["conversation_id"], []), limits
            ),
        }
        for w in work
    ]
    return {"server_time": now.isoformat(), "queues": queues, "agents": agents, "conversations": conversations}


def _error(command_id: str, reason: str) -> dict[str, Any]:
    return {"kind": "error", "command_id": command_id, "reason": reason}


def _frame(body: dict[str, Any]) -> str:
    return orjson.dumps(body, default=str).decode()


class Supervisor:
    def __init__(
        self,
        runtime: Runtime[SessionsStore, service.SessionsBatch],
        auth: Auth,
        services: Services,
        tail: Tail,
        debounce_s: float = 0.3,
        limits: Limits = Limits(),
        sockets: Sockets | None = None,
        queue: int = 1000,
    ) -> None:
        self.runtime = runtime
        self.sockets = sockets or Sockets()
        self.queue = queue
        self.auth = auth
        self.services = services
        self.tail = tail
        self.debounce_s = debounce_s
        self.limits = limits
        self.commands = runtime.names(topics.SESSIONS_COMMANDS)

    async def overview(self, token: str | None) -> dict[str, Any]:
        """Composed from the other services' reads with the supervisor's token; raises ServiceError."""
        queues, agents, work, presence, statuses = await asyncio.gather(
            self.services.get("routing", "/queues", token),
            self.services.get("routing", "/agents", token),
            self.services.get("routing", "/work", token),
            self.services.get("presence", "/agents", token),
            self.services.statuses(token),
        )
        known = {str(a["agent_id"]) for a in agents.get("agents") or []} | {
            str(a["agent_id"]) for a in presence.get("agents") or []
        }
        async with self.runtime.reading() as store:
            escalations = await service.escalations(store)
            open_sessions = {a: await store.count_open_sessions(a) for a in sorted(known)}
        overview = compose(
            queues.get("queues") or [],
            agents.get("agents") or [],
            work.get("work") or [],
            presence.get("agents") or [],
            open_sessions,
            {cid: list(signals) for cid, signals in escalations.items()},
            datetime.now(UTC),
            self.limits,
        )
        overview["statuses"] = statuses  # what a supervisor may set an agent to: base and custom
        return overview

    async def http_overview(self, request: Request) -> JSONResponse:
        supervisor_of(request, self.auth, "the supervisor overview")
        try:
            body = await self.overview(token_of(request.headers, request.query_params))
        except ServiceError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(orjson.loads(_frame(body)))

    # --- the stream ---------------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        token = token_of(ws.headers, ws.query_params)
        try:
            principal = self.auth.verify(token)
        except Unauthorised as exc:
            await refuse(ws, 401, str(exc))
            return
        if not principal.is_supervisor or principal.is_customer:
            await refuse(ws, 403, "the supervisor stream needs the supervisor role")
            return
        await ws.accept()
        async with self.sockets.held(ws) as open_:
            if open_:
                await _Connection(self, ws, principal, token).run()


class _Connection:
    """One supervisor's stream: its overview, the conversation it observes, its commands. Frames
    leave through one queue, in the order they were made."""

    def __init__(self, sup: Supervisor, ws: WebSocket, principal: Principal, token: str | None) -> None:
        self.sup = sup
        self.ws = ws
        self.principal = principal
        self.token = token
        self.changed = asyncio.Event()
        self.outgoing: Outgoing[dict[str, Any]] = Outgoing(sup.queue)
        self.observing: str | None = None
        self.seen: set[str] = set()

    def _on_record(self, topic: str, key: str | None, value: bytes) -> None:
        if topic in WATCHED:
            self.changed.set()
        if topic == topics.MESSAGES and key is not None and key == self.observing:
            event = orjson.loads(value)
            if event.get("type") == "message.posted":
                message = message_of(event)
                if message["message_id"] not in self.seen:
                    self.seen.add(message["message_id"])
                    self.send({"kind": "message", "conversation_id": key, "message": message})

    def send(self, body: dict[str, Any]) -> None:
        self.outgoing.put(body)  # a full queue marks the client too slow: `run` closes it

    async def run(self) -> None:
        # the overview's change signals are read from here on, before the first overview is made
        async with self.sup.tail.watching():
            await self._run()

    async def _run(self) -> None:
        self.sup.tail.listeners.add(self._on_record)
        write = asyncio.create_task(self._write())
        too_slow = asyncio.create_task(self.outgoing.overflowed.wait())
        tasks = [write, too_slow, asyncio.create_task(self._push()), asyncio.create_task(self._receive())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if too_slow in done:
                write.cancel()  # the page reconnects and gets a fresh overview
                await close(self.ws, TOO_SLOW, TOO_SLOW_REASON)
            for t in done:
                failure = None if t.cancelled() else t.exception()
                if failure is not None and not self.sup.sockets.gone(failure):
                    log.warning("supervisor_stream_error", supervisor=self.principal.subject, error=repr(failure))
        finally:
            self.sup.tail.listeners.discard(self._on_record)
            for t in tasks:
                t.cancel()

    async def _write(self) -> None:
        while True:
            await self.ws.send_text(_frame(await self.outgoing.get()))

    async def _push(self) -> None:
        """The overview now, then after each burst of events (one recomputation per burst)."""
        while True:
            try:
                self.send({"kind": "overview", "overview": await self.sup.overview(self.token)})
            except ServiceError as exc:
                self.send({"kind": "error", "reason": str(exc)})
            await self.changed.wait()
            await asyncio.sleep(self.sup.debounce_s)
            self.changed.clear()

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw: str | bytes = message.get("text") or message.get("bytes") or b""
            if len(raw) > MAX_FRAME:
                self.send({"kind": "error", "reason": f"frame of {len(raw)} bytes refused: at most {MAX_FRAME}"})
                continue
            self.send(await self._command(raw))

    async def _command(self, raw: str | bytes) -> dict[str, Any]:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("data", {}), dict):
            return {"kind": "error", "reason": 'commands are JSON objects: {"type": ..., "data": {...}}'}
        kind, data = msg.get("type"), dict(msg.get("data") or {})
        command_id = str(msg.get("id") or uuid.uuid4())
        try:
            if kind == "supervisor.observe":
                return await self._observe(command_id, data)
            if kind in ACTIONS:
                return await self._act(command_id, str(kind), data)
        except ServiceError as exc:
            return {"kind": "error", "command_id": command_id, "type": kind, "reason": str(exc)}
        known = ", ".join(["supervisor.observe", *ACTIONS])
        return _error(command_id, f"unknown command {kind!r}; expected one of: {known}")

    async def _agent_of(self, conversation_id: str) -> str | None:
        """The agent whose open session holds the conversation (whom sessions acts on)."""
        async with self.sup.runtime.reading() as store:
            session = await store.find_open_session(conversation_id)
        return session.agent_id if session is not None else None

    async def _observe(self, command_id: str, data: dict[str, Any]) -> dict[str, Any]:
        conversation_id = str(data.get("conversation_id") or "")
        if not conversation_id:
            return _error(command_id, "supervisor.observe needs a conversation_id")
        agent = await self._agent_of(conversation_id)
        async with self.sup.runtime.reading() as store:
            messages = list((await service.transcript(store, conversation_id))["messages"])
        # no await from here to the transcript: what the tail delivers next is live, the rest is in it
        seen = {str(m["message_id"]) for m in messages}
        messages += [m for m in self.sup.tail.recent_messages(conversation_id) if m["message_id"] not in seen]
        self.observing, self.seen = conversation_id, {str(m["message_id"]) for m in messages}
        self.send({"kind": "transcript", "conversation_id": conversation_id, "messages": messages})
        if agent is not None:
            await self._publish(command_id, agent, "observe", {"conversation_id": conversation_id})
        return {"kind": "accepted", "command_id": command_id, "type": "supervisor.observe"}

    async def _act(self, command_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        action, fields = ACTIONS[kind]
        extra = sorted(set(data) - set(fields))
        if extra:
            return _error(command_id, f"{kind} takes {', '.join(fields)}; not {', '.join(extra)}")
        if action == "set_presence":
            agent = str(data.get("agent_id") or "")
            if not agent:
                return _error(command_id, f"{kind} needs an agent_id")
        else:
            conversation_id = str(data.get("conversation_id") or "")
            if not conversation_id:
                return _error(command_id, f"{kind} needs a conversation_id")
            found = await self._agent_of(conversation_id)
            if found is None:
                return _error(command_id, f"conversation {conversation_id} is not with an agent: nobody to {action}")
            agent = found
            if action == "leave" and self.observing == conversation_id:
                self.observing = None
        fields_given = {k: v for k, v in data.items() if k != "agent_id"}
        return await self._publish(command_id, agent, action, fields_given, kind)

    async def _publish(
        self, command_id: str, agent: str, action: str, data: dict[str, Any], kind: str | None = None
    ) -> dict[str, Any]:
        event = {
            "specversion": "1.0",
            "id": command_id if kind else str(uuid.uuid4()),
            "source": f"/gateway/supervisor/{self.principal.subject}",
            "type": c.SupervisorAct.TYPE,
            "subject": agent,
            "datacontenttype": "application/json",
            "data": {**data, "agent_id": agent, "supervisor_id": self.principal.subject, "action": action},
        }
        try:
            envelope, _ = c.parse(orjson.dumps(event), topics.SESSIONS_COMMANDS)
        except c.InvalidEvent as exc:
            return {"kind": "error", "command_id": command_id, "type": kind, "reason": str(exc)}
        await self.sup.runtime.broker.publish(
            envelope.to_bytes(),
            topic=self.sup.commands,
            key=agent.encode(),
            headers={"content-type": "application/cloudevents+json", "ce_type": envelope.type},
        )
        return {"kind": "accepted", "command_id": envelope.id, "type": kind or "supervisor.act", "agent_id": agent}
