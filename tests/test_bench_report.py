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


def test_capacity_is_freed_for_the_agents_oldest_close_whichever_record_comes_first() -> None:
    """`capacity.changed` (keyed by agent) may arrive before or after `work.released` (keyed by
    conversation): a unit fewer in use frees the agent's oldest close, and a reservation frees none."""
    stages = bench.Stages()
    stages.capacity("agent-1", 1, now=1.0)  # the first offer's reservation: nothing to free
    stages.capacity("agent-1", 2, now=2.0)
    for cid, at in (("c-1", 3.0), ("c-2", 3.5)):
        stages.close_sent("agent-1", cid, at)
    stages.capacity("agent-1", 3, now=4.0)  # a third reservation: still nothing freed
    stages.capacity("agent-1", 2, now=5.0)  # one unit fewer: c-1
    stages.mark("work_released", "c-1", 5.5)  # its release arrives after the capacity
    stages.capacity("agent-1", 0, now=6.0)  # two units fewer: c-2 (and no third close to free)
    assert stages.at["capacity_freed"] == {"c-1": 5.0, "c-2": 6.0}
    freed = stages.between("close_sent", "capacity_freed")
    assert (freed["n"], freed["p50_ms"], freed["p99_ms"]) == (2, 2000.0, 2500.0)
    assert not stages.closing["agent-1"]


def test_the_warm_up_is_a_few_seconds_of_the_load_and_is_never_timed_with_it() -> None:
    assert bench.warmup_conversations(28) == 84
    assert bench.warmup_conversations(1000) == bench.WARMUP_MAX
    stages = bench.Stages("b-")
    stages.mark("arrival_sent", "w-1", 1.0)  # a warm-up conversation: not timed
    stages.close_sent("agent-1", "w-1", 2.0)
    stages.mark("arrival_sent", "b-1", 1.0)
    stages.mark("offer_received", "b-1", 1.02)
    stages.mark("offer_received", "w-1", 1.5)
    assert set(stages.at["arrival_sent"]) == {"b-1"} and not stages.closing["agent-1"]
    assert stages.between("arrival_sent", "offer_received")["n"] == 1
