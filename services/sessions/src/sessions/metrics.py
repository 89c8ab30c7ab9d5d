"""sessions' gauges on /metrics: open sessions from its tables, the gateway's connected
WebSockets from its process (shared.metrics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from sessions.gateway import Sockets
from shared.db import Conn, Queries
from shared.metrics import gauge, in_process_gauge
from shared.runtime import Runtime

Q = Queries("sessions")


async def collect(conn: Conn) -> Iterable[Metric]:
    sessions = gauge("switchboard_sessions_open", "Open sessions per kind (home, conversation, record)", ["kind"])
    for row in await conn.fetch(Q.metrics_open_sessions):
        sessions.add_metric([row["kind"]], row["sessions"])
    offers = gauge("switchboard_sessions_pending_offers", "Offers shown to agents, not answered yet")
    offers.add_metric([], await conn.fetchval(Q.metrics_pending_offers))
    return [sessions, offers]


def register_metrics(runtime: Runtime[Any, Any], sockets: Sockets) -> None:
    runtime.metrics.add_sql("sessions", collect)
    runtime.metrics.add(
        "gateway",
        in_process_gauge(
            "switchboard_gateway_websockets",
            "WebSockets open on this instance of the gateway (agents, supervisors, customer demo)",
            lambda: len(sockets.open),
        ),
    )
