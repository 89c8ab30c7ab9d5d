"""Hostile customer text on real Kafka and Postgres (issue 12): a message that froze assist for
~100 s ("order" and 500 spaces) is processed while another conversation's update still arrives
within 2 s (of what an ordinary update takes on the machine at the time), and 16 KB of adversarial
text is handled without holding anything up."""

from __future__ import annotations

import json
import time

import pytest

from assist.app import create_app as assist_app
from assist.settings import AssistSettings
from shared import contracts as c
from shared import topics
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e

DUPLICATE_CHARGE = "Hello, I was charged twice for order 1234. Can I get the duplicate refunded?"
LATE_PARCEL = "My parcel is late, it was due on Monday. Where is it?"
# Pieces that make backtracking engines (and quadratic algorithms) work hard.
HOSTILE = [
    "I want to speak to a manager, NOT upset at all " * 5,
    "!!!" * 50,
    "order" + " " * 500,
    "order number is " * 20,
    "$" + "1," * 200 + "x ",
    "a" * 300 + "@" + "b" * 300 + " ",
    ". " * 200,
    "\n" * 50,
    "é\u00a0ü\u2019 " * 50,
    "order #" + "-" * 300 + " ",
]


def hostile_text(size: int) -> str:
    text = ""
    while len(text) < size:
        text += "".join(HOSTILE)
    return text[:size]


async def say(bus: Bus, cid: str, text: str) -> c.CloudEvent:
    return await bus.publish(c.MessagePosted(conversation_id=cid, sender="customer", text=text))


async def lag(bus: Bus, posted: c.CloudEvent) -> float:
    """Seconds from a customer message to its conversation's articles, between the two events' times
    (the harness's polling is not part of it)."""
    cid = posted.data["conversation_id"]
    surfaced = (await bus.wait_for(topics.ASSIST, "assist.articles_surfaced", conversation_id=cid))[0]
    return (surfaced.time - posted.time).total_seconds()


async def test_a_hostile_message_does_not_hold_back_other_conversations(deployment: Deployment, bus: Bus) -> None:
    app = assist_app(deployment.settings(AssistSettings, "assist", config_file=helpers.DEMO_CONFIG, debounce_ms=100))
    async with running(app.state.runtime):
        # Warm: the encoder's weights are loaded by the first update. Then an ordinary update's time on
        # this machine now: the 2 s are counted on top of it (a loaded CI runner can take 1 s for it;
        # the hostile message held others back ~100 s).
        await bus.publish(c.ConversationArrived(conversation_id="c-warm", channel="chat"))
        await say(bus, "c-warm", DUPLICATE_CHARGE)
        await bus.wait_for(topics.ASSIST, "assist.articles_surfaced", conversation_id="c-warm")
        await bus.publish(c.ConversationArrived(conversation_id="c-usual", channel="chat"))
        usual = await lag(bus, await say(bus, "c-usual", LATE_PARCEL))

        # "order" and 500 spaces, then at once another conversation's message.
        await bus.publish(c.ConversationArrived(conversation_id="c-bad", channel="chat"))
        await bus.publish(c.WorkAssigned(agent_id="agent-1", conversation_id="c-bad", channel="chat", queue="q"))
        await say(bus, "c-bad", "order" + " " * 500)
        await bus.publish(c.ConversationArrived(conversation_id="c-next", channel="chat"))
        late = await lag(bus, await say(bus, "c-next", DUPLICATE_CHARGE))
        assert late < usual + 2.0, f"c-next's articles came {late:.2f} s after its message (usually {usual:.2f} s)"
        bad = (await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-bad"))[-1].data
        assert bad["summary"] == "order." and bad["entities"] == {} and bad["message_count"] == 1

        # 16 KB of hostile text: within the contract's limit it is processed; beyond it, it is refused
        # to the dead-letter topic with the reason. Either way the next conversation is served at once.
        big = hostile_text(16 * 1024)
        await bus.publish(c.ConversationArrived(conversation_id="c-big", channel="chat"))
        await bus.publish(c.WorkAssigned(agent_id="agent-1", conversation_id="c-big", channel="chat", queue="q"))
        template = c.event(c.MessagePosted(conversation_id="c-big", sender="customer", text="x"), source="/tests")
        doc = json.loads(template.to_bytes())
        doc["data"]["text"] = big
        await bus.send_raw(topics.MESSAGES, json.dumps(doc).encode(), key="c-big")
        if len(big) > c.MAX_TEXT_CHARS:
            dead = [r for r in await wait_records(bus, topics.dlq(topics.MESSAGES)) if r.key == b"c-big"]
            reason = dict(dead[0].headers)["dlq.reason"].decode()
            assert str(c.MAX_TEXT_CHARS) in reason, reason
            # The longest message the contract allows, made of the same hostile text, is processed.
            await say(bus, "c-big", hostile_text(c.MAX_TEXT_CHARS))
        await bus.publish(c.ConversationArrived(conversation_id="c-after", channel="chat"))
        late = await lag(bus, await say(bus, "c-after", LATE_PARCEL))
        assert late < usual + 2.0, f"c-after's articles came {late:.2f} s after its message (usually {usual:.2f} s)"
        summary = (await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-big"))[-1].data
        assert 0 < len(summary["summary"]) <= 600 and summary["message_count"] == 1
        flagged = await bus.wait_for(topics.ASSIST, "assist.escalation_detected", conversation_id="c-big")
        assert set(flagged[-1].data["signals"]) == {"asks_for_manager", "upset"}
        assert len(flagged[-1].data["excerpt"]) <= 300


async def wait_records(bus: Bus, topic: str, timeout: float = 30.0) -> list:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if records := await bus.records(topic):
            return records
        await bus.quiet(topic, seconds=0.1)
    raise AssertionError(f"nothing on {topic} after {timeout} s")
