"""assist's gauges on /metrics, read from its own tables at scrape time (shared.metrics). Its
latency histogram lives in prometheus_client's default registry, which /metrics exposes too."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from shared.db import Conn, Queries
from shared.metrics import gauge
from shared.runtime import Runtime

Q = Queries("assist")


async def collect(conn: Conn) -> Iterable[Metric]:
    row = await conn.fetchrow(Q.metrics_pending)
    assert row is not None  # an aggregate always returns one row
    pending = gauge("switchboard_assist_pending", "Conversations waiting for their debounced assist update")
    pending.add_metric([], row["pending"])
    overdue = gauge(
        "switchboard_assist_overdue_seconds", "How far past its due time the most overdue assist update is (0: none)"
    )
    overdue.add_metric([], row["overdue_s"])
    return [pending, overdue]


def register_metrics(runtime: Runtime[Any, Any]) -> None:
    runtime.metrics.add_sql("assist", collect)
