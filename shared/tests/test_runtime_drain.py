"""Graceful drain (Runtime.stop): the order of the steps and the time budget, on stand-ins for the
broker, consumers, relay and pool (the end-to-end test is tests/test_health_e2e.py)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from shared.runtime import Runtime, http_grace_s
from shared.settings import ServiceSettings


def drained_runtime(order: list[str], *, hang: str = "", drain_timeout_s: float = 20.0) -> Runtime[Any, Any]:
    settings = ServiceSettings(drain_timeout_s=drain_timeout_s)
    rt: Runtime[Any, Any] = Runtime("svc", settings, package="shared", produces={}, store=lambda tx: None)

    def step(name: str, result: Any = None) -> Any:
        async def run(*_: Any) -> Any:
            if name == hang:
                await asyncio.sleep(3600)
            order.append(name)
            return result

        return run

    async def background() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            order.append("background")

    rt.consumers = [SimpleNamespace(subscriber=SimpleNamespace(stop=step("consumers")))]  # type: ignore[list-item]
    rt.relay = SimpleNamespace(drain=step("relay", 42))  # type: ignore[assignment]
    rt.broker = SimpleNamespace(stop=step("broker"))  # type: ignore[assignment]
    rt._pool = SimpleNamespace(close=step("pool"), terminate=lambda: order.append("pool terminated"))  # type: ignore[assignment]
    rt.stopping_hooks.append(step("hook"))
    rt._tasks = [("loop", asyncio.ensure_future(background()))]
    rt.running_state = "running"
    return rt


async def test_drain_stops_fetching_then_hooks_then_flushes_the_outbox_before_the_producer() -> None:
    order: list[str] = []
    rt = drained_runtime(order)
    await asyncio.sleep(0)  # the background loop is running
    await rt.stop()
    assert order == ["consumers", "background", "hook", "relay", "broker", "pool"]
    assert rt.running_state == "stopped" and not rt.ready
    await rt.stop()  # a second stop does nothing
    assert len(order) == 6


async def test_a_step_that_hangs_is_abandoned_and_the_rest_still_runs_within_the_budget() -> None:
    order: list[str] = []
    rt = drained_runtime(order, hang="consumers", drain_timeout_s=4.0)
    started = time.monotonic()
    await rt.stop()
    took = time.monotonic() - started
    assert took < 4.0 - http_grace_s(rt.settings), took
    assert order == ["background", "hook", "relay", "broker", "pool"]


async def test_a_pool_that_does_not_close_in_time_is_terminated() -> None:
    order: list[str] = []
    rt = drained_runtime(order, hang="pool", drain_timeout_s=4.0)
    await rt.stop()
    assert order[-1] == "pool terminated"
