"""`python -m SERVICE.main`: where it binds and how uvicorn is told to shut down (shared.cli_run)."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn

from shared import cli_run


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_run(app: str, **kw: Any) -> None:
        seen.update(kw, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    for name in ("ROUTING_HTTP_HOST", "ROUTING_HTTP_PORT", "ROUTING_DRAIN_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_defaults_bind_loopback_on_the_command_line_port(started: dict[str, Any]) -> None:
    cli_run.run("routing.app:create_app", ["--port", "18081"])
    assert started["app"] == "routing.app:create_app" and started["factory"] is True
    assert (started["host"], started["port"]) == ("127.0.0.1", 18081)
    assert started["lifespan"] == "on"
    assert started["ws_max_size"] == 256 * 1024
    assert started["timeout_keep_alive"] == cli_run.KEEP_ALIVE_S
    assert started["timeout_graceful_shutdown"] == 5  # min(5 s, drain_timeout_s 20 / 4)


def test_the_service_settings_choose_host_and_port(started: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTING_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("ROUTING_HTTP_PORT", "8080")
    monkeypatch.setenv("ROUTING_DRAIN_TIMEOUT_S", "8")
    cli_run.run("routing.app:create_app", [])
    assert (started["host"], started["port"]) == ("0.0.0.0", 8080)
    assert started["timeout_graceful_shutdown"] == 2


def test_the_command_line_wins(started: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("SESSIONS_HTTP_PORT", "8080")
    cli_run.run("sessions.app:create_app", ["--host", "127.0.0.2", "--port", "0"])
    assert (started["host"], started["port"]) == ("127.0.0.2", 0)


@pytest.mark.parametrize("service", ["routing", "sessions", "presence", "assist"])
def test_every_service_factory_names_its_settings(service: str) -> None:
    settings = cli_run.settings_of(f"{service}.app:create_app")
    assert type(settings).__name__.lower() == f"{service}settings"
