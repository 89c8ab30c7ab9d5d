"""/metrics and /health on the four services, on a real Kafka broker and PostgreSQL: during a
small load the business gauges and counters move."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from assist.app import create_app as assist_app
from assist.settings import AssistSettings
from presence.app import create_app as presence_app
from presence.settings import PresenceSettings
from routing.app import create_app as routing_app
from routing.settings import RoutingSettings
from sessions.app import create_app as sessions_app
from sessions.settings import SessionsSettings
from shared import contracts as c
from shared import topics
from tests import helpers
from tools.testing import Bus, Deployment, running

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def apps(dep: Deployment, **overrides: Any) -> dict[str, Any]:
    """The four services' HTTP apps on `dep` (their runtimes in `app.state.runtime`)."""
    return {
        "routing": routing_app(dep.settings(RoutingSettings, "routing", config_file=helpers.DEMO_CONFIG, **overrides)),
        "sessions": sessions_app(dep.settings(SessionsSettings, "sessions", **overrides)),
        "presence": presence_app(dep.settings(PresenceSettings, "presence", **overrides)),
        "assist": assist_app(dep.settings(AssistSettings, "assist", **overrides)),
    }


@pytest.fixture
async def clients(deployment: Deployment) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    built = apps(deployment)
    async with running(*(app.state.runtime for app in built.values())):
        made = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
            for name, app in built.items()
        }
        try:
            yield made
        finally:
            for client in made.values():
                await client.aclose()


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sum of `name`'s samples whose labels include `labels` (None: no such sample)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    return sum(found) if found else None


async def eventually(client: httpx.AsyncClient, check: Any, what: str, timeout: float = 30.0) -> Samples:
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        samples = await scrape(client)
        if check(samples):
            return samples
        await asyncio.sleep(0.5)  # scrape-time gauges are cached for 2 s
    shown = {f"{n}{dict(ls)}": v for (n, ls), v in samples.items() if n.startswith("switchboard_")}
    raise AssertionError(f"waited {timeout}s for {what}; last switchboard samples: {shown}")


async def test_business_metrics_move_under_load(clients: dict[str, httpx.AsyncClient], bus: Bus) -> None:
    for name, client in clients.items():
        deadline = time.monotonic() + 30
        while (r := await client.get("/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, f"{name} never ready: {r.json()}"
            await asyncio.sleep(0.3)
        assert (await client.get("/health/live")).status_code == 200

    routing, presence, sessions = clients["routing"], clients["presence"], clients["sessions"]
    before = await scrape(routing)
    assert value(before, "switchboard_routing_waiting_work", queue="chat", state="queued") == 0
    assert value(before, "switchboard_routing_agents", presence="available") is None

    await bus.publish(c.AgentSignedIn(agent_id="agent-1", device_id="desk"))
    await eventually(
        presence,
        lambda s: (value(s, "switchboard_presence_agents", status="available") or 0) >= 1,
        "presence to count agent-1 available",
    )
    await helpers.routing_sees(bus.dep, "agent-1", "available")
    await eventually(
        routing,
        lambda s: (
            value(s, "switchboard_routing_agents", presence="available") == 1
            and value(s, "switchboard_routing_routable_agents", queue="chat") == 1
        ),
        "routing to count one available agent, who can take chats",
    )

    # agent-1 takes 3 chats at most (demo capacity profile); the other two wait in the chat queue
    for i in range(5):
        await bus.publish(c.ConversationArrived(conversation_id=f"m-{i}", channel="chat", subject="Refund"))
    await bus.wait_for(topics.ROUTING, "work.offered", count=3)
    loaded = await eventually(
        routing,
        lambda s: (
            value(s, "switchboard_routing_waiting_work", queue="chat", state="queued") == 2
            and value(s, "switchboard_routing_waiting_work", queue="chat", state="offered") == 3
        ),
        "2 queued and 3 offered chats",
    )
    assert (value(loaded, "switchboard_routing_longest_wait_seconds", queue="chat") or 0) > 0
    assert value(loaded, "switchboard_routing_capacity_used", channel="chat") == 3
    assert value(loaded, "switchboard_routing_capacity_total", channel="chat") == 3
    batches = value(loaded, "switchboard_batch_seconds_count", service="routing", topic=topics.CONVERSATIONS)
    assert (batches or 0) > 0
    assert (value(loaded, "switchboard_events_emitted_total", service="routing", type="work.offered") or 0) >= 3
    assert (value(loaded, "switchboard_events_emitted_total", service="routing", type="work.queued") or 0) >= 5
    handled = value(loaded, "switchboard_records_consumed_total", service="routing", topic=topics.CONVERSATIONS)
    assert (handled or 0) >= 5
    for topic in topics.ACCESS["routing"].consumes:
        assert value(loaded, "switchboard_consumer_lag", service="routing", topic=topic) is not None, topic
    assert value(loaded, "switchboard_outbox_rows", service="routing") is not None
    assert value(loaded, "switchboard_metrics_source_up", service="routing", source="routing") == 1

    offer = (await bus.wait_for(topics.SESSIONS, "offer.received", agent_id="agent-1"))[0]
    await bus.publish(c.AcceptOffer(agent_id="agent-1", offer_id=offer.data["offer_id"]))
    await bus.wait_for(topics.SESSIONS, "session.started", agent_id="agent-1")
    opened = await eventually(
        sessions,
        lambda s: value(s, "switchboard_sessions_open", kind="conversation") == 1,
        "one open conversation session",
    )
    assert value(opened, "switchboard_sessions_pending_offers") == 2
    assert value(opened, "switchboard_gateway_websockets") == 0
    accepted = await eventually(
        sessions,
        lambda s: (value(s, "switchboard_events_emitted_total", service="sessions", type="offer.accepted") or 0) >= 1,
        "sessions to count the accepted offer",
    )
    assert (value(accepted, "switchboard_events_emitted_total", service="sessions", type="session.started") or 0) >= 1
