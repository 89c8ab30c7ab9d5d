"""Sessions (issue 4) on real Kafka and Postgres: the workspace, drafts, and the agent gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
import yaml

from sessions.app import create_app as sessions_app
from sessions.client import AgentClient
from sessions.settings import SessionsSettings
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tests import helpers
from tools.testing import Bus, Deployment, running, served

pytestmark = pytest.mark.e2e
AUTH = Auth(DEV_SECRET)
CONFIG = {
    "sessions": {
        "profiles": {"default": {}, "tight": {"max_tabs": 2, "pane_tools": ["summary"]}},
        "agents": {"agent-2": {"profile": "tight"}},
    }
}


@pytest.fixture
def config_file(tmp_path: Path) -> str:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return str(path)


def sessions(dep: Deployment, config_file: str) -> Any:
    return sessions_app(dep.settings(SessionsSettings, "sessions", config_file=config_file))


async def assigned_session(bus: Bus, agent: str, cid: str, **arrival: Any) -> dict[str, Any]:
    await bus.publish(c.ConversationArrived(conversation_id=cid, channel="chat", **arrival))
    offer = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id=cid))[0]
    await bus.publish(c.AcceptOffer(agent_id=agent, offer_id=offer.data["offer_id"]))
    return (await bus.wait_for(topics.SESSIONS, "session.started", conversation_id=cid))[0].data


async def rejection(bus: Bus, ev: c.CloudEvent) -> str:
    found = await bus.wait_for(topics.SESSIONS, "command.rejected", command_id=ev.id)
    return str(found[0].data["reason"])


async def test_title_icon_tabs_records_unread_and_pane(deployment, bus: Bus, config_file) -> None:
    app = sessions(deployment, config_file)
    async with running(helpers.routing(deployment), app.state.runtime, helpers.presence(deployment)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-2"))
        s = await assigned_session(bus, "agent-2", "c-gh", customer=c.Customer(name="Grace Hopper"))
        assert (s["title"], s["icon"]) == ("Grace Hopper", "Gr")
        sid = s["session_id"]
        visitor = await assigned_session(bus, "agent-2", "c-anon", customer=c.Customer(authenticated=False))
        assert visitor["title"] == "Visitor 1" and visitor["icon"] == "Vi"

        # record.link retitles the visitor's session
        await bus.publish(
            c.LinkRecord(
                agent_id="agent-2",
                session_id=visitor["session_id"],
                record=c.RecordRef(type="contact", id="42", title="Katherine Johnson"),
            )
        )
        re = await bus.wait_for(topics.SESSIONS, "session.retitled", session_id=visitor["session_id"])
        assert (re[0].data["title"], re[0].data["icon"]) == ("Katherine Johnson", "Ka")

        # tabs: the profile allows 2 per session (anchor + 1); the anchor cannot be closed alone
        await bus.publish(c.OpenTab(agent_id="agent-2", session_id=sid, kind="knowledge", title="KB"))
        opened = await bus.wait_for(topics.SESSIONS, "tab.opened", session_id=sid, kind="knowledge")
        third = await bus.publish(c.OpenTab(agent_id="agent-2", session_id=sid, kind="customer"))
        assert "tab limit reached (2" in await rejection(bus, third)
        anchor = await bus.publish(c.CloseTab(agent_id="agent-2", session_id=sid, tab_id="anchor"))
        assert "cannot be closed on its own" in await rejection(bus, anchor)
        await bus.publish(c.CloseTab(agent_id="agent-2", session_id=sid, tab_id=opened[0].data["tab_id"]))
        await bus.wait_for(topics.SESSIONS, "tab.closed", session_id=sid)

        # unread: customer messages on a session not in focus raise its count; focusing clears it
        await bus.publish(c.FocusSession(agent_id="agent-2", session_id=visitor["session_id"]))
        await bus.wait_for(topics.SESSIONS, "session.focused", session_id=visitor["session_id"], count=2)
        for i in range(11):
            await bus.publish(c.MessagePosted(conversation_id="c-gh", sender="customer", text=f"hello {i}"))
        badges = await bus.wait_for(topics.SESSIONS, "session.unread_changed", session_id=sid, count=11)
        assert badges[-1].data["unread"] == 11 and badges[-1].data["badge"] == "9+"
        await bus.publish(c.FocusSession(agent_id="agent-2", session_id=sid))
        cleared = await bus.wait_for(topics.SESSIONS, "session.unread_changed", session_id=sid, unread=0)
        assert cleared[0].data["badge"] == ""

        # assist's suggestions land in the pane of the session holding the conversation
        await bus.publish(c.SummaryReady(conversation_id="c-gh", summary="Wants a refund for order 1234."))
        await bus.publish(
            c.ArticlesSurfaced(conversation_id="c-gh", articles=[{"id": "kb-1", "title": "Refunds", "score": 0.9}])
        )
        pane = await bus.wait_for(topics.SESSIONS, "pane.updated", session_id=sid)
        assert pane[0].data["pane"]["summary"]["summary"] == "Wants a refund for order 1234."
        assert pane[0].data["pane"]["tools"] == ["summary"]  # the tight profile shows the summary only

        # sequence numbers are per agent, contiguous
        seqs = [e.data["seq"] for e in await bus.events(topics.SESSIONS, agent_id="agent-2")]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_drafts_survive_switching_and_restart_and_stale_saves_are_refused(
    deployment, bus: Bus, config_file
) -> None:
    async with running(
        helpers.routing(deployment), helpers.presence(deployment), sessions(deployment, config_file).state.runtime
    ):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        a = await assigned_session(bus, "agent-1", "c-mail", customer=c.Customer(name="Ada Lovelace"))
        b = await assigned_session(bus, "agent-1", "c-other", customer=c.Customer(name="Alan Turing"))
        await bus.publish(
            c.SaveDraft(
                agent_id="agent-1",
                session_id=a["session_id"],
                tab_id="anchor",
                fields={"text": "Dear Ada, your refund"},
                version=0,
            )
        )
        saved = await bus.wait_for(topics.SESSIONS, "draft.saved", session_id=a["session_id"])
        assert saved[0].data["version"] == 1
        await bus.publish(c.FocusSession(agent_id="agent-1", session_id=b["session_id"]))
        await bus.publish(c.FocusSession(agent_id="agent-1", session_id=a["session_id"]))
        await bus.wait_for(topics.SESSIONS, "session.focused", session_id=a["session_id"], count=2)
    # restart sessions: the draft is still there, at version 1
    app = sessions(deployment, config_file)
    async with running(app.state.runtime), served(app) as host:
        token = AUTH.mint("agent-1")
        async with AgentClient(f"http://{host}", token, deployment.infra.bootstrap) as client:
            drafts = next(s for s in client.workspace["sessions"] if s["session_id"] == a["session_id"])["drafts"]
            assert drafts[0]["fields"] == {"text": "Dear Ada, your refund"} and drafts[0]["version"] == 1
            assert client.workspace["focused_session"] == a["session_id"]
        # a second device still holding version 0 saves: refused, told the current version
        stale = await bus.publish(
            c.SaveDraft(
                agent_id="agent-1", session_id=a["session_id"], tab_id="anchor", fields={"text": "Hello"}, version=0
            )
        )
        reason = await rejection(bus, stale)
        assert "stale draft" in reason and "current version is 1" in reason
        rejected = await bus.wait_for(topics.SESSIONS, "command.rejected", command_id=stale.id)
        assert rejected[0].data["current_version"] == 1


async def ws_connect(host: str, agent: str, token: str, after_seq: int | None = None) -> Any:
    query = f"token={token}" + (f"&after_seq={after_seq}" if after_seq is not None else "")
    return await websockets.connect(f"ws://{host}/agents/{agent}/stream?{query}")


async def frames(ws: Any, until: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not until(got):
            got.append(orjson.loads(await ws.recv()))
    return got


def events_of(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f["event"] for f in got if f["kind"] == "event"]


async def test_gateway_isolates_agents_and_resumes_without_gap_or_duplicate(deployment, bus: Bus, config_file) -> None:
    app = sessions(deployment, config_file)
    async with (
        running(helpers.routing(deployment), helpers.presence(deployment), app.state.runtime),
        served(app) as host,
    ):
        for agent in ("agent-1", "agent-3"):
            await bus.publish(c.AgentSignedIn(agent_id=agent))
        await bus.wait_for(topics.PRESENCE, "presence.changed", count=2, status="available")
        t1, t3 = AUTH.mint("agent-1"), AUTH.mint("agent-3")

        # a token for agent-1 cannot open agent-3's stream; a supervisor can read it
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await ws_connect(host, "agent-3", t1)
        ws1 = await ws_connect(host, "agent-1", t1)
        first = await frames(ws1, lambda g: len(g) >= 1)
        assert first[0]["kind"] == "snapshot"
        sup = await ws_connect(host, "agent-3", AUTH.mint("lead-1", ("agent", "supervisor")))
        assert (await frames(sup, lambda g: len(g) >= 1))[0]["kind"] == "snapshot"

        # agent-1 cannot act for agent-3, even by naming it in data
        await ws1.send(orjson.dumps({"type": "session.focus", "data": {"agent_id": "agent-3", "session_id": "home"}}))
        reply = (await frames(ws1, lambda g: any(f["kind"] == "error" for f in g)))[-1]
        assert "may not act for agent-3" in reply["reason"]

        for i in range(4):
            await bus.publish(c.ConversationArrived(conversation_id=f"c-{i}", channel="chat"))
        await bus.wait_for(topics.SESSIONS, "offer.received", count=4)
        # agent-1's stream also carries its presence.updated events: wait for both offers
        got1 = await frames(ws1, lambda g: len([e for e in events_of(g) if e["type"] == "offer.received"]) >= 2)
        assert {e["data"]["agent_id"] for e in events_of(got1)} == {"agent-1"}
        sup_events = events_of(await frames(sup, lambda g: len(events_of(g)) >= 1))
        assert sup_events and all(e["data"]["agent_id"] == "agent-3" for e in sup_events)
        assert not [e async for e in _commands_for(bus, "agent-3")]  # nothing was published for agent-3

        # agent-1 accepts its offers through the socket, then drops mid-stream
        offers = [e for e in events_of(got1) if e["type"] == "offer.received"]
        await ws1.send(orjson.dumps({"type": "offer.accept", "data": {"offer_id": offers[0]["data"]["offer_id"]}}))
        got = await frames(ws1, lambda g: any(e["type"] == "session.started" for e in events_of(g)))
        seen = events_of(got1) + events_of(got)
        last = seen[-1]["data"]["seq"]
        await ws1.close()
        # while disconnected, more happens to agent-1
        await bus.publish(c.AcceptOffer(agent_id="agent-1", offer_id=offers[1]["data"]["offer_id"]))
        await bus.wait_for(topics.SESSIONS, "session.started", agent_id="agent-1", count=2)
        total = len(await bus.events(topics.SESSIONS, agent_id="agent-1"))

        ws1 = await ws_connect(host, "agent-1", t1, after_seq=last)
        resumed = await frames(ws1, lambda g: len(events_of(g)) >= total - last)
        assert resumed[0]["kind"] == "resumed"
        seqs = [e["data"]["seq"] for e in events_of(resumed)]
        assert seqs == list(range(last + 1, total + 1))  # no gap, no duplicate
        await ws1.close()
        await sup.close()
        ws3 = await ws_connect(host, "agent-3", t3)
        snap = (await frames(ws3, lambda g: len(g) >= 1))[0]
        assert snap["workspace"]["agent_id"] == "agent-3"
        await ws3.close()


async def _commands_for(bus: Bus, agent: str) -> AsyncIterator[c.CloudEvent]:
    for e in await bus.events(topics.SESSIONS_COMMANDS):
        if e.data.get("agent_id") == agent:
            yield e


async def test_agent_client_tails_kafka_from_the_snapshot(deployment, bus: Bus, config_file) -> None:
    app = sessions(deployment, config_file)
    async with (
        running(helpers.routing(deployment), helpers.presence(deployment), app.state.runtime),
        served(app) as host,
    ):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1"))
        await assigned_session(bus, "agent-1", "c-a", customer=c.Customer(name="Ada"))
        async with AgentClient(f"http://{host}", AUTH.mint("agent-1"), deployment.infra.bootstrap) as client:
            n = client.seq
            assert n > 0 and any(s["conversation_id"] == "c-a" for s in client.workspace["sessions"])
            await assigned_session(bus, "agent-1", "c-b", customer=c.Customer(name="Bob"))
            got: list[dict[str, Any]] = []
            async with asyncio.timeout(20):
                async for ev in client.events():
                    got.append(ev)
                    if ev["type"] == "session.started":
                        break
        assert [e["data"]["seq"] for e in got] == list(range(n + 1, n + 1 + len(got)))
        assert got[-1]["data"]["conversation_id"] == "c-b"
        with pytest.raises(PermissionError, match="agent-9 may not read agent-1"):
            await AgentClient(f"http://{host}", AUTH.mint("agent-9"), deployment.infra.bootstrap, "agent-1").load()


async def test_pick_a_waiting_conversation_or_be_told_why_not(deployment, bus: Bus, config_file) -> None:
    async with running(
        helpers.routing(deployment), helpers.presence(deployment), sessions(deployment, config_file).state.runtime
    ):
        # agent-4 is signed in but away: no offer comes to it, yet it may pick deliberately
        await bus.publish(c.AgentSignedIn(agent_id="agent-4"))
        await bus.publish(c.SetPresence(agent_id="agent-4", status="away"))
        await helpers.routing_sees(deployment, "agent-4", "away")
        await bus.publish(
            c.ConversationArrived(conversation_id="c-wait", channel="chat", customer=c.Customer(name="Grace Hopper"))
        )
        await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-wait")
        assert await bus.quiet(topics.ROUTING, "work.offered", seconds=1.0) == []
        pick = await bus.publish(c.OpenSession(agent_id="agent-4", conversation_id="c-wait"))
        started = await bus.wait_for(topics.SESSIONS, "session.started", conversation_id="c-wait")
        assert started[0].data["agent_id"] == "agent-4" and started[0].data["title"] == "Grace Hopper"
        assigned = await bus.wait_for(topics.ROUTING, "work.assigned", conversation_id="c-wait")
        assert assigned[0].data["how"] == "picked"
        # picking it again (it is no longer waiting) is refused with a reason, as command.rejected
        again = await bus.publish(c.OpenSession(agent_id="agent-5", conversation_id="c-wait"))
        reason = await rejection(bus, again)
        assert "cannot pick c-wait" in reason and "assigned" in reason
        assert pick.id != again.id


def test_oidc_tokens_are_checked_against_the_providers_jwks() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        auth = Auth("unused", f"http://127.0.0.1:{server.server_port}/jwks", "https://idp.example", "switchboard")
        claims = {
            "sub": "agent-7",
            "roles": ["agent", "supervisor"],
            "iss": "https://idp.example",
            "aud": "switchboard",
            "exp": 4102444800,
        }
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        principal = auth.verify(good)
        assert principal.subject == "agent-7" and principal.can_read("agent-1") and not principal.can_act("agent-1")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        from shared.auth import Unauthorised

        with pytest.raises(Unauthorised, match="invalid token"):
            auth.verify(jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"}))
        with pytest.raises(Unauthorised, match="invalid token"):
            auth.verify(jwt.encode({**claims, "aud": "someone-else"}, key, algorithm="RS256", headers={"kid": "k1"}))
        with pytest.raises(Unauthorised, match="invalid token"):
            auth.verify(AUTH.mint("agent-7"))  # an HS256 token is not accepted once OIDC is on
    finally:
        server.shutdown()
