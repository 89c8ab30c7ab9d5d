"""The browser tests' and `make bench`'s real browser and real stack.

- `chromium_path()`: Debian's `chromium` (never a browser download); installed with apt-get when it
  is missing and we are root, else `BrowserMissing` saying how to install it.
- `launch(playwright)`: that Chromium, headless, with the flags a container needs.
- `run_stack(deployment)`: the four services in this process on a test deployment, each HTTP app
  under uvicorn on a free loopback port, the sessions gateway pointing at the others, the customer
  demo page on, the demo configuration loaded and the demo agents signed in (their demo device
  beating as `make up` does). Yields a `Stack` with the pages' addresses and tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from assist.app import create_app as assist_app
from assist.settings import AssistSettings
from presence.app import create_app as presence_app
from presence.settings import PresenceSettings
from routing.app import create_app as routing_app
from routing.settings import RoutingSettings
from sessions.app import create_app as sessions_app
from sessions.settings import SessionsSettings
from shared.auth import DEV_SECRET, Auth
from tools import demo, stack
from tools.testing import Deployment, listening_socket, running, served

CHROMIUM = Path("/usr/bin/chromium")
# --no-sandbox: containers without user namespaces; /dev/shm is small in containers; no GPU here.
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
DEMO_CONFIG = stack.ROOT / "deploy/demo/switchboard.yaml"
INSTALL_HINT = (
    "install Debian's Chromium: sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium"
)


class BrowserMissing(RuntimeError):
    """No Chromium at /usr/bin/chromium and no way to install it from here."""


def chromium_path() -> str:
    """/usr/bin/chromium, installed from Debian's packages when missing and we may (root)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if shutil.which("apt-get") is None:
        raise BrowserMissing(f"no Chromium at {CHROMIUM} and no apt-get to install it; {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise BrowserMissing(f"no Chromium at {CHROMIUM} and not root to install it; {INSTALL_HINT}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            raise BrowserMissing(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    if not CHROMIUM.exists():
        raise BrowserMissing(f"apt-get installed chromium but {CHROMIUM} is still missing; {INSTALL_HINT}")
    return str(CHROMIUM)


async def launch(playwright: Any, **kw: Any) -> Any:
    """Headless Debian Chromium through Playwright (`playwright` from `async_playwright()`)."""
    return await playwright.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS, **kw)


@dataclass
class Stack:
    """The running stack: base URLs of the four services and tokens for the pages."""

    deployment: Deployment
    sessions_url: str
    routing_url: str
    presence_url: str
    assist_url: str
    auth: Auth = field(default_factory=lambda: Auth(DEV_SECRET))
    # the services' Starlette apps by name (their routes, their runtimes)
    apps: dict[str, Any] = field(default_factory=dict)

    def agent_token(self, agent: str) -> str:
        return self.auth.mint(agent)

    def supervisor_token(self, supervisor: str) -> str:
        return self.auth.mint(supervisor, roles=("supervisor",))

    def agent_url(self, agent: str) -> str:
        return f"{self.sessions_url}/?{urlencode({'agent': agent, 'token': self.agent_token(agent)})}"

    def supervisor_url(self, supervisor: str) -> str:
        query = urlencode({"supervisor": supervisor, "token": self.supervisor_token(supervisor)})
        return f"{self.sessions_url}/supervisor?{query}"

    @property
    def customer_url(self) -> str:
        return f"{self.sessions_url}/customer"


@contextlib.asynccontextmanager
async def run_stack(
    dep: Deployment,
    config_file: str | Path = DEMO_CONFIG,
    *,
    with_assist: bool = True,
    customer_demo: bool = True,
    demo_devices: bool = True,
    heartbeat_s: float = 10.0,
    **sessions_settings: Any,
) -> AsyncIterator[Stack]:
    """The whole stack in this process on `dep` (see the module docstring). `with_assist=False`
    leaves assist out (the gateway's knowledge reads then fail, the rest works); `demo_devices=False`
    signs nobody in."""
    config = str(config_file)
    # held open from here: a service's URL is known before it serves, and nothing else can take it
    socks = {name: listening_socket() for name in ("routing", "presence", "assist", "sessions")}
    urls = {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in socks.items()}
    apps: dict[str, Any] = {
        "routing": routing_app(dep.settings(RoutingSettings, "routing", config_file=config)),
        "presence": presence_app(dep.settings(PresenceSettings, "presence", config_file=config)),
        "sessions": sessions_app(
            dep.settings(
                SessionsSettings,
                "sessions",
                config_file=config,
                routing_url=urls["routing"],
                presence_url=urls["presence"],
                assist_url=urls["assist"],
                customer_demo=customer_demo,
                **sessions_settings,
            )
        ),
    }
    if with_assist:
        apps["assist"] = assist_app(dep.settings(AssistSettings, "assist", config_file=config))
    stop = asyncio.Event()
    devices: asyncio.Task[None] | None = None
    try:
        async with running(*(app.state.runtime for app in apps.values())), contextlib.AsyncExitStack() as servers:
            for name, app in apps.items():
                await servers.enter_async_context(served(app, socks[name]))
            if demo_devices:
                devices = asyncio.create_task(
                    demo.keep_devices_alive(dep.infra.bootstrap, dep.prefix, heartbeat_s, stop)
                )
            try:
                yield Stack(dep, urls["sessions"], urls["routing"], urls["presence"], urls["assist"], apps=apps)
            finally:
                stop.set()
                if devices is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(devices, 10)
    finally:
        for name in socks.keys() - apps.keys():  # a service left out: its address was never served
            socks[name].close()
