"""assist's flows on the test broker with the fake store: conversations followed, the debounced
update (articles, replies), summaries for a new agent, case drafts on release, and the HTTP API.
The embedded encoder runs for real (offline, in the package) on the demo knowledge base."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from assist import config, domain
from assist.app import create_app
from assist.followup import EMBED_CHUNK, Pace
from assist.knowledge import Knowledge
from assist.service import AssistService
from assist.settings import AssistSettings
from assist.store import FakeAssistStore
from assist.summaries import QUICK_SUMMARY_MODEL
from shared import contracts as c
from shared.auth import DEV_SECRET, Auth
from shared.config import ConfigError
from shared.tx import MemoryDatabase
from tools import stack
from tools.testing import MemoryBus, in_memory

DEMO_CONFIG = str(stack.ROOT / "deploy/demo/switchboard.yaml")
AGENT = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-1')}"}
LEAD = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('km-1', ('supervisor',))}"}
DUPLICATE_CHARGE = (
    "Hello, I was charged twice for order 1234.",
    "The same amount of $59.90 appears two times on my card. Can I get the duplicate refunded?",
)


@dataclass
class Assist:
    bus: MemoryBus
    fake: FakeAssistStore
    service: AssistService
    http: httpx.AsyncClient

    async def say(self, cid: str, *texts: str, sender: str = "customer", **kw: object) -> None:
        for text in texts:
            await self.bus.send(c.MessagePosted(conversation_id=cid, sender=sender, text=text, **kw))  # type: ignore[arg-type]

    async def debounce(self) -> int:
        """Let the debounce pass, then run the debouncer's step as its loop would, and wait for the
        updates it started."""
        self.fake.advance(5.0)
        started = await self.service.followup.step()
        await self.service.followup.settle()
        return started

    async def assign(self, cid: str, agent_id: str = "agent-1") -> None:
        await self.bus.send(c.WorkAssigned(agent_id=agent_id, conversation_id=cid, channel="chat", queue="billing"))

    def types(self, cid: str) -> list[str]:
        return [e.type for e in self.bus.emitted() if e.data.get("conversation_id") == cid]


@pytest.fixture(scope="module")
async def demo_content() -> FakeAssistStore:
    """The demo knowledge base and reply library, encoded once for the module (it takes seconds)."""
    fake = FakeAssistStore()
    cfg = config.load(DEMO_CONFIG)
    assert cfg.knowledge_base and cfg.reply_library
    await Knowledge().load_knowledge_base(fake, config.resolve(cfg.knowledge_base, DEMO_CONFIG))
    await Knowledge().load_reply_library(fake, config.resolve(cfg.reply_library, DEMO_CONFIG))
    return fake


@pytest.fixture
async def assist(demo_content: FakeAssistStore, tmp_path: Path) -> AsyncIterator[Assist]:
    fake = copy.deepcopy(demo_content)
    (tmp_path / "switchboard.yaml").write_text("assist: {}\n")
    settings = AssistSettings(config_file=str(tmp_path / "switchboard.yaml"))
    app = create_app(settings, database=MemoryDatabase(fake))
    async with in_memory(app.state.runtime) as bus:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://assist") as http:
            yield Assist(bus, fake, app.state.assist, http)


async def test_a_burst_of_messages_gives_one_update_with_articles_and_replies(assist: Assist) -> None:
    await assist.bus.send(
        c.ConversationArrived(
            conversation_id="c-dup", channel="chat", subject="Charged twice", customer=c.Customer(name="Ada Lovelace")
        )
    )
    await assist.say("c-dup", *DUPLICATE_CHARGE)
    assert await assist.service.followup.step() == 0  # still within the debounce
    await assist.service.followup.settle()
    assert assist.types("c-dup") == []
    assert await assist.debounce() == 1
    assert assist.types("c-dup") == ["assist.articles_surfaced", "assist.replies_suggested"]

    surfaced = assist.bus.emitted("assist.articles_surfaced")[-1].data
    assert "refund-duplicate-charge" in [a["id"] for a in surfaced["articles"]]
    replies = assist.bus.emitted("assist.replies_suggested")[-1].data["replies"]
    best = next(r for r in replies if r["reply_id"] == "duplicate-charge-refund")
    assert "order 1234" in best["text"] and "$59.90" in best["text"] and best["suggestion_id"]
    assert await assist.debounce() == 0  # nothing more to do

    # The agent sends the suggestion as it is: accepted, counted on the reply.
    await assist.say("c-dup", best["text"], sender="agent", sender_id="agent-1", suggestion_id=best["suggestion_id"])
    assert assist.fake.replies["duplicate-charge-refund"]["accepted"] == 1
    await assist.debounce()
    assert assist.types("c-dup").count("assist.replies_suggested") == 1  # the agent had the last word


async def test_a_new_agent_gets_a_summary_and_the_releasing_one_a_case_draft(assist: Assist) -> None:
    await assist.bus.send(
        c.ConversationArrived(conversation_id="c-1", channel="chat", customer=c.Customer(name="Ada Lovelace"))
    )
    # Assigned before anyone wrote: the summary waits for the first message.
    await assist.bus.send(c.WorkAssigned(agent_id="agent-1", conversation_id="c-1", channel="chat", queue="billing"))
    assert await assist.debounce() == 0
    await assist.say("c-1", *DUPLICATE_CHARGE)
    await assist.debounce()
    summary = assist.bus.emitted("assist.summary_ready")[-1].data
    assert (summary["trigger"], summary["agent_id"], summary["intent"]) == ("new_agent", "agent-1", "refund_request")
    assert "1234" in summary["entities"]["order_numbers"]

    await assist.say(
        "c-1",
        "I'm sorry about that. I've refunded the duplicate payment of $59.90 to your card.",
        "The refund has been processed and you will see it within 3 to 5 business days.",
        sender="agent",
        sender_id="agent-1",
    )
    await assist.bus.send(
        c.WorkReleased(agent_id="agent-1", conversation_id="c-1", channel="chat", reason="session_closed")
    )
    await assist.debounce()
    case = assist.bus.emitted("assist.case_summary_drafted")[-1].data
    assert (case["trigger"], case["agent_id"], case["draft"]["outcome"]) == ("closed", "agent-1", "resolved")
    # The same close reported again does not draft twice.
    await assist.bus.send(c.ConversationEnded(conversation_id="c-1", reason="resolved"))
    await assist.debounce()
    assert assist.types("c-1").count("assist.case_summary_drafted") == 1

    # Reviewed and saved by the agent; read back over HTTP.
    reviewed = {**case["draft"], "issue": "Charged twice for order 1234."}
    saved = (await assist.http.put("/conversations/c-1/case-summary", json=reviewed, headers=AGENT)).json()
    assert saved["status"] == "saved" and saved["saved"]["issue"] == "Charged twice for order 1234."
    got = (await assist.http.get("/conversations/c-1/summary", headers=AGENT)).json()
    assert got["conversation_id"] == "c-1" and got["trigger"] == "new_agent"


async def test_a_customer_asking_for_a_manager_and_upset_is_flagged_once(assist: Assist) -> None:
    await assist.bus.send(c.ConversationArrived(conversation_id="c-esc", channel="chat"))
    await assist.bus.send(c.ConversationArrived(conversation_id="c-calm", channel="chat"))
    await assist.say("c-esc", "My parcel is late, order 777.", "This is ridiculous, I want to speak to a manager")
    await assist.say("c-calm", "Hello, my parcel is late. Order 778.", "Thanks, that is helpful!")
    await assist.debounce()
    flagged = assist.bus.emitted("assist.escalation_detected")
    assert len(flagged) == 1
    assert flagged[0].data["conversation_id"] == "c-esc"
    assert flagged[0].data["signals"] == ["asks_for_manager", "upset"]
    assert flagged[0].data["excerpt"] == "This is ridiculous, I want to speak to a manager"
    message_id = flagged[0].data["message_id"]
    assert assist.fake.messages["c-esc"][message_id]["text"].startswith("This is ridiculous")

    # Upset again, and the same message delivered twice: nothing new to flag.
    await assist.say("c-esc", "still waiting!!!")
    await assist.bus.send(
        c.MessagePosted(conversation_id="c-esc", message_id=message_id, sender="customer", text="This is ridiculous")
    )
    await assist.say("c-calm", "Still fine, no need for a manager.")
    await assist.debounce()
    assert len(assist.bus.emitted("assist.escalation_detected")) == 1
    assert assist.types("c-calm").count("assist.escalation_detected") == 0


async def test_the_http_api_on_the_fake_store(assist: Assist) -> None:
    http = assist.http
    await assist.bus.send(c.ConversationArrived(conversation_id="c-h", channel="chat"))
    await assist.assign("c-h")
    await assist.say("c-h", "My parcel is late, it was due on Monday. Order 777.")
    await assist.debounce()
    first, second = assist.bus.emitted("assist.replies_suggested")[-1].data["replies"][:2]

    r = await http.post(f"/suggestions/{second['suggestion_id']}/feedback", json={"verdict": "rejected"}, headers=AGENT)
    assert r.json() == {"suggestion_id": second["suggestion_id"], "verdict": "rejected"}
    again = await http.post(
        f"/suggestions/{second['suggestion_id']}/feedback", json={"verdict": "edited"}, headers=AGENT
    )
    assert again.status_code == 409 and "already rejected" in again.json()["error"]
    assert (
        await http.post("/suggestions/nope/feedback", json={"verdict": "rejected"}, headers=AGENT)
    ).status_code == 404
    stats = {r["id"]: r for r in (await http.get("/replies", headers=AGENT)).json()["replies"]}
    assert stats[second["reply_id"]]["rejected"] == 1 and stats[first["reply_id"]]["shown"] == 1

    asked = (await http.post("/conversations/c-h/summary", headers=AGENT)).json()
    assert asked["trigger"] == "requested" and "777" in asked["entities"]["order_numbers"]
    assert (await http.post("/conversations/none/summary", headers=LEAD)).status_code == 404
    drafted = (await http.post("/conversations/c-h/case-summary", headers=AGENT)).json()
    assert drafted["status"] == "draft" and drafted["trigger"] == "requested"

    article = {"id": "warranty", "title": "Warranty claims", "body": "Products have a two year warranty."}
    assert (await http.post("/kb/articles", json=article, headers=AGENT)).status_code == 403
    assert (await http.post("/kb/articles", json=article, headers=LEAD)).json() == {"created": 1, "updated": 0}
    hits = (await http.get("/kb/search", params={"q": "warranty claim"}, headers=AGENT)).json()["articles"]
    assert hits[0]["id"] == "warranty"
    assert (await http.get("/kb/articles/warranty", headers=AGENT)).json()["title"] == "Warranty claims"
    assert (await http.get("/kb/articles/nope", headers=AGENT)).status_code == 404


OTHER = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-2')}"}
CUSTOMER = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('cust-1', ('customer',))}"}


async def test_every_read_needs_a_token_and_agents_see_only_what_they_hold_or_held(assist: Assist) -> None:
    http = assist.http
    await assist.bus.send(c.ConversationArrived(conversation_id="c-p", channel="chat"))
    await assist.assign("c-p", "agent-1")
    await assist.say("c-p", *DUPLICATE_CHARGE)
    await assist.debounce()
    suggestion = assist.bus.emitted("assist.replies_suggested")[-1].data["replies"][0]["suggestion_id"]
    reads = [
        ("GET", "/conversations/c-p/summary"),
        ("GET", "/conversations/c-p/case-summary"),
        ("GET", "/kb/search?q=refund"),
        ("GET", "/kb/articles/refund-duplicate-charge"),
        ("GET", "/replies"),
    ]
    for method, path in reads:
        refused = await http.request(method, path)
        assert refused.status_code == 401 and "token" in refused.json()["error"], (path, refused.text)
        bad = await http.request(method, path, headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401, path
        assert (await http.request(method, path, headers=CUSTOMER)).status_code == 403, path

    # agent-2 never held c-p: its summaries and suggestions are not theirs, whether or not they exist.
    for method, path in [
        ("GET", "/conversations/c-p/summary"),
        ("POST", "/conversations/c-p/summary"),
        ("GET", "/conversations/c-p/case-summary"),
        ("POST", "/conversations/c-p/case-summary"),
        ("GET", "/conversations/c-unknown/summary"),
    ]:
        r = await http.request(method, path, headers=OTHER)
        assert r.status_code == 403 and "agent-2 has not held conversation" in r.json()["error"], (path, r.text)
    r = await http.post(f"/suggestions/{suggestion}/feedback", json={"verdict": "rejected"}, headers=OTHER)
    assert r.status_code == 403 and "has not held conversation 'c-p'" in r.json()["error"]
    # Knowledge is for every agent.
    assert (await http.get("/kb/search", params={"q": "refund"}, headers=OTHER)).status_code == 200

    # Transferred to agent-2: both read it now; agent-1 held it.
    await assist.bus.send(
        c.WorkReleased(agent_id="agent-1", conversation_id="c-p", channel="chat", reason="transferred")
    )
    await assist.bus.send(
        c.WorkAssigned(
            agent_id="agent-2",
            conversation_id="c-p",
            channel="chat",
            queue="billing",
            how="transferred",
            previous_agent_id="agent-1",
        )
    )
    await assist.debounce()
    handoff = assist.bus.emitted("assist.case_summary_drafted")[-1].data
    assert handoff["agent_id"] == "agent-1"
    for headers in (AGENT, OTHER, LEAD):
        assert (await http.get("/conversations/c-p/case-summary", headers=headers)).status_code == 200
    # Saving: the holder (agent-2), the agent the draft is for (agent-1), a supervisor; nobody else.
    reviewed = {**handoff["draft"], "issue": "Charged twice."}
    for headers, who in ((AGENT, "agent-1"), (OTHER, "agent-2"), (LEAD, "km-1")):
        saved = await http.put("/conversations/c-p/case-summary", json=reviewed, headers=headers)
        assert saved.status_code == 200 and saved.json()["saved_by"] == who, saved.text
    third = {"Authorization": f"Bearer {Auth(DEV_SECRET).mint('agent-3')}"}
    assert (await http.put("/conversations/c-p/case-summary", json=reviewed, headers=third)).status_code == 403
    # Transferred on to agent-3 (who holds it now): agent-3 saves it, agent-2 (who held it) no longer may.
    await assist.bus.send(
        c.WorkAssigned(
            agent_id="agent-3", conversation_id="c-p", channel="chat", queue="x", previous_agent_id="agent-2"
        )
    )
    assert (await http.put("/conversations/c-p/case-summary", json=reviewed, headers=OTHER)).status_code == 403
    assert (await http.get("/conversations/c-p/case-summary", headers=OTHER)).status_code == 200
    assert (await http.put("/conversations/c-p/case-summary", json=reviewed, headers=third)).status_code == 200

    # Writing knowledge needs the supervisor role; a body too big is refused before it is read.
    article = {"id": "a-1", "title": "T", "body": "B"}
    assert (await http.post("/kb/articles", json=article)).status_code == 401
    assert (await http.post("/replies", json={}, headers=AGENT)).status_code == 403
    huge = await http.post(
        "/kb/articles",
        content=b"[" + b" " * (5 * 1024 * 1024) + b"]",
        headers={**LEAD, "content-type": "application/json"},
    )
    assert huge.status_code == 413 and "bytes" in huge.json()["error"]
    not_json = await http.post("/suggestions/x/feedback", content=b"{", headers=AGENT)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]


async def test_the_configuration_loads_the_content_and_refuses_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "replies.yaml").write_text(
        "replies:\n  - id: hello\n    title: Greeting\n    text: Hello {first_name}!\n"
    )
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("---\nid: a\ntitle: Warranty\n---\nTwo years of warranty.\n")
    good = tmp_path / "good.yaml"
    good.write_text("assist:\n  knowledge_base: kb\n  reply_library: replies.yaml\n")
    fake = FakeAssistStore()
    async with in_memory(
        create_app(AssistSettings(config_file=str(good)), database=MemoryDatabase(fake)).state.runtime
    ):
        assert list(fake.articles) == ["a"] and list(fake.replies) == ["hello"]  # relative to the file

    bad = tmp_path / "bad.yaml"
    bad.write_text("routing: {}\nassist:\n  knowledge_bse: kb\n")
    with pytest.raises(ConfigError, match=r"line 3: assist.knowledge_bse: Extra inputs are not permitted"):
        create_app(AssistSettings(config_file=str(bad)), database=MemoryDatabase(FakeAssistStore()))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_update_out_of_time_takes_the_cheap_path_and_finishes_on_the_next(assist: Assist) -> None:
    follow = assist.service.followup
    follow.pace = Pace(budget_s=0.0, limits=follow.pace.limits, concurrency=follow.pace.concurrency)
    over = sample("switchboard_assist_update_budget_exceeded_total", step="embedding")
    timed = sample("switchboard_assist_update_seconds_count", kind="articles")
    await assist.bus.send(c.ConversationArrived(conversation_id="c-slow", channel="chat"))
    await assist.say("c-slow", *[f"Message {i}: my parcel for order {100 + i} is late." for i in range(20)])
    await assist.assign("c-slow")
    await assist.debounce()
    vectors = [m["vector"] for m in assist.fake.messages["c-slow"].values()]
    assert sum(v is not None for v in vectors) == EMBED_CHUNK  # the latest chunk, then out of time
    summary = assist.bus.emitted("assist.summary_ready")[-1].data
    assert summary["model"] == QUICK_SUMMARY_MODEL and "order" in summary["summary"]
    assert sample("switchboard_assist_update_budget_exceeded_total", step="embedding") == over + 1
    assert sample("switchboard_assist_update_seconds_count", kind="articles") == timed + 1
    # Rescheduled at once: the next updates embed the rest.
    while await assist.debounce():
        pass
    assert all(m["vector"] is not None for m in assist.fake.messages["c-slow"].values())


async def test_a_slow_update_does_not_hold_back_another_conversation(
    assist: Assist, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    summarise = domain.summarise

    def stuck(messages: list[tuple[str, str]], *args: object, **kw: object) -> str:
        if any("stuck" in text for _, text in messages):
            release.wait(10)
        return summarise(messages, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(domain, "summarise", stuck)
    await assist.bus.send(c.ConversationArrived(conversation_id="c-stuck", channel="chat"))
    await assist.say("c-stuck", "This one is stuck in a very long summary.")
    await assist.assign("c-stuck")
    assist.fake.advance(5.0)
    assert await assist.service.followup.step() == 1
    await asyncio.sleep(0.05)  # its update is now waiting on the worker thread
    await assist.bus.send(c.ConversationArrived(conversation_id="c-next", channel="chat"))
    await assist.say("c-next", *DUPLICATE_CHARGE)
    assist.fake.advance(5.0)
    assert await assist.service.followup.step() == 1
    running = {t.get_name(): t for t in assist.service.followup._running}
    try:
        await asyncio.wait_for(running["assist-update-c-next"], 10)
        assert "assist.articles_surfaced" in assist.types("c-next")
        assert not running["assist-update-c-stuck"].done()  # still computing
        assert "assist.summary_ready" not in assist.types("c-stuck")
    finally:
        release.set()
    await assist.service.followup.settle()
    assert "assist.summary_ready" in assist.types("c-stuck")
