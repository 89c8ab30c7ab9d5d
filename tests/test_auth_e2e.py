"""Every door of every service needs a token (issue 12): the four apps on real Kafka and Postgres,
their routes enumerated from `app.routes`, so a route added later without a token check, or not
classified here, fails this test.

- Without a token every data route answers 401 (WebSockets: the handshake is refused with 401).
- With an agent's token, the supervisor's routes and other agents' data answer 403.
- A customer's token (the demo page's) opens nothing but its own chat.
- Pages, static files, health and metrics stay open; the customer demo door is refused in production.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from sessions.app import create_app as sessions_app
from sessions.settings import SessionsSettings
from shared.auth import DEV_SECRET, Auth
from tools.browser import run_stack
from tools.testing import Deployment

pytestmark = pytest.mark.e2e

AUTH = Auth(DEV_SECRET)
AGENT = AUTH.mint("agent-1")
LEAD = AUTH.mint("lead-1", ("supervisor",))
CUSTOMER = AUTH.mint("customer:web-12345678", ("customer",))

# Open on purpose: pages (they carry no data; the data comes with the token), health, metrics.
OPEN = {"/", "/supervisor", "/customer", "/health", "/health/live", "/health/ready", "/metrics"}
OPEN_MOUNTS = {"/static"}
# The demo door: anyone may start a demo chat in development; production refuses it (below).
DEMO = {("sessions", "POST", "/customer/conversations")}
# What an agent's token may not do (403), with the values its path parameters take.
SUPERVISOR_ONLY = {
    ("routing", "GET", "/queues"),
    ("routing", "GET", "/agents"),
    ("routing", "GET", "/work"),
    ("routing", "GET", "/admin/config"),
    ("routing", "POST", "/admin/config"),
    ("presence", "GET", "/agents"),
    ("presence", "GET", "/teams/{team}/presence"),
    ("sessions", "GET", "/supervisor/overview"),
    ("sessions", "GET", "/admin/profiles"),
    ("sessions", "PUT", "/admin/profiles/{name}"),
    ("sessions", "WS", "/supervisor/stream"),
    ("assist", "POST", "/kb/articles"),
    ("assist", "POST", "/replies"),
}
# Another agent's data, or a conversation agent-1 never held: 403 for agent-1 as well.
OTHERS = {
    ("routing", "GET", "/agents/{agent_id}"),
    ("routing", "GET", "/conversations/{conversation_id}/explain"),
    ("presence", "GET", "/agents/{agent_id}/presence"),
    ("sessions", "GET", "/agents/{agent_id}/workspace"),
    ("sessions", "POST", "/agents/{agent_id}/commands"),
    ("sessions", "WS", "/agents/{agent_id}/stream"),
    ("assist", "GET", "/conversations/{conversation_id}/summary"),
    ("assist", "POST", "/conversations/{conversation_id}/summary"),
    ("assist", "GET", "/conversations/{conversation_id}/case-summary"),
    ("assist", "POST", "/conversations/{conversation_id}/case-summary"),
    ("assist", "PUT", "/conversations/{conversation_id}/case-summary"),
}
# What any agent may read or do with its own token (the rest of the data routes).
ANY_AGENT = {
    ("presence", "GET", "/statuses"),
    ("assist", "GET", "/kb/search"),
    ("assist", "GET", "/kb/articles/{article_id}"),
    ("assist", "GET", "/replies"),
    ("assist", "POST", "/suggestions/{suggestion_id}/feedback"),
    ("sessions", "WS", "/customer/conversations/{conversation_id}/stream"),  # a customer's own, only
}
PARAMS = {
    "agent_id": "agent-2",
    "conversation_id": "c-never-held",
    "team": "tier-1",
    "name": "standard",
    "article_id": "a-1",
    "suggestion_id": "s-1",
}


def fill(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PARAMS.get(m.group(1), "x-1"), path)


def doors(apps: dict[str, Starlette]) -> list[tuple[str, str, str]]:
    """(service, method or "WS", path template) of every data route; fails on an unknown mount."""
    found: list[tuple[str, str, str]] = []
    for service, app in apps.items():
        for route in app.routes:
            if isinstance(route, Mount):
                assert route.path in OPEN_MOUNTS, f"{service} mounts {route.path}: classify it in this test"
            elif isinstance(route, WebSocketRoute):
                found.append((service, "WS", route.path))
            elif isinstance(route, Route) and route.path not in OPEN:
                found += [(service, m, route.path) for m in sorted(route.methods or {"GET"}) if m != "HEAD"]
    return found


@contextlib.asynccontextmanager
async def four_services(dep: Deployment) -> AsyncIterator[tuple[dict[str, Starlette], dict[str, str]]]:
    """The four services served in this process (nobody signed in): their apps and base URLs."""
    async with run_stack(dep, demo_devices=False) as stack:
        urls = {"sessions": stack.sessions_url, "routing": stack.routing_url}
        urls |= {"presence": stack.presence_url, "assist": stack.assist_url}
        yield stack.apps, urls


async def call(urls: dict[str, str], door: tuple[str, str, str], token: str | None) -> int:
    """The HTTP status of one door (for a WebSocket: the handshake's status, or 101 when accepted)."""
    service, method, template = door
    path = fill(template)
    if method == "WS":
        url = urls[service].replace("http://", "ws://") + path + (f"?token={token}" if token else "")
        try:
            async with websockets.connect(url, open_timeout=10):
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return int(exc.response.status_code)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: Any = {} if method in ("POST", "PUT") else None
    async with httpx.AsyncClient(base_url=urls[service], timeout=15) as http:
        r = await http.request(method, path, headers=headers, json=body)
    if r.status_code in (401, 403):
        assert r.json()["error"], f"{door}: a refusal says why"
    return r.status_code


async def test_every_data_route_needs_a_token_and_the_right_role(deployment: Deployment) -> None:
    async with four_services(deployment) as (apps, urls):
        found = doors(apps)
        known = DEMO | SUPERVISOR_ONLY | OTHERS | ANY_AGENT
        unclassified = sorted(set(found) - known)
        assert not unclassified, f"new routes: classify each in this test (and check its token): {unclassified}"
        gone = sorted(known - set(found))
        assert not gone, f"routes this test expects but the apps no longer have: {gone}"

        for door in found:
            if door in DEMO:
                continue
            assert await call(urls, door, None) == 401, f"{door} without a token"
            assert await call(urls, door, "not-a-token") == 401, f"{door} with a forged token"
        for door in sorted(SUPERVISOR_ONLY | OTHERS):
            assert await call(urls, door, AGENT) == 403, f"{door} with agent-1's token"
        for door in found:
            if door not in DEMO and door != ("sessions", "WS", "/customer/conversations/{conversation_id}/stream"):
                assert await call(urls, door, CUSTOMER) == 403, f"{door} with a customer's token"

        # and the right token opens them: a supervisor reads the team's data, an agent its own
        for door in [d for d in sorted(SUPERVISOR_ONLY) if d[1] in ("GET", "WS")]:
            assert await call(urls, door, LEAD) in (101, 200, 404), f"{door} with a supervisor's token"
        async with httpx.AsyncClient(timeout=15) as http:
            own = {"Authorization": f"Bearer {AGENT}"}
            assert (await http.get(f"{urls['routing']}/agents/agent-1", headers=own)).status_code == 200
            assert (await http.get(f"{urls['presence']}/statuses", headers=own)).status_code == 200
            assert (await http.get(f"{urls['sessions']}/agents/agent-1/workspace", headers=own)).status_code == 200
            for service, app in apps.items():
                for route in app.routes:
                    if isinstance(route, Route) and route.path in OPEN:
                        r = await http.get(urls[service] + route.path)
                        assert r.status_code == 200, f"{service} {route.path} stays open without a token"


async def test_the_customer_demo_door_is_refused_in_production(deployment: Deployment) -> None:
    """The app itself refuses (production.enforce also refuses to start with it on)."""
    settings = deployment.settings(SessionsSettings, "sessions", customer_demo=True, environment="production")
    app = sessions_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sessions") as http:
        r = await http.post("/customer/conversations", json={"name": "Ada", "subject": "hello"})
    assert r.status_code == 403 and "SESSIONS_CUSTOMER_DEMO" in r.json()["error"]
    development = sessions_app(deployment.settings(SessionsSettings, "sessions", customer_demo=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=development), base_url="http://sessions") as http:
        too_big = await http.post("/customer/conversations", content=b"{" + b" " * 100_000 + b"}")
    assert too_big.status_code == 413 and "at most" in too_big.json()["error"]
