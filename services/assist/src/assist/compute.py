"""assist's CPU work off the event loop, on a time budget per update, and measured.

The encoder (numpy's matrix products, the tokenizers' Rust code) releases the GIL for most of its
time, and TextRank and the patterns run over bounded windows, so worker threads keep the event
loop answering while an update computes. Measured on the 2-core dev box (three updates of 8 KB
hostile messages, a 1 ms ticker on the loop): run on the loop, the loop stalled 7.5-8.9 s; on two
worker threads its longest stall was 17-43 ms, p99 6 ms. A process pool would need the model
loaded in each worker and every transcript pickled across, for work that is already bounded.

The budget is cooperative: each update charges its worker jobs' time to it, checks it before each
expensive step and, once it is spent, takes the cheaper path (fewer new messages embedded now and
the rest on the next update, the customer's opening sentences instead of TextRank), counts it and
logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog
from prometheus_client import Counter, Histogram

log = structlog.get_logger("switchboard.assist.compute")
T = TypeVar("T")

UPDATE_SECONDS = Histogram(
    "switchboard_assist_update_seconds",
    "Time to produce one kind of assist output in a conversation's update (articles: new messages' "
    "vectors and the article ranking; replies: reply ranking and learned replies; summary: a summary "
    "or a case-summary draft)",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUDGET_EXCEEDED = Counter(
    "switchboard_assist_update_budget_exceeded",
    "Conversation updates that spent their time budget (ASSIST_UPDATE_BUDGET_MS) and took a cheaper path for a step",
    ["step"],
)


class Budget:
    """One update's time budget for its CPU work: the wall time of its jobs on the worker threads
    (waits on the database or a remote model are not counted: they hold nothing up). `spent` once
    it has run out; `cut` records a step taken the cheap way."""

    def __init__(self, seconds: float, conversation_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.conversation_id = conversation_id
        self.clock = clock
        self.started = clock()
        self.used = 0.0
        self.cuts: list[str] = []

    @property
    def elapsed(self) -> float:
        """Wall time since the update began (for the logs)."""
        return self.clock() - self.started

    @property
    def spent(self) -> bool:
        return self.used >= self.seconds

    def charge(self, seconds: float) -> None:
        self.used += seconds

    async def run(self, worker: Worker, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on the worker, its time charged to the budget."""
        started = self.clock()
        try:
            return await worker.run(fn, *args)
        finally:
            self.charge(self.clock() - started)

    def cut(self, step: str, detail: str) -> None:
        """Record that `step` took the cheaper path because the budget was spent."""
        if not self.cuts:
            BUDGET_EXCEEDED.labels(step).inc()
        self.cuts.append(step)
        log.warning(
            "assist_update_over_budget",
            conversation_id=self.conversation_id,
            step=step,
            detail=detail,
            used_ms=round(self.used * 1000),
            elapsed_ms=round(self.elapsed * 1000),
            budget_ms=round(self.seconds * 1000),
        )


class Worker:
    """A small thread pool for assist's CPU work, so the event loop never runs it."""

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="assist-cpu")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


class Timings:
    """One update's time per kind of output, summed over its steps, observed once at its end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - started

    def observe(self, kinds: Iterable[str]) -> None:
        """Observe the kinds the update produced (time spent on a kind it did not produce is not one)."""
        for kind in kinds:
            UPDATE_SECONDS.labels(kind).observe(self.seconds.get(kind, 0.0))
