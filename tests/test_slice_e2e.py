"""The first end-to-end slice through all four services, on a real Kafka broker and PostgreSQL."""

from __future__ import annotations

import pytest

from shared import contracts as c
from shared import topics
from tests import helpers
from tools.testing import Bus, running

pytestmark = pytest.mark.e2e


async def test_arrival_to_session_and_back(deployment, bus: Bus) -> None:
    async with running(*helpers.all_services(deployment)):
        await bus.publish(c.AgentSignedIn(agent_id="agent-1", device_id="desk"))
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available")

        await bus.publish(
            c.ConversationArrived(
                conversation_id="c-1001",
                channel="chat",
                subject="Refund for order 1234",
                customer=c.Customer(id="cust-42", name="Ada Lovelace", authenticated=True),
            )
        )
        queued = await bus.wait_for(topics.ROUTING, "work.queued", conversation_id="c-1001")
        assert queued[0].data["position"] == 1
        offer = (await bus.wait_for(topics.SESSIONS, "offer.received", agent_id="agent-1"))[0]
        assert offer.data["conversation_id"] == "c-1001"
        assert offer.data["expires_at"]
        offered = (await bus.wait_for(topics.ROUTING, "work.offered", conversation_id="c-1001"))[0]
        assert offered.data["reason"]["method"] == "longest_idle"

        await bus.publish(c.AcceptOffer(agent_id="agent-1", offer_id=offer.data["offer_id"]))
        await bus.wait_for(topics.SESSIONS, "offer.accepted", agent_id="agent-1")
        await bus.wait_for(topics.ROUTING, "work.assigned", conversation_id="c-1001", agent_id="agent-1")
        started = (await bus.wait_for(topics.SESSIONS, "session.started", agent_id="agent-1"))[0]
        assert started.data["title"] == "Ada Lovelace"
        assert started.data["icon"] == "Ad"
        assert started.data["conversation_id"] == "c-1001"
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="busy")

        await bus.publish(
            c.MessagePosted(
                conversation_id="c-1001",
                sender="customer",
                text="I was charged twice for order 1234. Please refund $25.00.",
            )
        )
        summary = (await bus.wait_for(topics.ASSIST, "assist.summary_ready", conversation_id="c-1001"))[0]
        assert "1234" in summary.data["entities"]["order_numbers"]

        session_id = started.data["session_id"]
        await bus.publish(c.CloseSession(agent_id="agent-1", session_id=session_id, confirmed=True))
        await bus.wait_for(topics.SESSIONS, "session.closed", agent_id="agent-1", session_id=session_id)
        await bus.wait_for(topics.ROUTING, "work.released", conversation_id="c-1001", agent_id="agent-1")
        await bus.wait_for(topics.PRESENCE, "presence.changed", agent_id="agent-1", status="available", count=2)


async def test_the_design_md_example_reaches_a_demo_agent(deployment, bus: Bus) -> None:
    """The exact arrival of DESIGN.md (it requires billing 3), as a producer sends it, with the demo
    configuration: an agent gets offer.received."""
    import json

    from tools.testing import DESIGN_EXAMPLE

    async with running(*helpers.all_services(deployment)):
        for agent in ("agent-1", "agent-4"):
            await bus.publish(c.AgentSignedIn(agent_id=agent))
        await helpers.routing_sees(deployment, "agent-4", "available")
        await helpers.routing_sees(deployment, "agent-1", "available")
        await bus.send_raw(topics.CONVERSATIONS, json.dumps(DESIGN_EXAMPLE).encode(), key="c-1001")
        offer = (await bus.wait_for(topics.SESSIONS, "offer.received", conversation_id="c-1001"))[0]
        assert offer.data["agent_id"] == "agent-1"  # billing 4; agent-4 has no billing skill
        assert offer.data["title"] == "Ada Lovelace"
