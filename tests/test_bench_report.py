"""`make bench` keeps what it measured when one scenario fails: the failure takes that scenario's
place in the report, with why, and the next scenario still runs."""

from __future__ import annotations

from typing import Any

from tools import bench


async def test_a_failed_scenario_is_reported_in_its_place_and_the_others_stand() -> None:
    report: dict[str, Any] = {}

    async def measured() -> dict[str, Any]:
        return {"throughput_sessions_per_s": 100.0}

    async def broken() -> dict[str, Any]:
        raise RuntimeError("assist-1 did not become healthy within 240s")

    await bench.attempt(report, "throughput", measured())
    await bench.attempt(report, "faults", broken())
    await bench.attempt(report, "fuzz", measured())
    assert report == {
        "throughput": {"throughput_sessions_per_s": 100.0},
        "faults": {"error": "RuntimeError: assist-1 did not become healthy within 240s"},
        "fuzz": {"throughput_sessions_per_s": 100.0},
    }
