"""Assist (issue 6, first part) on real Kafka and Postgres: the knowledge base and surfacing."""

from __future__ import annotations

import httpx
import pytest

from assist.app import create_app as assist_app
from assist.settings import AssistSettings
from shared import contracts as c
from shared import topics
from shared.auth import DEV_SECRET, Auth
from shared.testing import Bus, Deployment, running
from tests import helpers

pytestmark = pytest.mark.e2e


def assist(dep: Deployment):  # type: ignore[no-untyped-def]
    return assist_app(dep.settings(AssistSettings, "assist", config_file=helpers.DEMO_CONFIG))


async def test_duplicate_charge_surfaces_the_refund_article_and_keeps_the_order_number(deployment, bus: Bus) -> None:
    app = assist(deployment)
    async with running(app.state.runtime):
        await bus.publish(c.ConversationArrived(conversation_id="c-dup", channel="chat", subject="Charged twice"))
        for text in (
            "Hello, I was charged twice for order 1234.",
            "The same amount of $59.90 appears two times on my card. Can I get the duplicate refunded?",
        ):
            await bus.publish(c.MessagePosted(conversation_id="c-dup", sender="customer", text=text))
        surfaced = await bus.wait_for(topics.ASSIST, "assist.articles_surfaced", conversation_id="c-dup")
        top3 = [a["id"] for a in surfaced[-1].data["articles"]]
        assert "refund-duplicate-charge" in top3, top3
        assert all({"id", "title", "score"} <= set(a) for a in surfaced[-1].data["articles"])
        summary = await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-dup")
        assert "1234" in summary[-1].data["entities"]["order_numbers"]
        assert "1234" in summary[-1].data["summary"]


async def test_search_and_article_management(deployment) -> None:
    app = assist(deployment)
    async with (
        running(app.state.runtime),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://assist") as http,
    ):
        hits = (await http.get("/kb/search", params={"q": "forgot my password, cannot sign in"})).json()["articles"]
        assert hits[0]["id"] == "password-reset"
        assert (await http.get("/kb/search")).status_code == 400
        article = {
            "id": "warranty",
            "title": "Warranty claims",
            "body": "Products have a two year warranty.",
            "tags": ["warranty"],
        }
        agent = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-1')}"}
        lead = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('km-1', ('supervisor',))}"}
        assert (await http.post("/kb/articles", json=article, headers=agent)).status_code == 403
        bad = await http.post("/kb/articles", json={**article, "id": "has spaces"}, headers=lead)
        assert bad.status_code == 422 and "invalid article" in bad.json()["error"]
        assert (await http.post("/kb/articles", json=article, headers=lead)).json() == {"created": 1, "updated": 0}
        assert (await http.get("/kb/search", params={"q": "warranty claim"})).json()["articles"][0]["id"] == "warranty"
        assert (await http.get("/kb/articles/warranty")).json()["title"] == "Warranty claims"
