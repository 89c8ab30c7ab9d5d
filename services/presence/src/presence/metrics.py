"""presence's gauges on /metrics, read from its own tables at scrape time (shared.metrics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from shared.db import Conn, Queries
from shared.metrics import gauge
from shared.runtime import Runtime

Q = Queries("presence")


async def collect(conn: Conn) -> Iterable[Metric]:
    agents = gauge(
        "switchboard_presence_agents", "Agents per presence status and its base presence", ["status", "base"]
    )
    for row in await conn.fetch(Q.metrics_agents_by_status):
        agents.add_metric([row["status"], row["base"]], row["agents"])
    devices = gauge("switchboard_presence_devices", "Devices signed in and beating")
    devices.add_metric([], await conn.fetchval(Q.metrics_devices))
    return [agents, devices]


def register_metrics(runtime: Runtime[Any, Any]) -> None:
    runtime.metrics.add_sql("presence", collect)
