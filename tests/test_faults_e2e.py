"""Fault injection under load (issue 12, item 6; short version): SIGKILL of each service, of the
broker and of PostgreSQL in turn, each brought back, and a burst of bad records on every consumed
topic, on an embedded Kafka and PostgreSQL of their own. Nothing may be lost, assigned twice or
over capacity, and bad input must not make any consumer exit."""

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


async def test_killing_each_service_the_broker_and_postgres_under_load_loses_nothing(own: faults.OwnStack) -> None:
    report = await faults.fault_suite(own, faults.SHORT, replicas=1)
    (own.layout.state / "faults.json").write_text(json.dumps(report, indent=2))
    assert [f["fault"] for f in report["faults"]] == [
        *(f"SIGKILL {svc}" for svc in stack.SERVICES),
        "SIGKILL Kafka broker",
        "SIGKILL PostgreSQL",
    ]
    assert report["arrivals"] > 0
    assert report["bad_input"]["consumers_caught_up"], report["bad_input"]
    assert report["consumer_exits_on_bad_input"] == 0, report["bad_input"]["exited"]
    assert report["conversations_lost"] == 0, report["lost_examples"]
    assert report["assigned_twice"] == 0, report["assigned_twice_examples"]
    assert report["capacity_violations"] == 0, report["capacity"]
