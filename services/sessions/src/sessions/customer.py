"""The customer demo (SESSIONS_CUSTOMER_DEMO): a person starts a chat from a web page.

- `POST /customer/conversations` {name, subject} publishes `conversation.arrived` (channel chat)
  for a new conversation `web-<8 hex>` and answers {conversation_id, token}: a token whose subject
  is `customer:<conversation_id>` with the role `customer`, good for that conversation only.
- `/customer/conversations/{id}/stream?token=` (WebSocket): the conversation's public messages so
  far, then live; `{"type": "customer.message", "data": {"text"}}` posts a customer message."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from sessions import service
from sessions.gateway import TOO_SLOW, TOO_SLOW_REASON, Outgoing, Sockets, close, refuse
from sessions.store import SessionsStore
from sessions.tail import Tail, message_of
from shared import contracts as c
from shared import topics
from shared.auth import Auth, Unauthorised, token_of
from shared.http import HttpError, read_json
from shared.runtime import Runtime

log = structlog.get_logger("switchboard.gateway")

MAX_FRAME = 64 * 1024
TOKEN_TTL_S = 4 * 3600
PRODUCTION_REFUSAL = (
    "the customer demo is a development door and is off in production: unset SESSIONS_CUSTOMER_DEMO "
    "and connect a real channel"
)


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(default="", max_length=500)
    channel: Literal["chat"] = "chat"


class CustomerMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    text: str = Field(min_length=1, max_length=8000)


def subject_of(conversation_id: str) -> str:
    return f"customer:{conversation_id}"


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors())


class CustomerDemo:
    """The demo door. In production (SWITCHBOARD_ENV=production) it refuses every request:
    anyone could start conversations through it, and its tokens are minted with the shared secret."""

    def __init__(
        self,
        runtime: Runtime[SessionsStore, service.SessionsBatch],
        auth: Auth,
        tail: Tail,
        sockets: Sockets | None = None,
        *,
        production: bool = False,
        max_body_bytes: int = 64 * 1024,
        queue: int = 1000,
    ) -> None:
        self.runtime = runtime
        self.auth = auth
        self.tail = tail
        self.sockets = sockets or Sockets()
        self.production = production
        self.max_body_bytes = max_body_bytes
        self.queue = queue

    async def _publish(self, payload: c.Payload, source: str) -> c.CloudEvent:
        ev = c.event(payload, source=source)
        await self.runtime.broker.publish(
            ev.to_bytes(),
            topic=self.runtime.names(payload.TOPIC),
            key=c.key_of(payload).encode(),
            headers={"content-type": "application/cloudevents+json", "ce_type": ev.type},
        )
        return ev

    async def start(self, request: Request) -> JSONResponse:
        if self.production:
            raise HttpError(403, PRODUCTION_REFUSAL)
        try:
            body = NewConversation.model_validate(await read_json(request, max_bytes=self.max_body_bytes))
        except ValidationError as exc:
            return JSONResponse({"error": _problems(exc)}, status_code=422)
        conversation_id = f"web-{uuid.uuid4().hex[:8]}"
        arrived = c.ConversationArrived(
            conversation_id=conversation_id,
            channel=body.channel,
            customer=c.Customer(id=subject_of(conversation_id), name=body.name),
            subject=body.subject or None,
        )
        await self._publish(arrived, "/gateway/customer-demo")
        token = self.auth.mint(subject_of(conversation_id), roles=("customer",), ttl_s=TOKEN_TTL_S)
        return JSONResponse({"conversation_id": conversation_id, "token": token}, status_code=201)

    async def websocket(self, ws: WebSocket) -> None:
        conversation_id = ws.path_params["conversation_id"]
        if self.production:
            await refuse(ws, 403, PRODUCTION_REFUSAL)
            return
        try:
            principal = self.auth.verify(token_of(ws.headers, ws.query_params))
        except Unauthorised as exc:
            await refuse(ws, 401, str(exc))
            return
        if not principal.is_customer or principal.subject != subject_of(conversation_id):
            await refuse(ws, 403, f"this token is not for conversation {conversation_id}")
            return
        await ws.accept()
        async with self.sockets.held(ws) as open_:
            if open_:
                await self._serve(ws, conversation_id)

    async def _serve(self, ws: WebSocket, conversation_id: str) -> None:
        outgoing: Outgoing[dict[str, Any]] = Outgoing(self.queue)
        seen: set[str] = set()

        def on_record(topic: str, key: str | None, value: bytes) -> None:
            if topic != topics.MESSAGES or key != conversation_id:
                return
            event = orjson.loads(value)
            message = message_of(event)
            public = event.get("type") == "message.posted" and message["visibility"] == "public"
            if public and message["message_id"] not in seen:
                seen.add(message["message_id"])
                outgoing.put({"kind": "message", "message": message})

        history = await self._history(conversation_id)
        # no await from here until the listener is in: the tail's next record is live, the rest is above
        recent = [m for m in self.tail.recent_messages(conversation_id) if m["visibility"] == "public"]
        for message in [*history, *recent]:
            if message["message_id"] not in seen:
                seen.add(message["message_id"])
                outgoing.put({"kind": "message", "message": message})
        self.tail.listeners.add(on_record)
        write = asyncio.create_task(self._write(ws, outgoing))
        too_slow = asyncio.create_task(outgoing.overflowed.wait())
        tasks = [write, too_slow, asyncio.create_task(self._receive(ws, conversation_id, outgoing))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if too_slow in done:
                write.cancel()  # the page reconnects and reloads the transcript
                await close(ws, TOO_SLOW, TOO_SLOW_REASON)
            for t in done:
                failure = None if t.cancelled() else t.exception()
                if failure is not None and not self.sockets.gone(failure):
                    log.warning("customer_stream_error", conversation_id=conversation_id, error=repr(failure))
        finally:
            self.tail.listeners.discard(on_record)
            for t in tasks:
                t.cancel()

    async def _history(self, conversation_id: str) -> list[dict[str, Any]]:
        """The public messages sessions' transcript holds so far."""
        async with self.runtime.reading() as store:
            page = await service.transcript(store, conversation_id)
        return [m for m in page["messages"] if m.get("visibility") == "public"]

    @staticmethod
    async def _write(ws: WebSocket, outgoing: Outgoing[dict[str, Any]]) -> None:
        while True:
            await ws.send_text(orjson.dumps(await outgoing.get(), default=str).decode())

    async def _receive(self, ws: WebSocket, conversation_id: str, outgoing: Outgoing[dict[str, Any]]) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw: str | bytes = message.get("text") or message.get("bytes") or b""
            outgoing.put(await self._message(raw, conversation_id))

    async def _message(self, raw: str | bytes, conversation_id: str) -> dict[str, Any]:
        if len(raw) > MAX_FRAME:
            return {"kind": "error", "reason": f"frame of {len(raw)} bytes refused: at most {MAX_FRAME}"}
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "customer.message":
            return {"kind": "error", "reason": 'send {"type": "customer.message", "data": {"text": ...}}'}
        try:
            body = CustomerMessage.model_validate(msg.get("data") or {})
        except ValidationError as exc:
            return {"kind": "error", "reason": _problems(exc)}
        posted = c.MessagePosted(
            conversation_id=conversation_id,
            sender="customer",
            sender_id=subject_of(conversation_id),
            text=body.text,
        )
        await self._publish(posted, f"/gateway/customer/{conversation_id}")
        return {"kind": "accepted", "message_id": posted.message_id}
