"""The HTTP edge every service shares: bounded JSON bodies and the caller's principal, refused with
a status and a reason a person can act on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.auth import Auth
from shared.http import install, principal_of, read_json, reader_of, supervisor_of

AUTH = Auth("s" * 40)
AGENT = {"Authorization": f"Bearer {AUTH.mint('agent-1')}"}
LEAD = {"Authorization": f"Bearer {AUTH.mint('lead-1', ('supervisor',))}"}
CUSTOMER = {"Authorization": f"Bearer {AUTH.mint('customer:web-1', ('customer',))}"}


def app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"got": await read_json(request, max_bytes=100)})

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"subject": principal_of(request, AUTH).subject})

    async def lead_only(request: Request) -> JSONResponse:
        return JSONResponse({"subject": supervisor_of(request, AUTH, "reading the queues").subject})

    async def agent(request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        return JSONResponse({"subject": reader_of(request, AUTH, agent_id, "presence").subject})

    return install(
        Starlette(
            routes=[
                Route("/echo", echo, methods=["POST"]),
                Route("/me", me),
                Route("/queues", lead_only),
                Route("/agents/{agent_id}", agent),
            ]
        )
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://t") as client:
        yield client


async def test_a_json_body_within_the_limit_is_read(http: httpx.AsyncClient) -> None:
    r = await http.post("/echo", json={"a": [1, 2]})
    assert r.status_code == 200 and r.json() == {"got": {"a": [1, 2]}}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"x" * 101, 413, "a body of 101 bytes is refused: at most 100 bytes"),
        (b"", 400, "send a JSON body"),
        (b"{not json", 400, "the body is not valid JSON"),
    ],
)
async def test_a_body_too_big_empty_or_not_json_is_refused(
    http: httpx.AsyncClient, body: bytes, status: int, reason: str
) -> None:
    r = await http.post("/echo", content=body)
    assert r.status_code == status and reason in r.json()["error"]


async def test_a_streamed_body_is_cut_off_at_the_limit(http: httpx.AsyncClient) -> None:
    """Without a Content-Length the limit holds all the same: the body is not read past it."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"[" * 50

    r = await http.post("/echo", content=chunks())
    assert r.status_code == 413 and "over 100 bytes" in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "headers", "status", "reason"),
    [
        ("/me", {}, 401, "a token is required"),
        ("/me", {"Authorization": "Bearer nonsense"}, 401, "invalid token"),
        ("/me", CUSTOMER, 403, "a customer's token opens its own chat only"),
        ("/queues", AGENT, 403, "reading the queues needs the supervisor role"),
        (
            "/agents/agent-2",
            AGENT,
            403,
            "agent-1 may not read agent-2's presence: that needs agent-2's own token or the supervisor role",
        ),
    ],
)
async def test_who_may_not_is_told_why(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, reason: str
) -> None:
    r = await http.get(path, headers=headers)
    assert r.status_code == status and reason in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "headers", "subject"),
    [
        ("/me", AGENT, "agent-1"),
        ("/queues", LEAD, "lead-1"),
        ("/agents/agent-1", AGENT, "agent-1"),
        ("/agents/agent-2", LEAD, "lead-1"),
    ],
)
async def test_who_may_is_let_in(http: httpx.AsyncClient, path: str, headers: dict[str, Any], subject: str) -> None:
    r = await http.get(path, headers=headers)
    assert r.status_code == 200 and r.json() == {"subject": subject}
