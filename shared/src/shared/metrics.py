"""Prometheus metrics of one service instance, served as text on `/metrics`.

Three kinds, one exposition:
- what the process counts as it goes, in prometheus_client's default registry: FastStream's
  publish metrics (`faststream_*`, from `KafkaPrometheusMiddleware`, labelled
  `app_name=<service>`; consumers handle batches straight from the poll, so their consumption is
  in the messaging counters), the messaging counters (`switchboard_events_emitted_total`, dead letters,
  records consumed, ...) and whatever a service defines itself (assist's latency histogram);
- gauges computed at scrape time from the service's own database (read-only transaction, short
  statement timeout): each service registers its `sources` (`SERVICE/metrics.py` +
  `sql/metrics.sql`), and every service has its outbox's size and age;
- consumer lag per topic: this instance's assigned partitions, committed offset vs end offset.

Scrape-time gauges are cached for `CACHE_S` and computed single-flight, so frequent scrapes cost
the database one round per `CACHE_S`. A source that fails (database down, timeout) is reported by
`switchboard_metrics_source_up{source} 0` and leaves its gauges out rather than failing the scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shared.db import Conn, Queries
from shared.health import kafka_consumer

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from shared.messaging import Consumer
    from shared.runtime import Runtime

log = structlog.get_logger("switchboard.metrics")

CACHE_S = 2.0
# Kafka sources make a few requests per consumer; the database's get `ready_probe_timeout_s`.
KAFKA_TIMEOUT_S = 5.0
CONTENT_TYPE = CONTENT_TYPE_LATEST
Q = Queries("shared")

# A source reads the service's database on a read-only connection and returns metric families.
SqlSource = Callable[[Conn], Awaitable[Iterable[Metric]]]
# A source that needs no database (in-process figures, Kafka).
Source = Callable[[], Awaitable[Iterable[Metric]]]


def gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    """A gauge family to fill with `add_metric(label_values, value)`."""
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class _Families:
    """A collector that hands out the families computed at the last refresh."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class ScrapeMetrics:
    """The scrape-time part of one runtime's `/metrics`."""

    def __init__(self, runtime: Runtime[Any, Any]) -> None:
        self.runtime = runtime
        self.sql_sources: dict[str, SqlSource] = {"outbox": self._outbox}
        self.sources: dict[str, Source] = {"consumer_lag": self._consumer_lag}
        self._families = _Families()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._families)  # type: ignore[arg-type]
        self._at = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    def add_sql(self, name: str, source: SqlSource) -> None:
        """Gauges read from the service's database at scrape time."""
        self.sql_sources[name] = source

    def add(self, name: str, source: Source) -> None:
        """Gauges computed at scrape time without the database."""
        self.sources[name] = source

    @property
    def timeout_s(self) -> float:
        return self.runtime.settings.ready_probe_timeout_s

    async def exposition(self) -> bytes:
        """The whole text exposition: the default registry, then the scrape-time gauges."""
        if time.monotonic() - self._at >= CACHE_S:
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(self._refresh())
            await asyncio.shield(self._refreshing)
        return generate_latest(REGISTRY) + generate_latest(self._registry)

    async def _refresh(self) -> None:
        families: list[Metric] = []
        up = gauge(
            "switchboard_metrics_source_up",
            "1 when the scrape-time source answered at the last scrape, 0 when it failed (see the log)",
            ["service", "source"],
        )
        if self.runtime.running_state == "running" and not self.runtime.in_memory:
            results = await self._run_sql_sources()
            for name, source in self.sources.items():
                results[name] = await self._guarded(name, source(), KAFKA_TIMEOUT_S)
            for name, result in results.items():
                up.add_metric([self.runtime.name, name], 0 if result is None else 1)
                families.extend(result or ())
        families.append(up)
        self._families.families = families
        self._at = time.monotonic()

    async def _run_sql_sources(self) -> dict[str, list[Metric] | None]:
        results: dict[str, list[Metric] | None] = dict.fromkeys(self.sql_sources)
        timeout_ms = max(1, int(self.timeout_s * 1000))
        try:
            async with asyncio.timeout(self.timeout_s):
                conn_cm = self.runtime.pool.acquire()
                async with conn_cm as conn:
                    for name, source in self.sql_sources.items():
                        async with conn.transaction(readonly=True):
                            # a literal: SET takes no parameters; the value is an int we computed
                            await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
                            results[name] = list(await source(conn))
        except Exception as exc:
            failed = [n for n, r in results.items() if r is None]
            log.warning("metrics_source_failed", service=self.runtime.name, sources=failed, error=repr(exc))
        return results

    async def _guarded(self, name: str, pending: Awaitable[Iterable[Metric]], timeout_s: float) -> list[Metric] | None:
        try:
            async with asyncio.timeout(timeout_s):
                return list(await pending)
        except Exception as exc:
            log.warning("metrics_source_failed", service=self.runtime.name, sources=[name], error=repr(exc))
            return None

    async def _outbox(self, conn: Conn) -> Iterable[Metric]:
        row = await conn.fetchrow(Q.outbox_figures)
        assert row is not None  # an aggregate always returns one row
        rows = gauge("switchboard_outbox_rows", "Events committed but not yet published to Kafka", ["service"])
        oldest = gauge(
            "switchboard_outbox_oldest_seconds",
            "Age of the oldest unpublished event in the outbox (0 when empty)",
            ["service"],
        )
        dead = gauge(
            "switchboard_outbox_dead_rows",
            "Outbox rows the broker can never take (too large), kept with their reason",
            ["service"],
        )
        rows.add_metric([self.runtime.name], row["pending"])
        oldest.add_metric([self.runtime.name], float(row["oldest_s"] or 0.0))
        dead.add_metric([self.runtime.name], row["dead"])
        return [rows, oldest, dead]

    async def _consumer_lag(self) -> Iterable[Metric]:
        lag = gauge(
            "switchboard_consumer_lag",
            "Records not yet committed by this instance's consumers, over the partitions assigned to it "
            "(sum over instances: the group's lag)",
            ["service", "topic"],
        )
        totals = await asyncio.gather(*(self._lag_of(c) for c in self.runtime.consumers))
        for consumer, total in zip(self.runtime.consumers, totals, strict=True):
            lag.add_metric([self.runtime.name, consumer.topic], total)
        return [lag]

    async def _lag_of(self, consumer: Consumer) -> int:
        kc = kafka_consumer(consumer)
        if kc is None or not kc.assignment():
            return 0
        assigned = sorted(kc.assignment(), key=lambda tp: (tp.topic, tp.partition))
        admin = self.runtime.broker.config.broker_config.admin.client
        committed, ends = await asyncio.gather(
            admin.list_consumer_group_offsets(consumer.group_id, partitions=assigned), kc.end_offsets(assigned)
        )
        # a partition this group never committed on is read from its beginning (auto_offset_reset)
        never = [tp for tp in assigned if tp not in committed or committed[tp].offset < 0]
        starts = await kc.beginning_offsets(never) if never else {}
        return sum(max(ends[tp] - (starts[tp] if tp in starts else committed[tp].offset), 0) for tp in assigned)


def in_process_gauge(name: str, documentation: str, value: Callable[[], float]) -> Source:
    """A source for one unlabelled in-process figure (e.g. connected WebSockets)."""

    async def source() -> Iterable[Metric]:
        g = gauge(name, documentation)
        g.add_metric([], value())
        return [g]

    return source


def prometheus_broker(broker: KafkaBroker, service: str) -> None:
    """Put FastStream's consume/publish metrics on `broker` (before its subscribers are declared)."""
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware

    broker.insert_middleware(KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service))
