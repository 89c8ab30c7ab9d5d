"""The CLI's on-behalf commands (issue 12): they go through the sessions gateway, which publishes a
command for an agent only for that agent's own token or a supervisor's; the command then reaches
sessions.commands.v1 with the supervisor named as its source."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from sessions.app import create_app as sessions_app
from sessions.settings import SessionsSettings
from shared import topics
from shared.auth import DEV_SECRET, Auth
from tools import cli
from tools.testing import Bus, Deployment, listening_socket, running, served

pytestmark = pytest.mark.e2e

AUTH = Auth(DEV_SECRET)


@contextlib.asynccontextmanager
async def gateway(dep: Deployment) -> AsyncIterator[str]:
    closed = listening_socket()
    nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    settings = dep.settings(SessionsSettings, "sessions", routing_url=nowhere, presence_url=nowhere, assist_url=nowhere)
    app = sessions_app(settings)
    async with served(app) as host, running(app.state.runtime):
        yield f"http://{host}"


async def commands_of(bus: Bus, dep: Deployment, n: int, timeout: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        found = [orjson.loads(r.value) for r in await bus.records(topics.SESSIONS_COMMANDS)]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.2)
    return found


async def test_on_behalf_commands_need_a_supervisor_token(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with gateway(deployment) as url, Bus(deployment) as bus:
        monkeypatch.setenv("SWITCHBOARD_GATEWAY_URL", url)

        # another agent's token: refused by the gateway, with the reason, and nothing published
        monkeypatch.setenv("SWITCHBOARD_TOKEN", AUTH.mint("agent-2"))
        code = await asyncio.to_thread(cli.main, ["accept", "agent-1", "offer-1"])
        err = capsys.readouterr().err
        assert code == 2 and "403" in err and "supervisor role" in err

        # in production the CLI mints nothing: it asks for a supervisor's token
        monkeypatch.delenv("SWITCHBOARD_TOKEN")
        monkeypatch.setenv("SWITCHBOARD_ENV", "production")
        code = await asyncio.to_thread(cli.main, ["close", "agent-1", "session-1"])
        assert code == 2 and "SWITCHBOARD_TOKEN" in capsys.readouterr().err
        monkeypatch.delenv("SWITCHBOARD_ENV")

        # a supervisor's token: accepted and published for the agent, naming the supervisor
        monkeypatch.setenv("SWITCHBOARD_TOKEN", AUTH.mint("lead-1", ("supervisor",)))
        code = await asyncio.to_thread(cli.main, ["accept", "agent-1", "offer-1"])
        assert code == 0, capsys.readouterr().err
        printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"published"')]
        assert orjson.loads(printed[-1])["published"] == "offer.accept"

        records = await commands_of(bus, deployment, 1)
        assert len(records) == 1, records
        event = records[0]
        assert event["source"] == "/gateway/supervisor/lead-1"
        assert event["data"]["agent_id"] == "agent-1" and event["data"]["offer_id"] == "offer-1"  # type: ignore[index]
