"""The worker threads and the time budget of assist's updates."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import REGISTRY

from assist.compute import Budget, Timings, Worker
from assist.followup import EMBED_CHUNK, chunks
from assist.store import Message


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_worker_computes_off_the_event_loop() -> None:
    worker = Worker(1)
    started, release = threading.Event(), threading.Event()

    def blocking() -> int:
        started.set()
        release.wait(10)
        return threading.get_ident()

    job = asyncio.ensure_future(worker.run(blocking))
    await asyncio.to_thread(started.wait, 10)
    # The loop is free while the worker computes: other coroutines run to completion meanwhile.
    assert await asyncio.gather(*(asyncio.sleep(0, i) for i in range(3))) == [0, 1, 2]
    assert not job.done()
    release.set()
    assert await job != threading.get_ident()
    await worker.close()


async def test_the_budget_counts_the_worker_jobs_time_only() -> None:
    now = [100.0]
    budget = Budget(0.5, "c-1", clock=lambda: now[0])
    now[0] += 5.0  # waiting on the database or a remote model: not charged
    assert not budget.spent and budget.elapsed == 5.0

    def job() -> str:
        now[0] += 0.6
        return "done"

    worker = Worker(1)
    assert await budget.run(worker, job) == "done"
    await worker.close()
    assert budget.spent and round(budget.used, 3) == 0.6


def test_a_spent_budget_is_counted_once_per_update_and_says_which_step() -> None:
    budget = Budget(0.5, "c-1")
    budget.charge(0.6)
    assert budget.spent
    before = {s: sample("switchboard_assist_update_budget_exceeded_total", step=s) for s in ("summary", "case_summary")}
    budget.cut("summary", "the opening sentences instead of TextRank")
    budget.cut("case_summary", "the same")
    assert budget.cuts == ["summary", "case_summary"]
    # One update over budget is one count, under the first step it cut.
    assert sample("switchboard_assist_update_budget_exceeded_total", step="summary") == before["summary"] + 1
    assert sample("switchboard_assist_update_budget_exceeded_total", step="case_summary") == before["case_summary"]


def test_timings_observe_only_the_kinds_an_update_produced() -> None:
    timings = Timings()
    with timings("articles"):
        pass
    with timings("articles"), timings("replies"):
        pass
    before = {k: sample("switchboard_assist_update_seconds_count", kind=k) for k in ("articles", "replies")}
    timings.observe(["articles"])
    assert sample("switchboard_assist_update_seconds_count", kind="articles") == before["articles"] + 1
    assert sample("switchboard_assist_update_seconds_count", kind="replies") == before["replies"]


def test_new_messages_are_embedded_in_chunks_the_budget_can_stop_between() -> None:
    def msg(i: int, chars: int) -> Message:
        return Message(f"m{i}", "customer", "x" * chars, None, False, None)

    def ids(messages: list[Message]) -> list[list[str]]:
        return [[m.message_id for m in chunk] for chunk in chunks(messages)]

    assert ids([msg(i, 40) for i in range(EMBED_CHUNK + 2)]) == [
        [f"m{i}" for i in range(EMBED_CHUNK)],
        [f"m{EMBED_CHUNK}", f"m{EMBED_CHUNK + 1}"],
    ]
    # Long messages weigh what the encoder reads of them (256 tokens): two or so per chunk.
    assert ids([msg(0, 8000), msg(1, 8000), msg(2, 8000), msg(3, 30)]) == [["m0", "m1"], ["m2", "m3"]]
    assert chunks([]) == []
