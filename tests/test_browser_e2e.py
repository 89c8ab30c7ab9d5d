"""Issue 10 in a real browser (Playwright driving Debian's Chromium) on the real stack: the customer
demo page, the agent workspace and the supervisor view, all four services on Kafka and PostgreSQL.

Screenshots go to .state/artifacts/screenshots/ (tests/browser_helpers.py). Controls are found by
their role and accessible name, so the names the issue lists are what is tested."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from shared import contracts as c
from shared import topics
from tests import helpers
from tests.browser_helpers import WAIT_MS, Console, Shots, chromium_or_fail, no_critical_violations
from tools import bench_browser, browser
from tools.testing import Bus, Deployment

pytestmark = pytest.mark.e2e

OTHERS = ["agent-2", "agent-3", "agent-4", "agent-5"]
SMALL: ViewportSize = {"width": 1280, "height": 720}
LARGE: ViewportSize = {"width": 1920, "height": 1080}
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    chromium_or_fail()
    async with async_playwright() as p:
        b = await browser.launch(p)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def stack(deployment: Deployment) -> AsyncIterator[browser.Stack]:
    async with browser.run_stack(deployment) as s:
        yield s


async def new_page(b: Browser, console: Console, name: str, viewport: ViewportSize = SMALL) -> Page:
    context = await b.new_context(viewport=viewport)
    return console.watch(await context.new_page(), name)


async def start_chat(page: Page, url: str, name: str, subject: str) -> str:
    """The customer demo page: name and subject start a chat; returns its conversation id."""
    await page.goto(url)
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Subject").fill(subject)
    await page.get_by_role("button", name="Start chat").click()
    await expect(page.get_by_label("Message", exact=True)).to_be_visible(timeout=WAIT_MS)
    cid = await page.evaluate("JSON.parse(sessionStorage.getItem('switchboard.customer.chat')).conversation_id")
    return str(cid)


async def customer_says(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("log")).to_contain_text(text, timeout=WAIT_MS)


def session_entry(page: Page, title: str) -> Any:
    return page.get_by_role("navigation", name="Sessions").get_by_role(
        "button", name=re.compile(f"^{re.escape(title)}")
    )


def grid_row(page: Page, section: str, text: str) -> Any:
    return page.get_by_role("region", name=re.compile(f"^{section}")).get_by_role("row").filter(has_text=text)


async def test_customer_agent_and_supervisor_in_a_real_browser(
    deployment: Deployment, bus: Bus, stack: browser.Stack, chromium: Browser
) -> None:
    console, shots = Console(), Shots()
    # the demo devices sign everyone in; all but agent-1 go to lunch so the first chat is agent-1's
    for name in ["agent-1", *OTHERS]:
        await helpers.routing_sees(deployment, name, ("available", "busy"))
    for name in OTHERS:
        await bus.publish(c.SetPresence(agent_id=name, status="lunch"))
    for name in OTHERS:
        await helpers.routing_sees(deployment, name, ("away", "lunch"))

    # --- the supervisor watches from the start -------------------------------------------------
    sup = await new_page(chromium, console, "supervisor", LARGE)
    await sup.goto(stack.supervisor_url("supervisor-1"))
    await expect(sup.get_by_role("heading", name=re.compile("^Queues"))).to_be_visible(timeout=WAIT_MS)
    agent1_status = grid_row(sup, "Agents", "agent-1").locator(".status")
    await expect(agent1_status).to_have_text("available", timeout=WAIT_MS)
    chat_queue = grid_row(sup, "Queues", "chat").get_by_role("cell")  # waiting, longest, estimated, offered, ...
    await expect(chat_queue.nth(3)).to_have_text("0", timeout=WAIT_MS)

    # --- the agent's workspace: Home at both sizes ---------------------------------------------
    agent = await new_page(chromium, console, "agent-1")
    await agent.goto(stack.agent_url("agent-1"))
    await expect(agent.get_by_role("heading", name="Home", exact=True)).to_be_visible(timeout=WAIT_MS)
    await expect(agent.get_by_label("Presence")).to_have_value("available", timeout=WAIT_MS)
    await shots.take(agent, "agent-home-1280x720")
    await agent.set_viewport_size(LARGE)
    await shots.take(agent, "agent-home-1920x1080")
    await agent.set_viewport_size(SMALL)
    await no_critical_violations(agent, "agent workspace (Home)")

    # --- a customer starts a chat and writes ---------------------------------------------------
    customer = await new_page(chromium, console, "customer")
    cid = await start_chat(customer, stack.customer_url, "Ada Lovelace", "Refund for order 1234")
    first = "Hello, I was charged twice for order 1234 and I would like a refund please."
    await customer_says(customer, first)

    # the supervisor sees the conversation arrive, the agent gets the offer
    await expect(grid_row(sup, "Conversations", "Ada Lovelace")).to_be_visible(timeout=WAIT_MS)
    accept = agent.get_by_role("button", name="Accept")
    await expect(accept).to_be_visible(timeout=WAIT_MS)
    await expect(agent.get_by_role("button", name="Reject")).to_be_visible()
    await shots.take(agent, "agent-offer-toast")
    # a person takes a moment to accept: by then assist has answered the customer's first message,
    # and its suggestions must still reach the pane of the session the accept opens
    await bus.wait_for(topics.ASSIST, "assist.replies_suggested", conversation_id=cid)
    await accept.click()

    # the transcript shows what the customer wrote; the supervisor sees agent-1 change
    log = agent.get_by_role("log")
    await expect(log).to_contain_text(first, timeout=WAIT_MS)
    await expect(session_entry(agent, "Ada Lovelace")).to_be_visible()
    await expect(agent1_status).not_to_have_text("available", timeout=WAIT_MS)
    await expect(grid_row(sup, "Conversations", "Ada Lovelace")).to_contain_text("agent-1", timeout=WAIT_MS)
    await expect(chat_queue.nth(3)).to_have_text("1", timeout=WAIT_MS)  # offered in the last 15 minutes
    await expect(chat_queue.nth(4)).to_have_text("1", timeout=WAIT_MS)  # assigned

    # --- a suggested reply: Use fills the Message box, Send, the customer reads it -------------
    use = agent.get_by_role("button", name="Use", exact=True).first
    await expect(use).to_be_visible(timeout=WAIT_MS)
    await shots.take(agent, "agent-conversation-1280x720")
    await agent.set_viewport_size(LARGE)
    await shots.take(agent, "agent-conversation-1920x1080")
    await agent.set_viewport_size(SMALL)
    await use.click()
    box = agent.get_by_label("Message", exact=True)
    reply = (await box.input_value()).strip()
    assert reply, "Use left the Message box empty"
    await agent.get_by_role("button", name="Send", exact=True).click()
    await expect(box).to_have_value("", timeout=WAIT_MS)
    fragment = reply.splitlines()[0][:40]
    await expect(customer.get_by_role("log")).to_contain_text(fragment, timeout=WAIT_MS)
    await expect(log).to_contain_text(fragment, timeout=WAIT_MS)
    posted = await bus.wait_for(topics.MESSAGES, "message.posted", conversation_id=cid, sender="agent")
    assert posted[0].data["suggestion_id"], "the reply sent from a suggestion does not name it (assist's feedback)"
    await shots.take(customer, "customer-chat")
    await no_critical_violations(agent, "agent workspace (conversation)")

    # --- message text is text: markup from the customer is shown, never run ------------------
    await customer_says(customer, XSS)
    await expect(log).to_contain_text(XSS, timeout=WAIT_MS)
    for page in (agent, customer):
        assert await page.locator("img[src='x']").count() == 0, "a message's markup became an element"

    # --- Home and back ------------------------------------------------------------------------
    await agent.get_by_role("navigation", name="Sessions").get_by_role("button", name="Home").click()
    await expect(agent.get_by_role("heading", name="Home", exact=True)).to_be_visible(timeout=WAIT_MS)
    await expect(agent.get_by_role("heading", name=re.compile("^My work"))).to_contain_text("1")
    await session_entry(agent, "Ada Lovelace").click()
    await expect(log).to_contain_text(first, timeout=WAIT_MS)

    # --- a case form tab keeps its unsaved text across a reload --------------------------------
    await agent.get_by_role("button", name="+ Case").click()
    case_tab = agent.get_by_role("tab", name=re.compile("^Case"))
    await expect(case_tab).to_be_visible(timeout=WAIT_MS)
    await case_tab.click()
    note = "Charged twice for order 1234; refund of the duplicate payment agreed."
    await agent.get_by_label("Description").fill(note)
    await expect(agent.get_by_text("Saved on the server")).to_be_visible(timeout=WAIT_MS)
    await shots.take(agent, "agent-case-form")
    await agent.reload()
    await expect(session_entry(agent, "Ada Lovelace")).to_be_visible(timeout=WAIT_MS)
    if not await agent.get_by_label("Description").is_visible():
        if not await case_tab.is_visible():
            await session_entry(agent, "Ada Lovelace").click()
        await case_tab.click()
    await expect(agent.get_by_label("Description")).to_have_value(note, timeout=WAIT_MS)
    await agent.get_by_role("tablist", name="Tabs").get_by_role("tab").first.click()  # the anchor
    await expect(log).to_contain_text(first, timeout=WAIT_MS)

    # --- the supervisor observes, whispers (agent only), barges (the customer sees it) ---------
    row = grid_row(sup, "Conversations", "Ada Lovelace")
    await row.get_by_role("button", name="Observe").click()
    observed = sup.get_by_role("log")
    await expect(observed).to_contain_text(first, timeout=WAIT_MS)
    await expect(observed).to_contain_text(fragment, timeout=WAIT_MS)
    whisper = "Whisper: the refund is within policy, go ahead."
    await row.get_by_role("button", name="Whisper").click()
    await sup.get_by_label("Supervisor message").fill(whisper)
    await sup.get_by_role("button", name="Post").click()
    await expect(log).to_contain_text(whisper, timeout=WAIT_MS)
    barge = "Hello Ada, I am the team lead; your refund is on its way."
    await row.get_by_role("button", name="Barge").click()
    await sup.get_by_label("Supervisor message").fill(barge)
    await sup.get_by_role("button", name="Post").click()
    await expect(customer.get_by_role("log")).to_contain_text(barge, timeout=WAIT_MS)
    # the customer's stream is in conversation order: the barge came after the whisper
    await expect(customer.get_by_role("log")).not_to_contain_text(whisper)
    await shots.take(sup, "supervisor-observe")
    await no_critical_violations(sup, "supervisor view")
    assert await sup.locator("img[src='x']").count() == 0

    # --- a rejected command shows its reason (transfer to oneself) -----------------------------
    await agent.get_by_role("button", name="Transfer", exact=True).click()
    dialog = agent.get_by_role("dialog")
    await dialog.get_by_label("an agent").check()
    await dialog.get_by_label("Agent id").fill("agent-1")
    await dialog.get_by_role("button", name="Transfer now").click()
    alert = agent.get_by_role("alert").filter(has_text="already")
    await expect(alert).to_be_visible(timeout=WAIT_MS)
    await shots.take(agent, "agent-rejected-command")

    # --- close with a wrap-up through the dialog ----------------------------------------------
    await agent.get_by_role("button", name="Close session").click()
    dialog = agent.get_by_role("dialog")
    await expect(dialog).to_be_visible(timeout=WAIT_MS)
    await dialog.get_by_label("Disposition").select_option("resolved")
    await dialog.get_by_label("Wrap-up note").fill("Duplicate charge refunded.")
    await shots.take(agent, "agent-close-dialog")
    await dialog.get_by_role("button", name="Confirm close").click()
    await expect(session_entry(agent, "Ada Lovelace")).to_have_count(0, timeout=WAIT_MS)
    closed = await bus.wait_for(topics.SESSIONS, "session.closed", conversation_id=cid)
    assert closed[0].data.get("disposition") == "resolved"
    assert closed[0].data.get("note") == "Duplicate charge refunded."

    # --- a custom status: routing stops offering to agent-1 -----------------------------------
    await agent.get_by_label("Presence").select_option("training")
    await expect(agent.get_by_label("Presence")).to_have_value("training", timeout=WAIT_MS)
    await expect(agent1_status).to_have_text("training", timeout=WAIT_MS)
    await helpers.routing_sees(deployment, "agent-1", "busy_dnd")
    await bus.publish(c.SetPresence(agent_id="agent-2", status="available"))
    await helpers.routing_sees(deployment, "agent-2", "available")
    second = await new_page(chromium, console, "customer-2")
    cid2 = await start_chat(second, stack.customer_url, "Grace Hopper", "Where is my parcel?")
    await customer_says(second, "My parcel has not arrived yet.")
    offer = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id=cid2))[0]
    assert offer.data["agent_id"] == "agent-2", f"offered to {offer.data['agent_id']} in training"
    await expect(agent.get_by_role("button", name="Accept")).to_have_count(0)
    await bus.publish(c.AcceptOffer(agent_id="agent-2", offer_id=offer.data["offer_id"]))
    await bus.wait_for(topics.SESSIONS, "session.started", conversation_id=cid2, agent_id="agent-2")

    # --- the supervisor force-transfers Grace's chat from agent-2 to agent-1 -------------------
    row2 = grid_row(sup, "Conversations", "Grace Hopper")
    await expect(row2).to_contain_text("agent-2", timeout=WAIT_MS)
    await row2.get_by_role("button", name="Force transfer").click()
    dialog = sup.get_by_role("dialog")
    await dialog.get_by_label("an agent").check()
    await dialog.get_by_label("Agent", exact=True).select_option("agent-1")
    await dialog.get_by_role("button", name="Transfer now").click()
    await expect(session_entry(agent, "Grace Hopper")).to_be_visible(timeout=WAIT_MS)
    await expect(grid_row(sup, "Conversations", "Grace Hopper")).to_contain_text("agent-1", timeout=WAIT_MS)
    actions = await bus.wait_for(topics.SESSIONS, "supervisor.action", agent_id="agent-2", action="force_transfer")
    assert actions[0].data["supervisor_id"] == "supervisor-1"
    await shots.take(sup, "supervisor-overview")

    # --- Pick: work waiting in agent-1's queues, taken from Home ------------------------------
    await bus.publish(c.SetPresence(agent_id="agent-2", status="lunch"))
    await helpers.routing_sees(deployment, "agent-2", ("away", "lunch"))
    third = await new_page(chromium, console, "customer-3")
    cid3 = await start_chat(third, stack.customer_url, "Katherine Johnson", "Change my address")
    await bus.wait_for(topics.ROUTING, "work.queued", conversation_id=cid3)
    await agent.get_by_role("navigation", name="Sessions").get_by_role("button", name="Home").click()
    waiting = agent.get_by_role("region", name=re.compile("^Open work in my queues")).get_by_role("row")
    pick = waiting.filter(has_text="Katherine Johnson").get_by_role("button", name="Pick")
    await expect(pick).to_be_visible(timeout=WAIT_MS)
    await shots.take(agent, "agent-home-pick")
    await pick.click()
    await expect(session_entry(agent, "Katherine Johnson")).to_be_visible(timeout=WAIT_MS)
    await expect(grid_row(sup, "Conversations", "Katherine Johnson")).to_contain_text("agent-1", timeout=WAIT_MS)

    console.check()
    print("screenshots:", *shots.lines(), sep="\n  ")


async def test_workspace_with_10_sessions_of_200_messages(deployment: Deployment, chromium: Browser) -> None:
    """§6: first render and session switches of a loaded workspace, measured in the browser and
    printed (never asserted against a time limit: two shared cores)."""
    figures = await bench_browser.measure_workspace(deployment, chromium, sessions=10, messages=200)
    print("page performance:", figures)
    assert figures["sessions"] == 10 and figures["messages_per_session"] == 200
    assert figures["first_render_ms"] is not None
    assert figures["session_switch_ms"]["max"] is not None
