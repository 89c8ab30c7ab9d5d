"""Scrape-time metrics (shared.metrics) on stand-ins for the runtime: a failing source is reported
and left out, the others still answer; scrapes within the cache cost one round of queries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import ScrapeMetrics, gauge, in_process_gauge
from shared.settings import ServiceSettings


class FakeConn:
    def __init__(self) -> None:
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def transaction(self, readonly: bool = False) -> AsyncIterator[None]:
        assert readonly
        yield

    async def execute(self, sql: str) -> None:
        self.statements.append(sql)

    async def fetchrow(self, _: str) -> dict[str, Any]:
        return {"pending": 4, "oldest_s": 2.5, "dead": 1}


def runtime(conn: FakeConn) -> Any:
    @contextlib.asynccontextmanager
    async def acquire() -> AsyncIterator[FakeConn]:
        yield conn

    return SimpleNamespace(
        name="svc",
        settings=ServiceSettings(ready_probe_timeout_s=0.5),
        running_state="running",
        in_memory=False,
        consumers=[],
        pool=SimpleNamespace(acquire=acquire),
    )


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


async def test_sources_answer_and_a_failing_one_is_reported_not_fatal() -> None:
    conn = FakeConn()
    metrics = ScrapeMetrics(runtime(conn))
    calls = []

    async def queues(_: Any) -> Iterable[Metric]:
        calls.append(1)
        g = gauge("test_waiting", "waiting", ["queue"])
        g.add_metric(["chat"], 3)
        return [g]

    async def broken() -> Iterable[Metric]:
        raise ConnectionError("no route")

    metrics.add_sql("queues", queues)
    metrics.add("broken", broken)
    metrics.add("sockets", in_process_gauge("test_sockets", "sockets", lambda: 2))
    seen = samples(await metrics.exposition())
    assert seen[("test_waiting", (("queue", "chat"),))] == 3
    assert seen[("test_sockets", ())] == 2
    assert seen[("switchboard_outbox_rows", (("service", "svc"),))] == 4
    assert seen[("switchboard_outbox_oldest_seconds", (("service", "svc"),))] == 2.5
    assert seen[("switchboard_outbox_dead_rows", (("service", "svc"),))] == 1
    up = {labels: v for (name, labels), v in seen.items() if name == "switchboard_metrics_source_up"}
    assert up[(("service", "svc"), ("source", "broken"))] == 0
    assert up[(("service", "svc"), ("source", "queues"))] == 1
    assert "SET LOCAL statement_timeout = 500" in conn.statements

    await asyncio.gather(*(metrics.exposition() for _ in range(5)))
    assert len(calls) == 1  # cached: one round of queries per CACHE_S


async def test_a_service_not_running_serves_the_process_metrics_only() -> None:
    rt = runtime(FakeConn())
    rt.running_state = "starting"
    seen = samples(await ScrapeMetrics(rt).exposition())
    scraped = {"switchboard_outbox_rows", "switchboard_outbox_oldest_seconds", "switchboard_outbox_dead_rows"}
    assert not any(name in scraped for name, _ in seen)  # the counters of a relay that ran may be there
    assert any(name.startswith("python_") or name.startswith("process_") for name, _ in seen)
