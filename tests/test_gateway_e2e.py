"""The gateway (issue 10) on real Kafka and Postgres, with routing, presence and assist answering
over HTTP: the agent's presence, history, knowledge and Home; the supervisor's overview, stream
and actions; the customer demo."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import websockets

from sessions.app import create_app as sessions_app
from sessions.settings import SessionsSettings
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tests import helpers
from tools.browser import run_stack
from tools.testing import Bus, Deployment, listening_socket, running, served

pytestmark = pytest.mark.e2e
AUTH = Auth(DEV_SECRET)
AGENT = AUTH.mint("agent-1")
LEAD = AUTH.mint("lead-1", ("supervisor",))
Frame = dict[str, Any]


@dataclass
class Stack:
    gateway: str  # host:port
    urls: dict[str, str]

    def http(self, service: str = "sessions") -> httpx.AsyncClient:
        base = f"http://{self.gateway}" if service == "sessions" else self.urls[service]
        return httpx.AsyncClient(base_url=base, timeout=10)


@contextlib.asynccontextmanager
async def stack(dep: Deployment, *, assist: bool = False, demo: bool = False) -> AsyncIterator[Stack]:
    """The four services in this process, served over HTTP (tools.browser.run_stack); assist only when
    asked (without it the gateway's knowledge reads fail, as with assist down)."""
    async with run_stack(dep, with_assist=assist, customer_demo=demo, demo_devices=False, overview_debounce_s=0.1) as s:
        urls = {
            "routing": s.routing_url,
            "presence": s.presence_url,
            "assist": s.assist_url,
            "sessions": s.sessions_url,
        }
        yield Stack(s.sessions_url.removeprefix("http://"), urls)


class Socket:
    """A WebSocket client keeping every frame it received, to wait for one that matches."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[Frame] = []

    async def send(self, body: Frame | str) -> None:
        await self.ws.send(body if isinstance(body, str) else orjson.dumps(body).decode())

    async def next(self, match: Callable[[Frame], bool], timeout: float = 15.0, since: int | None = None) -> Frame:
        """The first frame received from now on (or from frame `since`) that matches."""
        start = len(self.frames) if since is None else since
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.frames[start:]:
                    if match(frame):
                        return frame
                start = len(self.frames)
                self.frames.append(orjson.loads(await self.ws.recv()))

    async def reply(self, body: Frame, kind: str | tuple[str, ...] = ("accepted", "error")) -> Frame:
        await self.send(body)
        kinds = (kind,) if isinstance(kind, str) else kind
        return await self.next(lambda f: f["kind"] in kinds or f["kind"] == "error")

    async def event(self, type: str, **data: Any) -> Frame:
        """The data of the first event of the stream that matches, received already or not."""

        def match(f: Frame) -> bool:
            if f["kind"] != "event" or f["event"]["type"] != type:
                return False
            return all(f["event"]["data"].get(k) == v for k, v in data.items())

        return (await self.next(match, since=0))["event"]["data"]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[Socket]:
    async with websockets.connect(url, max_size=2**21) as ws:
        yield Socket(ws)


async def refused(url: str) -> int:
    """The close code a WebSocket is refused with."""
    with pytest.raises(websockets.exceptions.WebSocketException) as caught:
        async with websockets.connect(url) as ws:
            await ws.recv()
    exc = caught.value
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return int(rcvd.code)
    response = getattr(exc, "response", None)
    return int(getattr(response, "status_code", 0) or getattr(exc, "status_code", 0))


async def assigned(bus: Bus, agent: str, cid: str, **arrival: Any) -> dict[str, Any]:
    await bus.publish(c.ConversationArrived(conversation_id=cid, channel="chat", **arrival))
    return await accept(bus, agent, cid)


async def accept(bus: Bus, agent: str, cid: str) -> dict[str, Any]:
    offer = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id=cid))[0]
    await bus.publish(c.AcceptOffer(agent_id=agent, offer_id=offer.data["offer_id"]))
    return (await bus.wait_for(topics.SESSIONS, "session.started", conversation_id=cid))[0].data


async def signed_in(bus: Bus, dep: Deployment, agent: str) -> None:
    await bus.publish(c.AgentSignedIn(agent_id=agent))
    await helpers.routing_sees(dep, agent, "available")


async def test_agent_presence_history_knowledge_and_home(deployment: Deployment, bus: Bus) -> None:
    async with stack(deployment, assist=True) as s:
        await signed_in(bus, deployment, "agent-1")
        url = f"ws://{s.gateway}/agents/agent-1/stream?token={AGENT}"
        async with connect(url) as ws:
            snap = (await ws.next(lambda f: f["kind"] == "snapshot"))["workspace"]
            assert {"available", "away"} <= {st["name"] for st in snap["statuses"]}
            assert {"server_time", "presence", "channels", "dashboard", "dispositions"} <= set(snap)

            # presence.set reaches presence and comes back on the agent's stream
            reply = await ws.reply({"type": "presence.set", "data": {"status": "away"}})
            assert reply["kind"] == "accepted", reply
            updated = await ws.event("presence.updated", status="away")
            assert updated["source"] == "manual"
            other = await ws.reply({"type": "presence.set", "data": {"agent_id": "agent-2", "status": "away"}})
            assert other["kind"] == "error" and "agent-2" in other["reason"]
            bad = await ws.reply({"type": "presence.set", "data": {}})
            assert bad["kind"] == "error" and "needs a status" in bad["reason"]
            await ws.reply({"type": "presence.set", "data": {"status": "available"}})
            await helpers.routing_sees(deployment, "agent-1", "available")

            # history: the newest 50 messages, then the older ones
            await assigned(bus, "agent-1", "c-hist", customer=c.Customer(name="Ada Lovelace"))
            for i in range(60):
                await bus.publish(c.MessagePosted(conversation_id="c-hist", sender="customer", text=f"line {i}"))
            await bus.wait_for(topics.SESSIONS, "message.received", conversation_id="c-hist", count=60)
            page = await ws.reply({"type": "conversation.history", "data": {"conversation_id": "c-hist"}}, "history")
            assert page["more"] is True and [m["text"] for m in page["messages"]] == [
                f"line {i}" for i in range(10, 60)
            ]
            first = page["messages"][0]["message_id"]
            older = await ws.reply(
                {"type": "conversation.history", "data": {"conversation_id": "c-hist", "before_message_id": first}},
                "history",
            )
            assert older["more"] is False and [m["text"] for m in older["messages"]] == [f"line {i}" for i in range(10)]
            theirs = await ws.reply({"type": "conversation.history", "data": {"conversation_id": "c-nobody"}})
            assert theirs["kind"] == "error" and "c-nobody" in theirs["reason"]

            # knowledge through the gateway, with the agent's token
            found = await ws.reply({"type": "kb.search", "data": {"query": "charged twice refund"}}, "kb_results")
            assert found["query"] == "charged twice refund" and found["results"], found
            hit = next(r for r in found["results"] if r["id"] == "refund-duplicate-charge")
            assert hit["title"] and hit["snippet"] and isinstance(hit["score"], float)
            article = await ws.reply({"type": "kb.article", "data": {"id": hit["id"]}}, "kb_article")
            assert article["article"]["id"] == hit["id"] and article["article"]["body"]
            missing = await ws.reply({"type": "kb.article", "data": {"id": "no-such-article"}})
            assert missing["kind"] == "error" and "assist refused" in missing["reason"]

            # Home's dashboard for the agent's queues
            home = await ws.reply({"type": "dashboard.get", "data": {}}, "dashboard")
            assert "c-hist" in [w["conversation_id"] for w in home["dashboard"]["my_work"]]

            # limits
            big = await ws.reply({"type": "draft.save", "data": {"text": "x" * 70_000}})
            assert big["kind"] == "error" and "at most 65536" in big["reason"]
            long = await ws.reply({"type": "message.send", "data": {"session_id": "s-1", "text": "x" * 8001}})
            assert long["kind"] == "error" and "text" in long["reason"] and "8000" in long["reason"], long
            # supervisor.act is the supervisor stream's, whose role the gateway checked
            act = {"supervisor_id": "agent-1", "action": "whisper", "conversation_id": "c-hist", "text": "hi"}
            posing = await ws.reply({"type": "supervisor.act", "data": act})
            assert posing["kind"] == "error" and "supervisor stream" in posing["reason"]


async def test_the_agent_rejects_a_suggested_reply_and_saves_the_case_summary(deployment: Deployment, bus: Bus) -> None:
    """suggestion.feedback and case_summary.save go to assist with the agent's token, answered at once."""
    async with stack(deployment, assist=True) as s:
        await signed_in(bus, deployment, "agent-1")
        await assigned(bus, "agent-1", "c-fb", customer=c.Customer(name="Ada Lovelace"))
        await bus.publish(
            c.MessagePosted(
                conversation_id="c-fb",
                sender="customer",
                text="Hi, I was charged twice for order 1234. Can I get a refund for the duplicate charge?",
            )
        )
        suggested = (await bus.wait_for(topics.ASSIST, "assist.replies_suggested", conversation_id="c-fb"))[-1].data
        suggestion = suggested["replies"][0]["suggestion_id"]
        async with connect(f"ws://{s.gateway}/agents/agent-1/stream?token={AGENT}") as ws:
            await ws.next(lambda f: f["kind"] == "snapshot")

            # Reject reply: assist records the verdict once; a second one is refused, readably
            reject = {"id": "fb-1", "type": "suggestion.feedback", "data": {"suggestion_id": suggestion}}
            done = await ws.reply({**reject, "data": {**reject["data"], "verdict": "rejected"}})
            assert done == {
                "kind": "accepted",
                "command_id": "fb-1",
                "type": "suggestion.feedback",
                "suggestion_id": suggestion,
                "verdict": "rejected",
            }
            again = await ws.reply({**reject, "id": "fb-2"})
            assert again["kind"] == "error" and again["command_id"] == "fb-2"
            assert "already has a verdict" in again["reason"] and "rejected" in again["reason"], again
            unknown = await ws.reply({"type": "suggestion.feedback", "data": {"suggestion_id": "sg-nope"}})
            assert unknown["kind"] == "error" and "sg-nope" in unknown["reason"]
            meh = {"suggestion_id": suggestion, "verdict": "meh"}
            odd = await ws.reply({"type": "suggestion.feedback", "data": meh})
            assert odd["kind"] == "error" and "rejected" in odd["reason"]
            assert (await ws.reply({"type": "suggestion.feedback", "data": {}}))["kind"] == "error"

            # the case summary: nothing to save before assist drafted one, then the reviewed version
            reviewed = {
                "conversation_id": "c-fb",
                "issue": "Charged twice for order 1234.",
                "actions": ["Refunded the duplicate payment"],
                "resolution": "Refund issued",
                "next_steps": [],
            }
            early = await ws.reply({"type": "case_summary.save", "data": reviewed})
            assert early["kind"] == "error" and "no case summary drafted" in early["reason"], early
            async with s.http("assist") as assist:
                token = {"Authorization": f"Bearer {AGENT}"}
                assert (await assist.post("/conversations/c-fb/case-summary", headers=token)).status_code == 200
                saved = await ws.reply({"id": "cs-1", "type": "case_summary.save", "data": reviewed})
                assert saved["kind"] == "accepted" and saved["command_id"] == "cs-1", saved
                assert saved["conversation_id"] == "c-fb" and saved["case_summary"]["status"] == "saved"
                assert saved["case_summary"]["saved"]["issue"] == "Charged twice for order 1234."
                assert saved["case_summary"]["saved_by"] == "agent-1" and saved["case_summary"]["saved_at"]
                stored = (await assist.get("/conversations/c-fb/case-summary", headers=token)).json()
                assert stored["saved"]["actions"] == ["Refunded the duplicate payment"]
            empty = await ws.reply({"type": "case_summary.save", "data": {**reviewed, "issue": ""}})
            assert empty["kind"] == "error" and "invalid case summary" in empty["reason"]
            theirs = await ws.reply({"type": "case_summary.save", "data": {**reviewed, "conversation_id": "c-other"}})
            assert theirs["kind"] == "error" and "has not held conversation 'c-other'" in theirs["reason"]

        # a supervisor reading agent-1's workspace decides nothing for them
        async with connect(f"ws://{s.gateway}/agents/agent-1/stream?token={LEAD}") as watching:
            await watching.next(lambda f: f["kind"] == "snapshot")
            posing = await watching.reply({"type": "case_summary.save", "data": reviewed})
            assert posing["kind"] == "error" and "may not act for agent-1" in posing["reason"]


async def test_the_agent_snapshot_degrades_when_routing_and_presence_are_down(deployment: Deployment, bus: Bus) -> None:
    """The gateway alone: no queue filter, no statuses, and a supervisor overview that says why."""
    # bound but never listening: a connection to them is refused, as to a service that is down
    with listening_socket() as nobody_routing, listening_socket() as nobody_presence:
        app = sessions_app(
            deployment.settings(
                SessionsSettings,
                "sessions",
                routing_url=f"http://127.0.0.1:{nobody_routing.getsockname()[1]}",
                presence_url=f"http://127.0.0.1:{nobody_presence.getsockname()[1]}",
            )
        )
        async with (
            running(app.state.runtime),
            served(app) as host,
            httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as http,
        ):
            r = await http.get("/agents/agent-1/workspace", headers={"Authorization": f"Bearer {AGENT}"})
            assert r.status_code == 200 and r.json()["statuses"] == []
            r = await http.get("/supervisor/overview", headers={"Authorization": f"Bearer {LEAD}"})
            assert r.status_code == 502 and r.json()["error"].startswith(("routing did not answer", "presence did not"))
            page = await http.get("/")
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and f"ws://{host}" in csp
            assert (await http.get("/supervisor")).status_code == 200
            assert (await http.get("/static/app.js")).status_code == 200
            assert (await http.get("/customer")).status_code == 404  # the demo is off by default
            assert (await http.post("/customer/conversations", json={"name": "x"})).status_code in (404, 405)


async def test_supervisor_overview_actions_and_the_customer_demo(deployment: Deployment, bus: Bus) -> None:
    async with stack(deployment, demo=True) as s:
        await signed_in(bus, deployment, "agent-1")
        async with s.http() as http:
            # the overview: supervisors only, and it agrees with routing's and presence's own reads
            assert (await http.get("/supervisor/overview")).status_code == 401
            r = await http.get("/supervisor/overview", headers={"Authorization": f"Bearer {AGENT}"})
            assert r.status_code == 403 and "supervisor role" in r.json()["error"]

            # a customer starts a chat from the demo page
            bad = await http.post("/customer/conversations", json={"name": "x" * 201, "subject": "Refund"})
            assert bad.status_code == 422 and "name" in bad.json()["error"]
            start = {"name": "Grace Hopper", "subject": "Refund", "channel": "chat"}  # as the demo page sends it
            r = await http.post("/customer/conversations", json=start)
            assert r.status_code == 201, r.text
            cid, customer_token = r.json()["conversation_id"], r.json()["token"]
            assert cid.startswith("web-")
            session = await accept(bus, "agent-1", cid)
            assert session["title"] == "Grace Hopper"

            lead = {"Authorization": f"Bearer {LEAD}"}
            r = await http.get("/supervisor/overview", headers=lead)
            assert r.status_code == 200, r.text
            overview = r.json()
            async with s.http("routing") as routing, s.http("presence") as presence:
                queues = (await routing.get("/queues", headers=lead)).json()["queues"]
                agents = (await routing.get("/agents", headers=lead)).json()["agents"]
                people = (await presence.get("/agents", headers=lead)).json()["agents"]
        assert [(q["name"], q["waiting"]) for q in overview["queues"]] == [(q["name"], q["waiting"]) for q in queues]
        by_id = {a["agent_id"]: a for a in overview["agents"]}
        assert set(by_id) == {a["agent_id"] for a in agents} | {p["agent_id"] for p in people}
        for a in agents:
            assert by_id[a["agent_id"]]["load"] == a["capacity"]
        for p in people:
            assert by_id[p["agent_id"]]["presence"]["status"] == p["status"]
        assert by_id["agent-1"]["sessions"] == 1
        assert {"available", "away", "lunch"} <= {st["name"] for st in overview["statuses"]}  # base and custom
        conv = next(x for x in overview["conversations"] if x["conversation_id"] == cid)
        assert (conv["agent_id"], conv["state"], conv["customer"]) == ("agent-1", "assigned", "Grace Hopper")

        gw = s.gateway
        stranger = AUTH.mint("customer:web-other", ("customer",))
        assert await refused(f"ws://{gw}/customer/conversations/{cid}/stream?token={stranger}") in (403, 4403)
        assert await refused(f"ws://{gw}/customer/conversations/{cid}/stream?token={AGENT}") in (403, 4403)
        assert await refused(f"ws://{gw}/supervisor/stream?token={AGENT}") in (403, 4403)
        async with (
            connect(f"ws://{gw}/agents/agent-1/stream?token={AGENT}") as agent,
            connect(f"ws://{gw}/customer/conversations/{cid}/stream?token={customer_token}") as customer,
            connect(f"ws://{gw}/supervisor/stream?token={LEAD}") as supervisor,
        ):
            await agent.next(lambda f: f["kind"] == "snapshot")
            first = await supervisor.next(lambda f: f["kind"] == "overview")
            assert cid in [x["conversation_id"] for x in first["overview"]["conversations"]]

            # customer -> agent
            sent = await customer.reply({"type": "customer.message", "data": {"text": "Hello, I was charged twice"}})
            assert sent["kind"] == "accepted", sent
            received = await agent.event("message.received", conversation_id=cid, sender="customer")
            assert received["text"] == "Hello, I was charged twice"
            too_long = await customer.reply({"type": "customer.message", "data": {"text": "x" * 8001}})
            assert too_long["kind"] == "error" and "8000" in too_long["reason"]

            # agent -> customer
            reply = await agent.reply(
                {"type": "message.send", "data": {"session_id": session["session_id"], "text": "Hi Grace"}}
            )
            assert reply["kind"] == "accepted", reply
            heard = await customer.next(lambda f: f["kind"] == "message" and f["message"]["text"] == "Hi Grace")
            assert heard["message"]["sender"] == "agent"

            # the supervisor observes: the transcript, then the messages live
            watch = await supervisor.reply(
                {"type": "supervisor.observe", "data": {"conversation_id": cid}}, "transcript"
            )
            assert [m["text"] for m in watch["messages"]] == ["Hello, I was charged twice", "Hi Grace"]
            await customer.reply({"type": "customer.message", "data": {"text": "Are you there?"}})
            live = await supervisor.next(lambda f: f["kind"] == "message" and f["message"]["text"] == "Are you there?")
            assert live["conversation_id"] == cid

            # a whisper reaches the agent only; a barge-in reaches the customer
            whisper = await supervisor.reply(
                {"type": "supervisor.whisper", "data": {"conversation_id": cid, "text": "Offer the refund"}}
            )
            assert whisper["kind"] == "accepted" and whisper["agent_id"] == "agent-1", whisper
            told = await agent.event("message.received", conversation_id=cid, sender="supervisor")
            assert (told["visibility"], told["text"]) == ("internal", "Offer the refund")
            barge = await supervisor.reply(
                {"type": "supervisor.barge", "data": {"conversation_id": cid, "text": "I am the team lead"}}
            )
            assert barge["kind"] == "accepted", barge
            await customer.next(lambda f: f["kind"] == "message" and f["message"]["text"] == "I am the team lead")
            assert "Offer the refund" not in [f.get("message", {}).get("text") for f in customer.frames]
            await agent.event("supervisor.action", action="whisper", supervisor_id="lead-1")

            nobody = await supervisor.reply(
                {"type": "supervisor.whisper", "data": {"conversation_id": "c-none", "text": "x"}}
            )
            assert nobody["kind"] == "error" and "not with an agent" in nobody["reason"]
            unknown = await supervisor.reply({"type": "supervisor.dance", "data": {}})
            assert unknown["kind"] == "error" and "supervisor.whisper" in unknown["reason"]

            # the overview is pushed again when things move
            await supervisor.reply(
                {"type": "supervisor.set_presence", "data": {"agent_id": "agent-1", "status": "away"}}
            )
            pushed = await supervisor.next(
                lambda f: (
                    f["kind"] == "overview"
                    and any(
                        a["agent_id"] == "agent-1" and a["presence"]["status"] == "away"
                        for a in f["overview"]["agents"]
                    )
                )
            )
            assert pushed["overview"]["server_time"]

        # a reconnecting customer gets the public history only
        async with connect(f"ws://{gw}/customer/conversations/{cid}/stream?token={customer_token}") as again:
            await again.next(lambda f: f["kind"] == "message" and f["message"]["text"] == "I am the team lead")
            texts = [f["message"]["text"] for f in again.frames if f["kind"] == "message"]
            assert texts[:2] == ["Hello, I was charged twice", "Hi Grace"] and "Offer the refund" not in texts
