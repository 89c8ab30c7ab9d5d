"""Rolling restart under load (issue 11, item 8): two processes of every service on an embedded
Kafka and PostgreSQL of their own, restarted one by one with SIGTERM while conversations arrive
and agents take them; nothing may be lost, assigned twice or over capacity."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tools import faults, stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def own() -> AsyncIterator[faults.OwnStack]:
    yield await asyncio.to_thread(faults.shared_stack)


async def test_a_rolling_restart_under_load_loses_nothing(own: faults.OwnStack) -> None:
    report = await faults.rolling(own, faults.SHORT, replicas=2)
    (own.layout.state / "rolling.json").write_text(json.dumps(report, indent=2))
    names = [f"{svc}-{r}" for svc in stack.SERVICES for r in (1, 2)]
    assert [s["name"] for s in report["roll_steps"]] == names
    assert all(s["new_pid"] != s["old_pid"] for s in report["roll_steps"])
    assert report["arrivals"] > 0
    assert report["conversations_lost"] == 0, report["lost_examples"]
    assert report["assigned_twice"] == 0, report["assigned_twice_examples"]
    assert report["capacity_violations"] == 0, report["capacity"]
