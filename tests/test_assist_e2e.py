"""Assist (issue 6) on real Kafka and Postgres: hybrid retrieval, suggested replies with feedback,
summaries and case summaries on their triggers, debounce, and the LLM provider's fallback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from assist.app import create_app as assist_app
from assist.settings import AssistSettings
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tests import helpers
from tools.testing import Bus, Deployment, running, served

pytestmark = pytest.mark.e2e

AGENT = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-1')}"}
LEAD = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('km-1', ('supervisor',))}"}
DUPLICATE_CHARGE = (
    "Hello, I was charged twice for order 1234.",
    "The same amount of $59.90 appears two times on my card. Can I get the duplicate refunded?",
)


def assist(dep: Deployment, **kw: object):  # type: ignore[no-untyped-def]
    return assist_app(dep.settings(AssistSettings, "assist", config_file=helpers.DEMO_CONFIG, **kw))


def client(app) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://assist")


async def say(bus: Bus, cid: str, *texts: str, sender: str = "customer", **kw: object) -> None:
    for text in texts:
        await bus.publish(c.MessagePosted(conversation_id=cid, sender=sender, text=text, **kw))  # type: ignore[arg-type]


async def test_duplicate_charge_surfaces_the_refund_article_suggests_the_reply_and_summarises(
    deployment: Deployment, bus: Bus
) -> None:
    app = assist(deployment)
    async with running(app.state.runtime):
        await bus.publish(
            c.ConversationArrived(
                conversation_id="c-dup",
                channel="chat",
                subject="Charged twice",
                customer=c.Customer(name="Ada Lovelace"),
            )
        )
        await say(bus, "c-dup", *DUPLICATE_CHARGE)
        surfaced = await bus.wait_for(topics.ASSIST, "assist.articles_surfaced", conversation_id="c-dup")
        top3 = [a["id"] for a in surfaced[-1].data["articles"]]
        assert "refund-duplicate-charge" in top3, top3
        assert all({"id", "title", "score"} <= set(a) for a in surfaced[-1].data["articles"])
        assert surfaced[-1].data["provider"] == "embedded" and "MiniLM" in surfaced[-1].data["model"]

        suggested = await bus.wait_for(topics.ASSIST, "assist.replies_suggested", conversation_id="c-dup")
        replies = suggested[-1].data["replies"]
        best = next(r for r in replies if r["reply_id"] == "duplicate-charge-refund")
        assert "order 1234" in best["text"] and "$59.90" in best["text"], best  # slots filled from the conversation
        assert best["suggestion_id"] and best["source"] == "library"

        # Debounced: the burst of two messages gave one update of each kind.
        await bus.quiet(topics.ASSIST, seconds=1.0, conversation_id="c-dup")
        assert len(await bus.events(topics.ASSIST, "assist.replies_suggested", conversation_id="c-dup")) == 1
        assert len(await bus.events(topics.ASSIST, "assist.articles_surfaced", conversation_id="c-dup")) == 1

        # Opened by an agent: the summary for them keeps the order number.
        await bus.publish(c.WorkAssigned(agent_id="agent-1", conversation_id="c-dup", channel="chat", queue="billing"))
        summary = (await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-dup"))[-1].data
        assert summary["trigger"] == "new_agent" and summary["agent_id"] == "agent-1"
        assert "1234" in summary["summary"] and "1234" in summary["entities"]["order_numbers"]
        assert "$59.90" in summary["entities"]["amounts"]
        assert summary["intent"] == "refund_request"
        assert (summary["provider"], summary["model"]) == ("embedded", "textrank")

        for ev in await bus.events(topics.ASSIST, conversation_id="c-dup"):
            assert len(ev.to_bytes()) < 4096, (ev.type, len(ev.to_bytes()))  # small enough for an agent's client


async def test_feedback_is_recorded_and_agents_replies_are_learned(deployment: Deployment, bus: Bus) -> None:
    app = assist(deployment)
    async with running(app.state.runtime), client(app) as http:
        await bus.publish(
            c.ConversationArrived(conversation_id="c-a", channel="chat", customer=c.Customer(name="Bo Li"))
        )
        await bus.publish(c.WorkAssigned(agent_id="agent-1", conversation_id="c-a", channel="chat", queue="support"))
        await say(bus, "c-a", "My parcel is late, it was due on Monday. Order 777.")
        ev = (await bus.wait_for(topics.ASSIST, "assist.replies_suggested", conversation_id="c-a"))[-1].data
        first, second = ev["replies"][0], ev["replies"][1]
        # Sending a suggestion as it is counts as accepted; the rejected one is counted against it.
        await say(bus, "c-a", first["text"], sender="agent", sender_id="agent-1", suggestion_id=first["suggestion_id"])
        r = await http.post(
            f"/suggestions/{second['suggestion_id']}/feedback", json={"verdict": "rejected"}, headers=AGENT
        )
        assert r.json() == {"suggestion_id": second["suggestion_id"], "verdict": "rejected"}
        again = await http.post(
            f"/suggestions/{second['suggestion_id']}/feedback", json={"verdict": "accepted"}, headers=AGENT
        )
        assert again.status_code == 409 and "already rejected" in again.json()["error"]
        assert (
            await http.post("/suggestions/nope/feedback", json={"verdict": "rejected"}, headers=AGENT)
        ).status_code == 404
        assert (
            await http.post(f"/suggestions/{first['suggestion_id']}/feedback", json={"verdict": "meh"}, headers=AGENT)
        ).status_code == 422
        assert (
            await http.post(f"/suggestions/{first['suggestion_id']}/feedback", json={"verdict": "rejected"})
        ).status_code == 401

        async def stats() -> dict[str, dict[str, int]]:
            return {r["id"]: r for r in (await http.get("/replies", headers=AGENT)).json()["replies"]}

        for _ in range(100):
            s = await stats()
            if s[first["reply_id"]]["accepted"] == 1:
                break
            await asyncio.sleep(0.05)
        assert s[first["reply_id"]]["accepted"] == 1 and s[second["reply_id"]]["rejected"] == 1

        # An answer the library does not have, sent by an agent, is suggested in the next conversation,
        # with that customer's name and order number turned back into slots and filled anew.
        await say(bus, "c-a", "Also, do you ship to Norway? I'm moving to Oslo next month.")
        await say(
            bus,
            "c-a",
            "Yes Bo, we ship to Norway: delivery takes 5 to 7 business days and import duty is included for order 777.",
            sender="agent",
            sender_id="agent-1",
        )
        await bus.publish(
            c.ConversationArrived(conversation_id="c-b", channel="chat", customer=c.Customer(name="Kari Nordmann"))
        )
        await say(bus, "c-b", "Can you deliver to Norway? My order number is 888.")
        learned = None
        for attempt in range(1, 4):
            ev = (await bus.wait_for(topics.ASSIST, "assist.replies_suggested", conversation_id="c-b", count=attempt))[
                -1
            ].data
            learned = next((r for r in ev["replies"] if r["source"] == "history"), None)
            if learned:
                break
            # c-a's update learns it, possibly while c-b's runs: the next one of c-b's sees it.
            await say(bus, "c-b", "Do you ship to Norway?")
        assert learned is not None, ev["replies"]
        assert learned["text"].startswith("Yes Kari, we ship to Norway") and "order 888" in learned["text"], learned


async def test_case_summary_at_close_is_reviewed_and_saved(deployment: Deployment, bus: Bus) -> None:
    app = assist(deployment)
    async with running(app.state.runtime), client(app) as http:
        await bus.publish(
            c.ConversationArrived(conversation_id="c-case", channel="chat", customer=c.Customer(name="Ada Lovelace"))
        )
        await say(bus, "c-case", *DUPLICATE_CHARGE)
        await say(
            bus,
            "c-case",
            "I'm sorry about that. I've refunded the duplicate payment of $59.90 to your card.",
            "The refund has been processed and you will see it within 3 to 5 business days.",
            sender="agent",
            sender_id="agent-1",
        )
        await say(bus, "c-case", "Great, thank you!")
        await bus.wait_for(topics.ASSIST, "assist.replies_suggested", conversation_id="c-case", count=1)
        await bus.publish(
            c.WorkReleased(agent_id="agent-1", conversation_id="c-case", channel="chat", reason="session_closed")
        )
        ev = (await bus.wait_for(topics.ASSIST, "assist.case_summary_drafted", conversation_id="c-case"))[-1].data
        draft = ev["draft"]
        assert ev["trigger"] == "closed" and ev["agent_id"] == "agent-1" and ev["provider"] == "embedded"
        assert "charged twice" in draft["issue"] and "1234" in draft["entities"]["order_numbers"]
        assert any("refunded the duplicate" in a for a in draft["actions"]), draft
        assert "has been processed" in draft["resolution"] and draft["outcome"] == "resolved"
        assert draft["intent"] == "refund_request"

        # The same close reported twice (released, then ended) does not draft twice.
        await bus.publish(c.ConversationEnded(conversation_id="c-case", reason="resolved"))
        await bus.quiet(topics.ASSIST, "assist.case_summary_drafted", seconds=1.0, conversation_id="c-case")
        assert len(await bus.events(topics.ASSIST, "assist.case_summary_drafted", conversation_id="c-case")) == 1

        reviewed = {**draft, "issue": "Customer was charged twice for order 1234 ($59.90)."}
        assert (
            await http.put("/conversations/c-case/case-summary", json={"issue": ""}, headers=AGENT)
        ).status_code == 422
        saved = (await http.put("/conversations/c-case/case-summary", json=reviewed, headers=AGENT)).json()
        assert saved["status"] == "saved" and saved["saved_by"] == "agent-1"
        assert saved["saved"]["issue"].startswith("Customer was charged twice")
        assert (await http.get("/conversations/nope/case-summary", headers=LEAD)).status_code == 404
        assert (await http.get("/conversations/c-case/case-summary")).status_code == 401


async def test_transfer_gives_the_new_agent_a_summary_and_the_old_one_a_handoff_draft(
    deployment: Deployment, bus: Bus
) -> None:
    app = assist(deployment)
    async with running(app.state.runtime), client(app) as http:
        await bus.publish(c.ConversationArrived(conversation_id="c-t", channel="chat", subject="Locked out"))
        await say(
            bus,
            "c-t",
            "I can't sign in, it says my account is locked after too many attempts. My email is bo@example.com",
        )
        await bus.publish(c.WorkAssigned(agent_id="agent-1", conversation_id="c-t", channel="chat", queue="support"))
        await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-t", trigger="new_agent")
        await bus.publish(
            c.WorkReleased(agent_id="agent-1", conversation_id="c-t", channel="chat", reason="transferred")
        )
        await bus.publish(
            c.WorkAssigned(
                agent_id="agent-2", conversation_id="c-t", channel="chat", queue="support", how="transferred"
            )
        )
        handoff = (await bus.wait_for(topics.ASSIST, "assist.case_summary_drafted", conversation_id="c-t"))[-1].data
        assert handoff["trigger"] == "transferred" and handoff["agent_id"] == "agent-1"
        assert handoff["draft"]["outcome"] == "handed_off" and handoff["draft"]["intent"] == "account_access"
        summary = (
            await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-t", trigger="transferred")
        )[-1]
        assert summary.data["agent_id"] == "agent-2" and "bo@example.com" in summary.data["entities"]["emails"]

        # Escalated to another queue by overflow: a draft for the next tier.
        await bus.publish(
            c.WorkOverflowed(conversation_id="c-t", from_queue="support", to_queue="tier-2", reason="waited")
        )
        escalated = await bus.wait_for(
            topics.ASSIST, "assist.case_summary_drafted", conversation_id="c-t", trigger="escalated"
        )
        assert escalated[-1].data["draft"]["outcome"] == "handed_off"

        # On demand, for whoever asks (with a token), now.
        assert (await http.post("/conversations/c-t/summary")).status_code == 401
        asked = (await http.post("/conversations/c-t/summary", headers=AGENT)).json()
        assert asked["trigger"] == "requested" and "locked" in asked["summary"]
        assert (await http.post("/conversations/none/summary", headers=LEAD)).status_code == 404
        # agent-2 holds it now, agent-1 held it; agent-3 never did.
        agent3 = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-3')}"}
        refused = await http.get("/conversations/c-t/summary", headers=agent3)
        assert refused.status_code == 403 and "agent-3 has not held conversation 'c-t'" in refused.json()["error"]


async def test_search_and_article_management(deployment: Deployment) -> None:
    app = assist(deployment)
    async with running(app.state.runtime), client(app) as http:
        assert (await http.get("/kb/search", params={"q": "password"})).status_code == 401
        hits = (await http.get("/kb/search", params={"q": "forgot my password, cannot sign in"}, headers=AGENT)).json()[
            "articles"
        ]
        assert {"password-reset", "account-locked"} == {a["id"] for a in hits[:2]}, hits  # a near tie of the two
        # No shared word with the article ("parcel", "delivered"): the dense half of the ranking finds it.
        hits = (
            await http.get(
                "/kb/search", params={"q": "the courier says it was dropped off but nothing came"}, headers=AGENT
            )
        ).json()
        assert "missing-parcel" in [a["id"] for a in hits["articles"][:3]], hits
        assert (await http.get("/kb/search", headers=AGENT)).status_code == 400
        article = {
            "id": "warranty",
            "title": "Warranty claims",
            "body": "Products have a two year warranty.",
            "tags": ["warranty"],
        }
        assert (await http.post("/kb/articles", json=article, headers=AGENT)).status_code == 403
        bad = await http.post("/kb/articles", json={**article, "id": "has spaces"}, headers=LEAD)
        assert bad.status_code == 422 and "invalid article" in bad.json()["error"]
        assert (await http.post("/kb/articles", json=article, headers=LEAD)).json() == {"created": 1, "updated": 0}
        found = (await http.get("/kb/search", params={"q": "warranty claim"}, headers=AGENT)).json()
        assert found["articles"][0]["id"] == "warranty"
        assert (await http.get("/kb/articles/warranty", headers=AGENT)).json()["title"] == "Warranty claims"
        assert (await http.get("/kb/articles/warranty")).status_code == 401
        reply = {
            "id": "warranty-reply",
            "title": "Warranty",
            "text": "Your product has a two year warranty.",
            "examples": ["Is it under warranty?"],
        }
        assert (await http.post("/replies", json=reply, headers=AGENT)).status_code == 403
        assert (await http.post("/replies", json=reply, headers=LEAD)).json() == {"created": 1, "updated": 0}
        assert (await http.post("/replies", json={**reply, "text": ""}, headers=LEAD)).status_code == 422


# --- the OpenAI-compatible provider, against a local fake endpoint ------------------------------------


@contextlib.asynccontextmanager
async def fake_llm(delay_s: float) -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """An OpenAI-compatible /v1/chat/completions that answers after `delay_s`."""
    calls: list[dict[str, object]] = []

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        calls.append(body)
        await asyncio.sleep(delay_s)
        system = body["messages"][0]["content"]
        if "JSON" in system:
            content = json.dumps(
                {
                    "issue": "Charged twice for order 1234.",
                    "actions": ["Refunded $59.90"],
                    "resolution": "Refunded",
                    "next_steps": [],
                }
            )
        else:
            content = "The customer was charged twice for order 1234 and wants the duplicate $59.90 refunded."
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": content}}]})

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    async with served(app, lifespan="auto") as host:
        yield f"http://{host}/v1", calls


async def test_an_llm_that_times_out_falls_back_to_the_embedded_path(deployment: Deployment, bus: Bus) -> None:
    async with fake_llm(delay_s=5.0) as (url, calls):
        app = assist(deployment, llm_base_url=url, llm_model="fake-gpt", llm_timeout_s=0.5)
        async with running(app.state.runtime), client(app) as http:
            await bus.publish(c.ConversationArrived(conversation_id="c-slow", channel="chat"))
            await say(bus, "c-slow", *DUPLICATE_CHARGE)
            await bus.wait_for(topics.ASSIST, "assist.articles_surfaced", conversation_id="c-slow")
            asked = (await http.post("/conversations/c-slow/summary", headers=LEAD)).json()
            assert len(calls) == 1  # the endpoint was asked...
            assert (asked["provider"], asked["model"]) == ("embedded", "textrank")  # ...and the embedded path answered
            assert "1234" in asked["summary"]
            ev = (await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-slow"))[-1].data
            assert ev["provider"] == "embedded" and ev["fallback"] == "no answer within 0.5 s"
            # While it cools down it is not asked again: no second 0.5 s wait.
            await bus.publish(
                c.WorkReleased(agent_id="agent-1", conversation_id="c-slow", channel="chat", reason="session_closed")
            )
            case = (await bus.wait_for(topics.ASSIST, "assist.case_summary_drafted", conversation_id="c-slow"))[-1].data
            assert case["provider"] == "embedded" and "cooling down" in case["fallback"] and len(calls) == 1


async def test_a_working_llm_is_used_and_named(deployment: Deployment, bus: Bus) -> None:
    async with fake_llm(delay_s=0.0) as (url, calls):
        app = assist(deployment, llm_base_url=url, llm_model="fake-gpt", llm_timeout_s=5.0)
        async with running(app.state.runtime), client(app) as http:
            await bus.publish(c.ConversationArrived(conversation_id="c-llm", channel="chat"))
            await say(bus, "c-llm", *DUPLICATE_CHARGE)
            await bus.wait_for(topics.ASSIST, "assist.articles_surfaced", conversation_id="c-llm")
            asked = (await http.post("/conversations/c-llm/summary", headers=LEAD)).json()
            assert (asked["provider"], asked["model"]) == ("openai-compatible", "fake-gpt")
            assert asked["summary"].startswith("The customer was charged twice")
            assert asked["entities"]["order_numbers"] == ["1234"]  # entities stay deterministic
            drafted = (await http.post("/conversations/c-llm/case-summary", headers=LEAD)).json()
            assert (
                drafted["provider"] == "openai-compatible"
                and drafted["draft"]["issue"] == "Charged twice for order 1234."
            )
            assert calls[0]["model"] == "fake-gpt"
