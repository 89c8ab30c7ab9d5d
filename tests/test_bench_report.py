"""`make bench` keeps what it measured when one scenario fails: the failure takes that scenario's
place in the report, with why, and the next scenario still runs."""

from __future__ import annotations

from collections import namedtuple
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


def test_the_machines_split_of_cpu_time_is_in_percent_and_keeps_steal() -> None:
    cpu = namedtuple("cpu", "user system idle iowait steal")
    before, after = cpu(100, 50, 1000, 5, 10), cpu(160, 70, 1090, 5, 40)  # 200 s of core time
    split = bench.machine_split(before, after)
    assert split == {"user": 30.0, "system": 10.0, "idle": 45.0, "iowait": 0.0, "steal": 15.0}
