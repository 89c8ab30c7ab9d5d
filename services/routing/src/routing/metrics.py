"""routing's gauges on /metrics, read from its own tables at scrape time (shared.metrics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from shared.db import Conn, Queries
from shared.metrics import gauge
from shared.runtime import Runtime

Q = Queries("routing")


async def collect(conn: Conn) -> Iterable[Metric]:
    waiting = gauge(
        "switchboard_routing_waiting_work",
        "Work waiting per queue: queued (no agent yet) or offered (waiting for the agent's answer)",
        ["queue", "state"],
    )
    longest = gauge("switchboard_routing_longest_wait_seconds", "Longest current wait per queue", ["queue"])
    for row in await conn.fetch(Q.metrics_waiting_work):
        waiting.add_metric([row["queue"], "queued"], row["queued"])
        waiting.add_metric([row["queue"], "offered"], row["offered"])
        longest.add_metric([row["queue"]], row["longest_wait_s"])
    routable = gauge(
        "switchboard_routing_routable_agents",
        "Agents configured for the queue whose presence the queue allows (0: nobody can take its work)",
        ["queue"],
    )
    for row in await conn.fetch(Q.metrics_routable_agents):
        routable.add_metric([row["queue"]], row["agents"])
    used = gauge("switchboard_routing_capacity_used", "Capacity in use per channel (agents not offline)", ["channel"])
    total = gauge(
        "switchboard_routing_capacity_total", "Capacity configured per channel (agents not offline)", ["channel"]
    )
    for row in await conn.fetch(Q.metrics_capacity):
        used.add_metric([row["channel"]], row["used"])
        total.add_metric([row["channel"]], row["total"])
    agents = gauge("switchboard_routing_agents", "Configured agents per presence, as routing sees it", ["presence"])
    for row in await conn.fetch(Q.metrics_agents_by_presence):
        agents.add_metric([row["presence"]], row["agents"])
    return [waiting, longest, routable, used, total, agents]


def register_metrics(runtime: Runtime[Any, Any]) -> None:
    runtime.metrics.add_sql("routing", collect)
