"""The gateway's bounds (issue 12 item 4): the resume buffer is bounded per agent and overall and
forgets agents without sockets; a client too slow for its socket's queue is closed with 1013 and
resumes without a gap; frames and bodies over the limit are refused with a reason; on stop every
WebSocket closes with 1012 so its client reconnects to another replica."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from starlette.applications import Starlette

from sessions.app import create_app as sessions_app
from sessions.gateway import Hub
from sessions.settings import SessionsSettings
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tools.testing import Bus, Deployment, listening_socket, running, served

AUTH = Auth(DEV_SECRET)
AGENT = AUTH.mint("agent-1")
LEAD = AUTH.mint("lead-1", ("supervisor",))
EVENTS = 400
PADDING = "x" * 1200


def record(seq: int, agent: str = "agent-1") -> bytes:
    return orjson.dumps({"type": "test.padding", "subject": agent, "data": {"agent_id": agent, "seq": seq}})


# --- the hub's memory, without Kafka ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_resume_buffer_is_bounded_per_agent_and_overall() -> None:
    hub = Hub("unused", "sessions.v1", buffer=5, total=12)
    for seq in range(1, 9):
        hub.on_record(topics.SESSIONS, "agent-1", record(seq))
    assert [s for s, _ in hub.rings["agent-1"]] == [4, 5, 6, 7, 8] and hub.size == 5
    assert hub.replay("agent-1", 1, committed_seq=8) is None  # older than the buffer: the snapshot
    assert [s for s, _ in hub.replay("agent-1", 5, committed_seq=8) or []] == [6, 7, 8]
    for agent in ("agent-2", "agent-3"):
        for seq in range(1, 6):
            hub.on_record(topics.SESSIONS, agent, record(seq, agent))
    # 15 events kept over 12: the least recently active agent without a socket went first
    assert list(hub.rings) == ["agent-2", "agent-3"] and hub.size == 10
    out = hub.subscribe("agent-2")  # a socket holds agent-2: agent-3's events go before its
    for seq in range(1, 6):
        hub.on_record(topics.SESSIONS, "agent-4", record(seq, "agent-4"))
    assert list(hub.rings) == ["agent-2", "agent-4"] and hub.size == 10
    for seq in range(6, 9):
        hub.on_record(topics.SESSIONS, "agent-2", record(seq, "agent-2"))
    assert out.queue.qsize() == 3 and hub.size <= 12
    hub.unsubscribe("agent-2", out)


async def test_agents_without_sockets_are_forgotten_after_a_while() -> None:
    clock = Clock()
    hub = Hub("unused", "sessions.v1", buffer=10, idle_s=60, clock=clock)
    hub.on_record(topics.SESSIONS, "agent-1", record(1))
    hub.on_record(topics.SESSIONS, "agent-2", record(1, "agent-2"))
    held = hub.subscribe("agent-2")
    clock.now += 61
    await hub.sweep()
    assert list(hub.rings) == ["agent-2"] and hub.size == 1  # agent-2 has a socket: kept
    hub.unsubscribe("agent-2", held)
    clock.now += 30
    await hub.sweep()
    assert list(hub.rings) == ["agent-2"]  # idle time counts from the last socket's end
    clock.now += 31
    await hub.sweep()
    assert not hub.rings and hub.size == 0 and not hub.touched


def test_a_socket_that_falls_behind_is_marked_too_slow() -> None:
    hub = Hub("unused", "sessions.v1", socket_queue=3)
    out = hub.subscribe("agent-1")
    for seq in range(1, 4):
        hub.on_record(topics.SESSIONS, "agent-1", record(seq))
    assert not out.overflowed.is_set()
    hub.on_record(topics.SESSIONS, "agent-1", record(4))
    assert out.overflowed.is_set() and out.queue.qsize() == 3
    assert len(hub.rings["agent-1"]) == 4  # the buffer has what the socket missed, for its resume


# --- on the real stack -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway(dep: Deployment, sock: socket.socket) -> AsyncIterator[tuple[Starlette, str]]:
    """sessions alone (routing and presence unreachable: the snapshot goes without them), served
    on `sock`; stopping the runtime happens while the server still runs."""
    closed = listening_socket()
    nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    settings = dep.settings(
        SessionsSettings, "sessions", routing_url=nowhere, presence_url=nowhere, assist_url=nowhere, customer_demo=True
    )
    app = sessions_app(settings)
    async with served(app, sock) as host, running(app.state.runtime):
        yield app, host


class Client:
    """A WebSocket client reading only when told to."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def read_until_closed(self) -> tuple[int | None, str]:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async with asyncio.timeout(60):
                while True:
                    self.frames.append(orjson.loads(await self.ws.recv()))
        return self.ws.close_code, self.ws.close_reason or ""

    async def read_until(self, done: Any) -> None:
        async with asyncio.timeout(60):
            while not done(self.frames):
                self.frames.append(orjson.loads(await self.ws.recv()))

    def seqs(self) -> list[int]:
        return self.seqs_of(self.frames)

    @staticmethod
    def seqs_of(frames: list[dict[str, Any]]) -> list[int]:
        return [int(f["event"]["data"]["seq"]) for f in frames if f["kind"] == "event"]


async def until(condition: Any, what: str) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.05)
    assert condition(), what


@pytest.mark.e2e
async def test_a_slow_client_is_closed_with_1013_and_resumes_without_a_gap(
    deployment: Deployment, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONS_SOCKET_QUEUE", "16")
    server = listening_socket()
    # small kernel buffers on both ends: a client that does not read holds the server's writes soon
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    async with gateway(deployment, server) as (app, host):
        hub: Hub = app.state.gateway.hub
        raw = socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1])))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        url = f"ws://{host}/agents/agent-1/stream?token={AGENT}"
        async with websockets.connect(url, sock=raw, max_queue=1, max_size=None) as ws:
            slow = Client(ws)
            await until(lambda: "agent-1" in hub.subscribers, "the socket is subscribed")
            assert bus.producer is not None
            for seq in range(1, EVENTS + 1):  # sequenced events on sessions.v1, as the relay writes them
                value = orjson.dumps(
                    {"type": "test.padding", "data": {"agent_id": "agent-1", "seq": seq, "pad": PADDING}}
                )
                await bus.producer.send(deployment.topic(topics.SESSIONS), value, key=b"agent-1")
            await bus.producer.flush()
            await until(lambda: hub.slow_disconnects >= 1, "the gateway gave up on the client that does not read")
            code, reason = await slow.read_until_closed()  # what was written before the close, then the close
        assert (code, reason) == (1013, "too slow; reconnect")
        assert slow.frames[0]["kind"] == "snapshot"
        got = slow.seqs()
        assert got == list(range(1, len(got) + 1)) and len(got) < EVENTS

        last = got[-1] if got else 0
        async with websockets.connect(f"{url}&after_seq={last}", max_size=None) as ws:
            resumed = Client(ws)
            await resumed.read_until(lambda frames: EVENTS in Client.seqs_of(frames))
        assert resumed.frames[0] == {"kind": "resumed", "after_seq": last}
        assert got + resumed.seqs() == list(range(1, EVENTS + 1))  # every event once, in order


@pytest.mark.e2e
async def test_oversize_frames_and_bodies_are_refused_with_a_reason(deployment: Deployment) -> None:
    async with gateway(deployment, listening_socket()) as (_, host):
        async with websockets.connect(f"ws://{host}/agents/agent-1/stream?token={AGENT}", max_size=None) as ws:
            client = Client(ws)
            await client.read_until(lambda frames: any(f["kind"] == "snapshot" for f in frames))
            await ws.send(orjson.dumps({"type": "draft.save", "data": {"text": "x" * 70_000}}).decode())
            await client.read_until(lambda frames: frames[-1]["kind"] == "error")
            assert "refused: at most 65536" in client.frames[-1]["reason"]
        async with httpx.AsyncClient(base_url=f"http://{host}", timeout=15) as http:
            lead = {"Authorization": f"Bearer {LEAD}"}
            big = await http.put("/admin/profiles/standard", headers=lead, content=b"{" + b" " * 70_000 + b"}")
            assert big.status_code == 413 and "at most 65536 bytes" in big.json()["error"]
            bad = await http.put("/admin/profiles/standard", headers=lead, content=b"{nope")
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
            demo = await http.post("/customer/conversations", content=b"[" * 70_000)
            assert demo.status_code == 413


@pytest.mark.e2e
async def test_on_stop_every_websocket_closes_with_1012(deployment: Deployment) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    closed = listening_socket()
    nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    app = sessions_app(
        deployment.settings(
            SessionsSettings,
            "sessions",
            routing_url=nowhere,
            presence_url=nowhere,
            assist_url=nowhere,
            customer_demo=True,
        )
    )
    async with served(app, sock):
        async with running(app.state.runtime):
            async with httpx.AsyncClient(timeout=15) as http:
                created = await http.post(f"http://127.0.0.1:{port}/customer/conversations", json={"name": "Ada"})
            assert created.status_code == 201, created.text
            chat = created.json()
            urls = [
                f"ws://127.0.0.1:{port}/agents/agent-1/stream?token={AGENT}",
                f"ws://127.0.0.1:{port}/supervisor/stream?token={LEAD}",
                f"ws://127.0.0.1:{port}/customer/conversations/{chat['conversation_id']}/stream?token={chat['token']}",
            ]
            opened = [await websockets.connect(u, max_size=None) for u in urls]
            await until(lambda: len(app.state.gateway.sockets.open) == 3, "three sockets open")
        # the runtime stopped (the server still runs): each client was told to reconnect
        for ws in opened:
            await Client(ws).read_until_closed()
            assert (ws.close_code, ws.close_reason) == (1012, "service restarting; reconnect")
