"""What the browser tests share: console watching, screenshots, accessibility checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tools import browser, stack

SCREENSHOTS = stack.ROOT / ".state" / "artifacts" / "screenshots"
WAIT_MS = 30_000  # two shared cores: generous, and never an assertion about speed
# What Chromium itself logs when a WebSocket it was asked to open cannot connect (a reconnect
# attempt): tolerated only as long as the page's own code logs no error.
SOCKET_NOISE = re.compile(r"^WebSocket connection to .* failed")


def chromium_or_fail() -> str:
    try:
        return browser.chromium_path()
    except browser.BrowserMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class Console:
    """Errors a page logged (console.error, uncaught exceptions) and dialogs it opened."""

    errors: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self, page: Any, name: str) -> Any:
        def on_console(msg: Any) -> None:
            if msg.type != "error":
                return
            text = f"{name}: {msg.text}"
            (self.noise if SOCKET_NOISE.match(msg.text) else self.errors).append(text)

        async def on_dialog(dialog: Any) -> None:  # an alert() would be an injected script running
            self.dialogs.append(f"{name}: {dialog.type} {dialog.message}")
            await dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: uncaught {exc}"))
        page.on("dialog", on_dialog)
        return page

    def check(self) -> None:
        if self.noise:
            print("tolerated WebSocket reconnect noise:", *self.noise, sep="\n  ")
        assert not self.dialogs, f"pages opened dialogs: {self.dialogs}"
        assert not self.errors, "console errors:\n" + "\n".join(self.errors)


@dataclass
class Shots:
    """Screenshots written as test artefacts; `taken` lists them for the report."""

    taken: list[str] = field(default_factory=list)

    async def take(self, page: Any, name: str, **kw: Any) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), **kw)
        self.taken.append(str(path.relative_to(stack.ROOT)))

    def lines(self) -> Iterator[str]:
        yield from self.taken


async def no_critical_violations(page: Any, name: str) -> list[dict[str, Any]]:
    """axe-core on the page as it is; prints every violation, fails on a critical one."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    print(f"axe {name}: {len(violations)} violation(s)")
    for v in violations:
        targets = [n.get("target") for n in v.get("nodes", [])][:3]
        print(f"axe {name}: {v.get('impact')} {v['id']}: {v.get('help')} ({len(v.get('nodes', []))} nodes) {targets}")
    critical = [v["id"] for v in violations if v.get("impact") == "critical"]
    assert not critical, f"axe on {name}: critical violations {critical}"
    return violations
