"""`make bench`: end-to-end load on real Kafka + PostgreSQL + the four services; prints one JSON.

A producer publishes arrivals at a fixed rate; a simulated client accepts every offer at once and
closes each session after a handle time. Measured in the same run: arrival->offer.received and
arrival->session.started latency (p50/p95/p99), sustained throughput, capacity violations, each
service's peak RSS, and the floor: a raw aiokafka produce->consume hop on the same broker and a
single-row PostgreSQL commit. Ratios are to that floor.

python -m tools.bench [--scenario all|peak|throughput|replicas|scale|assist|browser|faults|fuzz]
                      [--rate 1000] [--duration 10] [--agents 1000] [--handle-time 0.5] [--scale-rate 14]
                      [--peak-rate 28] [--peak-duration 60] [--replica SERVICE=N ...] [--profile DIR]

Scenarios: `peak` (a real centre's busiest minute: 28 arrivals/s, 1,000 agents, 60 s; arrival->offer
percentiles against the floor measured at idle before the load, each stage of the path, CPU ms per
conversation per service), `throughput` (the rate above with the floor measured beside it), `replicas` (the
throughput load again with two processes of the service that used the most CPU per conversation: the
figure at 1 and at 2 replicas) and `scale` (the same
load at 1,000 and at 10,000 agents, arrival->offer latency of both and their ratio) and `assist`
(tools/bench_assist.py: recall@3, hit@3 and per-message latency on the evaluation set) and `browser`
(tools/bench_browser.py: the agent workspace in Chromium with 10 sessions of 200 messages: first
render and session switch, in main-thread milliseconds).

Every load scenario also says where the work went, per conversation: CPU milliseconds of each service
(replicas summed), of the broker and of PostgreSQL when they run here; events published per topic
(end offsets before and after); statements and transactions (COMMITs) each service's database role
ran (pg_stat_statements), and the deadlocks PostgreSQL broke; the CPU per second of the services, the
broker and PostgreSQL at idle.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared import contracts as c
from shared import topics
from shared.messaging import whole_fetches
from tools import stack, testing


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return round(s[k], 3)


async def paced(n: int, rate: float) -> AsyncIterator[int]:
    """0..n-1 at a fixed rate (no catching up in bursts beyond the schedule)."""
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(n):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i


def summary(values_ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(values_ms),
        "p50_ms": pct(values_ms, 50),
        "p95_ms": pct(values_ms, 95),
        "p99_ms": pct(values_ms, 99),
        "mean_ms": round(statistics.fmean(values_ms), 3) if values_ms else None,
    }


async def kafka_floor(bootstrap: str, n: int = 2000, rate: float = 1000.0) -> dict[str, Any]:
    """Raw produce->consume hop on the same broker, at the same rate, acks=all like the services."""
    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"floor-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    lat: list[float] = []

    async def consume() -> None:
        while len(lat) < n:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for recs in batch.values():
                lat.extend((now - float(r.value)) * 1000 for r in recs)

    task = asyncio.create_task(consume())
    async for i in paced(n, rate):
        await producer.send(topic, repr(time.perf_counter()).encode(), key=str(i).encode())
    await asyncio.wait_for(task, 60)
    await producer.stop()
    await consumer.stop()
    return summary(lat)


async def postgres_floor(url: str, n: int = 2000) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TEMP TABLE floor (id serial PRIMARY KEY, v text)")
        lat = []
        for i in range(n):
            t = time.perf_counter()
            async with conn.transaction():
                await conn.execute("INSERT INTO floor (v) VALUES ($1)", str(i))
            lat.append((time.perf_counter() - t) * 1000)
        return summary(lat)
    finally:
        await conn.close()


class RssSampler:
    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.procs = {name: psutil.Process(p.pid) for name, p in procs.items()}
        self.peak: dict[str, int] = dict.fromkeys(procs, 0)
        self.cpu0 = {name: self._cpu(p) for name, p in self.procs.items()}

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        """The process's CPU seconds and its live children's: under `--profile` the process started
        is py-spy, and the service is its child."""
        total = 0.0
        for p in (proc, *proc.children(recursive=True)):
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def cpu_seconds(self) -> dict[str, float]:
        return {name: round(self._cpu(p) - self.cpu0[name], 2) for name, p in self.procs.items()}

    async def run(self) -> None:
        while True:
            for name, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss + sum(ch.memory_info().rss for ch in proc.children(recursive=True))
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], rss)
            await asyncio.sleep(1.0)


# How long the bench watches the services idle (every agent signed in, nothing arriving).
IDLE_SAMPLE_S = 5.0
# The broker's warm-up (`--warmup-records`): raw records per second.
WARMUP_RATE = 2000.0
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::ffff:127.0.0.1", "::1", "0.0.0.0", "::"})


class InfraCpu:
    """CPU seconds of the broker and of PostgreSQL (postmaster and backends) when they run on this
    machine: found by the ports they listen on (empty for a remote cluster)."""

    def __init__(self, infra: testing.Infrastructure) -> None:
        ports = {"kafka": _port_of(infra.bootstrap), "postgres": _port_of(infra.admin_url.split("@")[-1])}
        self.procs: dict[str, psutil.Process] = {}
        with contextlib.suppress(psutil.Error, OSError):
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status != psutil.CONN_LISTEN or conn.pid is None:
                    continue
                for name, port in ports.items():
                    if port and conn.laddr.port == port and conn.laddr.ip in LOCAL_ADDRESSES:
                        self.procs[name] = psutil.Process(conn.pid)

    def cpu_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            try:
                family = [proc, *proc.children(recursive=True)] if name == "postgres" else [proc]
                # backends that ended count in the postmaster's children times
                ended = proc.cpu_times()
                total = ended.children_user + ended.children_system if name == "postgres" else 0.0
                for p in family:
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        total += t.user + t.system
                out[name] = total
            except psutil.Error:
                continue
        return out


def _port_of(address: str) -> int | None:
    host_port = address.split(",")[0].split("/")[0]
    try:
        return int(host_port.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


async def partition_ends(bootstrap: str, names: list[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of the topics `names` (those that exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        parts = [
            TopicPartition(desc["topic"], p["partition"])
            for desc in await admin.describe_topics(names)
            if desc.get("error_code", 0) == 0 and desc["topic"] in names
            for p in desc["partitions"]
        ]
        return dict(await consumer.end_offsets(parts)) if parts else {}
    finally:
        await consumer.stop()
        await admin.close()


async def topic_offsets(dep: testing.Deployment) -> dict[str, int]:
    """Records in each of the deployment's topics so far (the sum of its partitions' end offsets)."""
    names = {dep.topic(spec.name): spec.name for spec in topics.TOPICS}
    out: collections.Counter[str] = collections.Counter()
    for tp, end in (await partition_ends(dep.infra.bootstrap, list(names))).items():
        out[names[tp.topic]] += end
    return dict(out)


DEADLOCKS = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"


class StatementCounter:
    """Statements each service's database role ran during the load (pg_stat_statements, when the
    server preloads it: the embedded PostgreSQL does), counted per conversation; and the deadlocks
    PostgreSQL broke in the deployment's database meanwhile (each one a transaction retried)."""

    def __init__(self, conn: asyncpg.Connection, preloaded: bool, deadlocks: int) -> None:
        self.conn = conn
        self.preloaded = preloaded
        self.deadlocks_before = deadlocks

    @classmethod
    async def start(cls, dep: testing.Deployment) -> StatementCounter:
        conn = await asyncpg.connect(dep.database_url)
        deadlocks = await conn.fetchval(DEADLOCKS)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
        except asyncpg.PostgresError:
            return cls(conn, False, deadlocks)
        return cls(conn, True, deadlocks)

    async def deadlocks(self) -> int:
        """Deadlocks since `start` (the statistics collector may report the last second's late)."""
        return int(await self.conn.fetchval(DEADLOCKS)) - int(self.deadlocks_before)

    async def per_conversation(self, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Statements, and transactions (their COMMITs), per conversation and service. Their ratio is
        what a batch costs: at a low rate every record is a transaction of its own, and its BEGIN,
        inbox claim, outbox insert and COMMIT are most of the statements."""
        if not self.preloaded:
            unavailable = {"unavailable": "PostgreSQL does not preload pg_stat_statements"}
            return unavailable, unavailable
        rows = await self.conn.fetch(
            "SELECT r.rolname AS role, sum(s.calls)::bigint AS calls, sum(s.total_exec_time) AS exec_ms, "
            "coalesce(sum(s.calls) FILTER (WHERE upper(rtrim(s.query, '; ')) = 'COMMIT'), 0)::bigint AS commits "
            "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
            "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "GROUP BY r.rolname"
        )
        roles = {stack.service_role(svc): svc for svc in stack.SERVICES}
        ours = [r for r in rows if r["role"] in roles]
        statements: dict[str, Any] = {roles[r["role"]]: round(r["calls"] / n, 1) for r in ours}
        statements["total"] = round(sum(r["calls"] for r in ours) / n, 1)
        statements["server_exec_ms_total"] = round(sum(r["exec_ms"] for r in ours) / n, 2)
        transactions: dict[str, Any] = {roles[r["role"]]: round(r["commits"] / n, 2) for r in ours}
        transactions["total"] = round(sum(r["commits"] for r in ours) / n, 2)
        return statements, transactions

    async def close(self) -> None:
        await self.conn.close()


def bench_config(agents: int) -> dict[str, Any]:
    demo = yaml.safe_load((stack.ROOT / "deploy/demo/switchboard.yaml").read_text())
    routing = demo["routing"]
    queues = [q["name"] for q in routing["queues"]]
    routing["agents"] = [
        {"id": f"agent-{i}", "capacity_profile": "demo", "queues": queues, "auto_accept": [], "skills": {"billing": 3}}
        for i in range(1, agents + 1)
    ]
    return {"routing": routing, "presence": {"sign_in": [a["id"] for a in routing["agents"]]}}


async def attempt(report: dict[str, Any], name: str, work: Awaitable[dict[str, Any]]) -> None:
    """One scenario's figures into the report; a scenario that fails is reported in its place, with
    why, and the others still run (a long `make bench` keeps what it measured)."""
    try:
        report[name] = await work
    except Exception as exc:
        traceback.print_exc()
        report[name] = {"error": f"{type(exc).__name__}: {exc}"}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # start_infrastructure is synchronous and runs its own event loop to wait for Kafka: off this one
    infra = await asyncio.to_thread(testing.start_infrastructure)
    try:
        report: dict[str, Any] = {}
        if args.warmup_records:
            # A broker that has just started spends the first minutes compiling its hot paths (the
            # JVM's JIT): the first scenario would measure that, not the steady state of a broker
            # that runs for weeks. Raw records through it first, on a topic of their own.
            await kafka_floor(infra.bootstrap, n=args.warmup_records, rate=WARMUP_RATE)
        if args.scenario in ("all", "peak"):

            async def peak_report() -> dict[str, Any]:
                return peak(
                    await scenario(
                        infra, args, 1_000, args.peak_rate, floor=True, duration=args.peak_duration, floor_n=300
                    )
                )

            await attempt(report, "peak", peak_report())
        if args.scenario in ("all", "throughput"):
            await attempt(report, "throughput", scenario(infra, args, args.agents, args.rate, floor=True))
        if args.scenario in ("all", "replicas"):

            async def replicas_report() -> dict[str, Any]:
                # the busiest service (most CPU per conversation in the throughput run) at 1 and 2 replicas,
                # side by side at the throughput scenario's load
                base = report.get("throughput", {})
                if "cpu_ms_per_conversation" not in base:  # not run, or failed: run the load here
                    base = await scenario(infra, args, args.agents, args.rate, floor=False)
                per = {k: v for k, v in base["cpu_ms_per_conversation"].items() if k != "total"}
                busiest = max(per, key=lambda k: per[k])
                two = await scenario(infra, args, args.agents, args.rate, floor=False, replicas_of={busiest: 2})
                return {
                    "service": busiest,
                    "throughput_sessions_per_s": {
                        "1": base["throughput_sessions_per_s"],
                        "2": two["throughput_sessions_per_s"],
                    },
                    "cpu_ms_per_conversation": {
                        "1": base["cpu_ms_per_conversation"],
                        "2": two["cpu_ms_per_conversation"],
                    },
                    "arrival_to_offer_p99_ms": {
                        "1": base["arrival_to_offer"]["p99_ms"],
                        "2": two["arrival_to_offer"]["p99_ms"],
                    },
                    "capacity_violations": base["capacity_violations"]["violations"]
                    + two["capacity_violations"]["violations"],
                }

            await attempt(report, "replicas", replicas_report())
        if args.scenario in ("all", "scale"):

            async def scale_report() -> dict[str, Any]:
                # below saturation, so the ratio measures agent selection and not queueing: half a real
                # centre's peak by default (28/s saturates two cores), 60 s for a p99 of 840 samples
                small = await scenario(infra, args, 1_000, args.scale_rate, floor=False, duration=args.scale_duration)
                large = await scenario(infra, args, 10_000, args.scale_rate, floor=False, duration=args.scale_duration)
                kept_up = {
                    "1000": _ratio(small["throughput_sessions_per_s"], args.scale_rate),
                    "10000": _ratio(large["throughput_sessions_per_s"], args.scale_rate),
                }
                return {
                    "rate_per_s": args.scale_rate,
                    "duration_s": args.scale_duration,
                    # achieved / offered: about 1 means the run kept up (below saturation)
                    "kept_up": kept_up,
                    # false: the ratio measures queueing, not selection (lower --scale-rate)
                    "below_saturation": all((v or 0) >= KEPT_UP for v in kept_up.values()),
                    "arrival_to_offer_1000_agents": small["arrival_to_offer"],
                    "arrival_to_offer_10000_agents": large["arrival_to_offer"],
                    "p99_ratio_10000_over_1000": _ratio(
                        large["arrival_to_offer"]["p99_ms"], small["arrival_to_offer"]["p99_ms"]
                    ),
                    "routing_peak_rss_mb_10000_agents": large["peak_rss_mb"]["routing"],
                    "capacity_violations": small["capacity_violations"]["violations"]
                    + large["capacity_violations"]["violations"],
                    "sessions_started": {"1000": small["sessions_started"], "10000": large["sessions_started"]},
                }

            await attempt(report, "agents_scale", scale_report())
        if args.scenario in ("all", "assist"):
            from tools.bench_assist import assist_scenario

            await attempt(report, "assist", assist_scenario(infra))
        if args.scenario in ("all", "browser"):
            from tools.bench_browser import browser_scenario

            await attempt(report, "browser", browser_scenario(infra))
        if args.scenario in ("all", "faults"):
            # the long fault-injection and rolling-restart runs, on their own Kafka and PostgreSQL
            from tools import faults

            await attempt(report, "faults", faults.run(long=True))
        if args.scenario in ("all", "fuzz"):
            # property-based fuzzing of every consumer: 10,000 hostile batches (own event loop)
            from tools import fuzz

            await attempt(report, "fuzz", asyncio.to_thread(fuzz.run, 10_000))
        return report
    finally:
        infra.close()


async def scenario(
    infra: testing.Infrastructure,
    args: argparse.Namespace,
    agents: int,
    rate: float,
    floor: bool,
    *,
    duration: float | None = None,
    floor_n: int = 2000,
    replicas_of: dict[str, int] | None = None,
) -> dict[str, Any]:
    if duration is not None:
        args = argparse.Namespace(**{**vars(args), "duration": duration})
    dep = await testing.create_deployment(infra, partitions=12)
    cfg_file = Path(tempfile.mkstemp(suffix=".yaml")[1])
    cfg_file.write_text(yaml.safe_dump(bench_config(agents)))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = stack.ROOT / ".state" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    replicas = {**dict(args.replica), **(replicas_of or {})}
    try:
        for name in (
            f"{svc}#{i}" if i > 1 else svc for svc in stack.SERVICES for i in range(1, replicas.get(svc, 1) + 1)
        ):
            svc = name.split("#")[0]
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
                "DATABASE_URL": dep.database_url,
                "SWITCHBOARD_TOPIC_PREFIX": dep.prefix,
                f"{svc.upper()}_DB_USER": stack.service_role(svc),
                f"{svc.upper()}_DB_PASSWORD": stack.DB_PASSWORD,
                "SWITCHBOARD_CONFIG": str(cfg_file),
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                # the simulated agents sign in once and never heartbeat: without this, presence
                # would take them offline a minute in, in the middle of a long scenario
                "PRESENCE_DEVICE_TIMEOUT_S": "86400",
            }
            port = _free_port()
            argv = stack.service_argv(svc, port)
            if args.profile:
                # py-spy launched with the process (attaching needs ptrace rights we may not have)
                folded = Path(args.profile) / f"{name.replace('#', '-')}.txt"
                folded.parent.mkdir(parents=True, exist_ok=True)
                argv = [args.py_spy, "record", "--format", "raw", "--rate", "200", "-o", str(folded), "--", *argv]
            log_file = logs / f"{name.replace('#', '-')}.log"
            procs[name] = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=open(log_file, "wb"),
                stderr=subprocess.STDOUT,
            )
            procs[name].port = port  # type: ignore[attr-defined]
            procs[name].log = log_file  # type: ignore[attr-defined]
        for name, p in procs.items():
            stack.wait_for(lambda port=p.port: stack._healthy(port), name, 120, p.log)  # type: ignore[attr-defined]
        sampler = RssSampler(procs)
        sampler_task = asyncio.create_task(sampler.run())
        infra_procs = InfraCpu(infra)

        # The floor is measured with the services up but idle, before any load: a raw Kafka hop and a
        # one-row commit on the same broker and database, at the scenario's rate (at most 1,000/s).
        # (at most 30 s of it: a scenario run at a trickle would otherwise spend minutes on its floor)
        floor_n = max(50, min(floor_n, int(rate * 30)))
        floor_kafka = await kafka_floor(infra.bootstrap, n=floor_n, rate=min(rate, 1000.0)) if floor else None
        floor_pg = await postgres_floor(dep.database_url, n=floor_n) if floor else None

        marks: dict[str, Any] = {}

        async def ready() -> None:
            """Every agent is signed in and routable: what is measured starts here (signing 1,000
            agents in is not work per conversation). First, what the services spend doing nothing
            for a few seconds (timers, polls, sweeps over the agents): a cost per second, not per
            conversation."""
            idle0, infra0, t0 = sampler.cpu_seconds(), infra_procs.cpu_seconds(), time.perf_counter()
            await asyncio.sleep(IDLE_SAMPLE_S)
            idle1, infra1, elapsed = sampler.cpu_seconds(), infra_procs.cpu_seconds(), time.perf_counter() - t0
            per_svc: dict[str, float] = collections.defaultdict(float)
            for name in idle1:
                per_svc[name.split("#")[0]] += (idle1[name] - idle0[name]) * 1000 / elapsed
            marks["idle"] = {**{k: round(v, 1) for k, v in per_svc.items()}, "total": round(sum(per_svc.values()), 1)}
            marks["infra_idle"] = {k: round((infra1[k] - infra0[k]) * 1000 / elapsed, 1) for k in infra1}
            marks["statements"] = await StatementCounter.start(dep)
            marks["offsets"] = await topic_offsets(dep)
            marks["cpu"] = sampler.cpu_seconds()
            marks["infra"] = infra_procs.cpu_seconds()
            marks["bench_cpu"] = psutil.Process().cpu_times()
            marks["machine"] = psutil.cpu_times()
            marks["wall"] = time.perf_counter()

        result = await load(dep, args, agents, rate, ready)
        statements: StatementCounter = marks["statements"]
        offsets_before, cpu_before, infra_before = marks["offsets"], marks["cpu"], marks["infra"]
        bench_cpu0 = marks["bench_cpu"]
        wall = time.perf_counter() - marks["wall"]
        sampler_task.cancel()
        cpu_after = sampler.cpu_seconds()
        infra_after = infra_procs.cpu_seconds()
        bench_cpu1 = psutil.Process().cpu_times()
        offsets_after = await topic_offsets(dep)
        # per service, replicas summed
        per_svc_s: dict[str, float] = collections.defaultdict(float)
        for name in cpu_after:
            per_svc_s[name.split("#")[0]] += cpu_after[name] - cpu_before[name]
        result["cpu_seconds_during_load"] = {
            **{k: round(v, 2) for k, v in per_svc_s.items()},
            **{k: round(infra_after[k] - infra_before[k], 2) for k in infra_after},
            "load_generator_and_client": round(
                bench_cpu1.user + bench_cpu1.system - bench_cpu0.user - bench_cpu0.system, 2
            ),
            "wall_seconds": round(wall, 2),
            "cores": os.cpu_count(),
        }
        result["machine_cpu_during_load_pct"] = machine_split(marks["machine"], psutil.cpu_times())
        n_done = max(1, result["sessions_started"])
        per_service = {k: round(v * 1000 / n_done, 2) for k, v in per_svc_s.items()}
        result["cpu_ms_per_conversation"] = {**per_service, "total": round(sum(per_service.values()), 2)}
        # the services' CPU with every agent signed in and nothing arriving, per second: at a low
        # rate it is a large part of the figure per conversation above
        result["idle_cpu_ms_per_s"] = marks["idle"]
        # the broker's and the database's over the same seconds (the services' consumers polling,
        # heartbeats and relays, and the bench's client): also paid per second, not per conversation
        result["infra_idle_cpu_ms_per_s"] = marks["infra_idle"]
        result["infra_cpu_ms_per_conversation"] = {
            k: round((infra_after[k] - infra_before[k]) * 1000 / n_done, 2) for k in infra_after
        }
        events = {t: offsets_after.get(t, 0) - offsets_before.get(t, 0) for t in offsets_after}
        result["events_per_conversation"] = {
            **{t: round(n / n_done, 2) for t, n in sorted(events.items()) if n},
            "total": round(sum(events.values()) / n_done, 2),
        }
        try:
            (
                result["statements_per_conversation"],
                result["transactions_per_conversation"],
            ) = await statements.per_conversation(n_done)
            # each one cost a transaction deadlock_timeout (1 s) and a retry
            result["deadlocks"] = await statements.deadlocks()
        finally:
            await statements.close()
        result["replicas"] = {svc: replicas.get(svc, 1) for svc in stack.SERVICES}
        violations = await capacity_violations(dep)
        out: dict[str, Any] = {
            "scenario": {
                "rate_per_s": rate,
                "duration_s": args.duration,
                "agents": agents,
                "chat_capacity_per_agent": 3,
                "handle_time_s": args.handle_time,
                "cores": os.cpu_count(),
                "kafka": stack.KAFKA_VERSION,
            },
            **result,
            "capacity_violations": violations,
            "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in sampler.peak.items()},
        }
        if floor_kafka and floor_pg:
            hop = floor_kafka["p99_ms"] or 1.0
            out["floor"] = {"kafka_produce_consume_hop": floor_kafka, "postgres_single_row_commit": floor_pg}
            out["ratios_to_floor"] = {
                "arrival_to_offer_p99_over_kafka_hop_p99": _ratio(result["arrival_to_offer"]["p99_ms"], hop),
                "arrival_to_offer_p50_over_kafka_hop_p50": _ratio(
                    result["arrival_to_offer"]["p50_ms"], floor_kafka["p50_ms"]
                ),
            }
        return out
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)  # py-spy writes its file on SIGINT
        for p in procs.values():
            try:
                p.wait(60 if args.profile else 20)
            except subprocess.TimeoutExpired:
                p.kill()
        cfg_file.unlink(missing_ok=True)
        await testing.drop_deployment(dep)


def peak(run: dict[str, Any]) -> dict[str, Any]:
    """A real centre's peak: arrival->offer against the idle floor, stage by stage."""
    hop = run["floor"]["kafka_produce_consume_hop"]
    commit = run["floor"]["postgres_single_row_commit"]
    return {
        "scenario": run["scenario"],
        "warmup_conversations": run["warmup_conversations"],
        "arrival_to_offer": run["arrival_to_offer"],
        "arrival_to_session_started": run["arrival_to_session_started"],
        "floor_idle": {"kafka_hop": hop, "postgres_commit": commit},
        "ratio_p99_to_floor_p99": _ratio(run["arrival_to_offer"]["p99_ms"], hop["p99_ms"]),
        "ratio_p50_to_floor_p50": _ratio(run["arrival_to_offer"]["p50_ms"], hop["p50_ms"]),
        "stages": run["stages"],
        "sessions_started": run["sessions_started"],
        "timed_out": run["timed_out"],
        "cpu_ms_per_conversation": run["cpu_ms_per_conversation"],
        "idle_cpu_ms_per_s": run["idle_cpu_ms_per_s"],
        "infra_idle_cpu_ms_per_s": run["infra_idle_cpu_ms_per_s"],
        "infra_cpu_ms_per_conversation": run["infra_cpu_ms_per_conversation"],
        "cpu_seconds_during_load": run["cpu_seconds_during_load"],
        "machine_cpu_during_load_pct": run["machine_cpu_during_load_pct"],
        "events_per_conversation": run["events_per_conversation"],
        "statements_per_conversation": run["statements_per_conversation"],
        "transactions_per_conversation": run["transactions_per_conversation"],
        "deadlocks": run["deadlocks"],
        "capacity_violations": run["capacity_violations"],
    }


def machine_split(before: Any, after: Any) -> dict[str, float]:
    """How the machine's cores spent the load, in % of their time (Linux's /proc/stat fields).
    `steal` is time the hypervisor gave another guest: on a shared VM a run with much of it is
    slower for reasons outside the code, and its latencies do not compare with a run without."""
    fields = [f for f in ("user", "system", "idle", "iowait", "steal", "softirq", "irq", "nice") if hasattr(after, f)]
    spent = {f: getattr(after, f) - getattr(before, f) for f in fields}
    total = sum(spent.values()) or 1.0
    return {f: round(v * 100 / total, 1) for f, v in spent.items()}


# A run that started at least this share of the offered rate kept up with it (scale scenario).
KEPT_UP = 0.95


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(
    dep: testing.Deployment,
    args: argparse.Namespace,
    n_agents: int,
    rate: float,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    bootstrap = dep.infra.bootstrap
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    # The simulated clients read the agents' topic, as an agent's client does. Routing's decisions,
    # which time each stage of a conversation's path, are read after the load (`routing_stages`):
    # read during it, they cost the cores the services share a fetch and a parse for each of
    # routing's records, which no agent's client reads.
    consumer = AIOKafkaConsumer(
        dep.topic(topics.SESSIONS),
        bootstrap_servers=bootstrap,
        group_id=f"bench-client-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
        # a fetch returns as soon as a record arrives: a short wait only adds empty fetches, and
        # this client shares the cores with what it measures
        max_poll_records=2000,
    )
    await consumer.start()
    # like the gateway's tail: a record is never held for a fetch that left its partition out (the
    # measurement would add up to 500 ms to a stage whenever the client is busy)
    whole_fetches(consumer)
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    await consumer.seek_to_end()

    agents = [f"agent-{i}" for i in range(1, n_agents + 1)]
    for a in agents:
        ev = c.event(c.AgentSignedIn(agent_id=a, device_id="bench"), source="/bench")
        await producer.send(dep.topic(topics.PRESENCE_COMMANDS), ev.to_bytes(), key=a.encode())
    await producer.flush()
    await wait_routable(dep, n_agents)
    await wait_settled(dep)

    rejected = 0

    async def close_later(stages: Stages, agent: str, session_id: str, conversation_id: str) -> None:
        await asyncio.sleep(args.handle_time)
        ev = c.event(c.CloseSession(agent_id=agent, session_id=session_id, confirmed=True), source="/bench")
        stages.close_sent(agent, conversation_id)
        await producer.send(dep.topic(topics.SESSIONS_COMMANDS), ev.to_bytes(), key=agent.encode())

    async def client(stages: Stages, total: int, closes: list[asyncio.Task[None]]) -> None:
        nonlocal rejected
        while len(stages.at["session_started"]) < total:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for recs in batch.values():
                for r in recs:
                    ev = orjson.loads(r.value)
                    t, d = ev["type"], ev["data"]
                    if t == "offer.received":
                        stages.mark("offer_received", d["conversation_id"], now)
                        cmd = c.event(c.AcceptOffer(agent_id=d["agent_id"], offer_id=d["offer_id"]), source="/bench")
                        stages.mark("accept_sent", d["conversation_id"])
                        await producer.send(
                            dep.topic(topics.SESSIONS_COMMANDS), cmd.to_bytes(), key=d["agent_id"].encode()
                        )
                    elif t == "session.started":
                        stages.mark("session_started", d["conversation_id"], now)
                        closes.append(
                            asyncio.create_task(
                                close_later(stages, d["agent_id"], d["session_id"], d["conversation_id"])
                            )
                        )
                    elif t == "command.rejected":
                        rejected += 1

    async def arrive(prefix: str, n: int, stages: Stages) -> None:
        async for i in paced(n, rate):
            cid = f"{prefix}{i}"
            ev = c.event(
                c.ConversationArrived(conversation_id=cid, channel="chat", customer=c.Customer(name=f"Customer {i}")),
                source="/bench",
            )
            stages.mark("arrival_sent", cid)
            await producer.send(dep.topic(topics.CONVERSATIONS), ev.to_bytes(), key=cid.encode())

    # Warm-up, not measured: services that have just started answer their first conversations
    # slowly (each pooled connection prepares each statement the first time, first calls import and
    # cache), and a centre's peak meets services that have run for hours. A few seconds of the load
    # go through them first, then everything settles; the measured load starts after that.
    warm_n = warmup_conversations(rate)
    if warm_n:
        warm = Stages("w-")
        warm_closes: list[asyncio.Task[None]] = []
        warm_client = asyncio.create_task(client(warm, warm_n, warm_closes))
        await arrive("w-", warm_n, warm)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(warm_client, timeout=120)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*warm_closes, return_exceptions=True), args.handle_time + 5)
        await wait_settled(dep)
    # The measuring client's own pauses are not the services': a full collection over everything the
    # bench holds stopped it for 50-75 ms, and the conversations it was timing looked that much slower.
    gc.collect()
    gc.freeze()
    if ready is not None:
        await ready()
    routing_from = await partition_ends(bootstrap, [dep.topic(topics.ROUTING)])

    stages = Stages("b-")
    closes: list[asyncio.Task[None]] = []
    total = int(rate * args.duration)
    client_task = asyncio.create_task(client(stages, total, closes))
    t0 = time.perf_counter()
    await arrive("b-", total, stages)
    publish_s = time.perf_counter() - t0
    try:
        await asyncio.wait_for(client_task, timeout=max(60.0, args.duration * 12))
        timed_out = False
    except TimeoutError:
        timed_out = True
    # the last closes: wait a little for their releases so the close->free stages have samples
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), args.handle_time + 5)
    t_end = time.perf_counter()
    for t in closes:
        t.cancel()
    await consumer.stop()
    await producer.stop()
    await routing_stages(bootstrap, dep.topic(topics.ROUTING), routing_from, stages)

    started = stages.at["session_started"]
    done_at = max(started.values()) if started else t_end
    return {
        "warmup_conversations": warm_n,
        "arrivals_published": total,
        "publish_seconds": round(publish_s, 2),
        "offered_rate_per_s": round(total / publish_s, 1),
        "sessions_started": len(started),
        "timed_out": timed_out,
        "throughput_sessions_per_s": round(len(started) / (done_at - t0), 1) if started else 0.0,
        "arrival_to_offer": stages.between("arrival_sent", "offer_received"),
        "arrival_to_session_started": stages.between("arrival_sent", "session_started"),
        "stages": {
            "arrival_to_work_queued": stages.between("arrival_sent", "work_queued"),
            "work_queued_to_work_offered": stages.between("work_queued", "work_offered"),
            "work_offered_to_offer_received": stages.between("work_offered", "offer_received"),
            "accept_to_session_started": stages.between("accept_sent", "session_started"),
            "close_to_work_released": stages.between("close_sent", "work_released"),
            "close_to_capacity_freed": stages.between("close_sent", "capacity_freed"),
        },
        "commands_rejected": rejected,
    }


# The warm-up before each measured load: this many seconds of its arrivals, at most `WARMUP_MAX`.
WARMUP_S = 3.0
WARMUP_MAX = 200


def warmup_conversations(rate: float) -> int:
    return min(int(rate * WARMUP_S), WARMUP_MAX)


async def routing_stages(
    bootstrap: str, topic: str, start: dict[TopicPartition, int], stages: Stages, timeout: float = 60.0
) -> None:
    """Routing's decisions since `start`, read after the load: each stage is marked when routing's
    relay produced its record (the record's timestamp, on the bench's clock), in each partition's
    order (an agent's `capacity.changed` are keyed by the agent: in order)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        consumer.assign(list(start))
        end = await consumer.end_offsets(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        left = {tp for tp in start if end[tp] > start[tp]}
        to_perf = time.perf_counter() - time.time()
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for tp, recs in (await consumer.getmany(timeout_ms=1000)).items():
                for r in recs:
                    if r.offset >= end[tp]:
                        break
                    ev = orjson.loads(r.value)
                    t, d, at = ev["type"], ev["data"], r.timestamp / 1000 + to_perf
                    if t == "work.queued" and not d.get("update"):
                        stages.mark("work_queued", d["conversation_id"], at)
                    elif t == "work.offered":
                        stages.mark("work_offered", d["conversation_id"], at)
                    elif t == "work.released":
                        stages.mark("work_released", d["conversation_id"], at)
                    elif t == "capacity.changed":
                        stages.capacity(d["agent_id"], d["total_used"], at)
                if recs and recs[-1].offset + 1 >= end[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()


class Stages:
    """When each conversation passed each point of its path, on the bench's clock: as the simulated
    client saw it, or, for routing's decisions, when routing's relay produced them."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix  # the conversations it times (others, say the warm-up's, pass unmarked)
        self.at: dict[str, dict[str, float]] = collections.defaultdict(dict)
        # each agent's conversations closed and not yet freed, oldest first, and its last units in use
        self.closing: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self.used: dict[str, int] = {}

    def mark(self, stage: str, conversation_id: str, now: float | None = None) -> None:
        if not conversation_id.startswith(self.prefix):
            return
        self.at[stage].setdefault(conversation_id, time.perf_counter() if now is None else now)

    def close_sent(self, agent_id: str, conversation_id: str, now: float | None = None) -> None:
        """The agent's close of a conversation was sent: its capacity is freed by a later unit fewer."""
        if conversation_id.startswith(self.prefix):
            self.mark("close_sent", conversation_id, now)
            self.closing[agent_id].append(conversation_id)

    def capacity(self, agent_id: str, total_used: int, now: float) -> None:
        """An agent's `capacity.changed`: each unit fewer in use frees its oldest closed conversation.
        (It is keyed by agent and `work.released` by conversation: the two arrive in either order, so
        the units are matched to the agent's closes, which an agent's topic keeps in order.)"""
        before = self.used.get(agent_id)
        self.used[agent_id] = total_used
        freed = before - total_used if before is not None else 0
        closing = self.closing[agent_id]
        for _ in range(max(freed, 0)):
            if closing:
                self.mark("capacity_freed", closing.popleft(), now)

    def between(self, start: str, end: str) -> dict[str, Any]:
        a, b = self.at[start], self.at[end]
        return summary([(b[k] - a[k]) * 1000 for k in b if k in a and b[k] >= a[k]])


async def wait_routable(dep: testing.Deployment, n_agents: int, timeout: float = 180.0) -> None:
    """Until routing's presence projection has every agent available (signing in 10,000 takes a while)."""
    conn = await asyncpg.connect(dep.database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = await conn.fetchval("SELECT count(*) FROM routing.agents WHERE configured AND presence = 'available'")
            if n >= n_agents:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"only {n} of {n_agents} agents became available in routing within {timeout:.0f}s")
    finally:
        await conn.close()


async def wait_settled(dep: testing.Deployment, timeout: float = 120.0) -> None:
    """Until every consumer group of the deployment has read everything (twice in a row, half a
    second apart): the sign-ins' ripples are over before anything is measured."""
    admin = AIOKafkaAdminClient(bootstrap_servers=dep.infra.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=dep.infra.bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(dep.prefix)]
            lag = 0
            for group in groups:
                committed = await admin.list_consumer_group_offsets(group)
                ends = await consumer.end_offsets(list(committed)) if committed else {}
                lag += sum(max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if meta.offset >= 0)
            quiet = quiet + 1 if groups and lag == 0 else 0
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await admin.close()


async def capacity_violations(dep: testing.Deployment) -> dict[str, Any]:
    conn = await asyncpg.connect(dep.database_url)
    try:
        over = await conn.fetchval(
            "SELECT count(*) FROM routing.agents a, jsonb_each_text(a.used) u "
            "WHERE u.value::int > COALESCE((a.limits->>u.key)::int, 0)"
        )
        peak_open = await conn.fetchval(
            "SELECT COALESCE(max(n), 0) FROM (SELECT s1.agent_id, count(*) AS n FROM sessions.sessions s1 "
            "JOIN sessions.sessions s2 ON s1.agent_id = s2.agent_id AND s2.kind = 'conversation' "
            "AND s2.opened_at <= s1.opened_at AND COALESCE(s2.closed_at, 'infinity') > s1.opened_at "
            "WHERE s1.kind = 'conversation' GROUP BY s1.agent_id, s1.session_id) x"
        )
        return {
            "ledger_rows_over_limit": over,
            "max_concurrent_chat_sessions_any_agent": peak_open,
            "limit": 3,
            "violations": int(over) + max(0, int(peak_open) - 3),
        }
    finally:
        await conn.close()


def _replica(text: str) -> tuple[str, int]:
    svc, _, n = text.partition("=")
    if svc not in stack.SERVICES or not n.isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError(f"expected SERVICE=N with SERVICE one of {', '.join(stack.SERVICES)}")
    return svc, int(n)


def main() -> None:
    p = argparse.ArgumentParser(prog="make bench")
    p.add_argument("--rate", type=float, default=float(os.environ.get("BENCH_RATE", 1000)))
    p.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 10)))
    p.add_argument("--agents", type=int, default=int(os.environ.get("BENCH_AGENTS", 1000)))
    p.add_argument("--handle-time", type=float, default=float(os.environ.get("BENCH_HANDLE_TIME", 0.5)))
    p.add_argument(
        "--scenario",
        choices=["all", "peak", "throughput", "replicas", "scale", "assist", "browser", "faults", "fuzz"],
        default="all",
    )
    p.add_argument(
        "--replica",
        type=_replica,
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N processes of SERVICE (one consumer group) in every load scenario; repeatable",
    )
    p.add_argument(
        "--warmup-records",
        type=int,
        default=int(os.environ.get("BENCH_WARMUP_RECORDS", 30_000)),
        help="raw records through the broker before the first scenario (its JIT warm-up); 0: none",
    )
    p.add_argument("--peak-rate", type=float, default=float(os.environ.get("BENCH_PEAK_RATE", 28)))
    p.add_argument("--peak-duration", type=float, default=float(os.environ.get("BENCH_PEAK_DURATION", 60)))
    p.add_argument(
        "--scale-rate",
        type=float,
        default=float(os.environ.get("BENCH_SCALE_RATE", 14)),
        help="arrivals/s for the 1,000 vs 10,000 agents comparison (below saturation: 28/s saturates 2 cores)",
    )
    p.add_argument("--scale-duration", type=float, default=float(os.environ.get("BENCH_SCALE_DURATION", 60)))
    p.add_argument("--profile", metavar="DIR", help="run each service under py-spy; folded stacks into DIR")
    p.add_argument("--py-spy", default=os.environ.get("PY_SPY", "py-spy"), help="the py-spy executable")
    args = p.parse_args()
    # The assist scenario runs the service in this process: its logs go to stderr, so that stdout
    # carries the JSON report only.
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        report = asyncio.run(run(args))
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(report, indent=2))
    failed = [name for name, figures in report.items() if isinstance(figures, dict) and "error" in figures]
    if failed:
        sys.exit(f"bench: {', '.join(failed)} failed (the report says why; the other figures stand)")


if __name__ == "__main__":
    main()
