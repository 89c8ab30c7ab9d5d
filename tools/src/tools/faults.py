"""Rolling restarts and fault injection under load, on an embedded Kafka and PostgreSQL of their own.

Every service runs as real processes (`python -m SERVICE.main --port N`) under `tools.supervise`,
as `make up` runs them; a load of chat arrivals flows while simulated agents accept every offer
and close each session after a handle time (the `make bench` driver's pattern, tools/bench.py).
Two scenarios, each returning JSON-able figures:

- `rolling`: two replicas of every service restarted one by one with SIGTERM (each ready again
  before the next goes) while the load runs;
- `fault_suite`: SIGKILL of each service, then of the broker, then of PostgreSQL, each brought
  back, plus a burst of bad records on every consumed topic.

Figures: conversations lost, assigned twice, capacity violations (each must be 0), consumer exits
on bad input (0), recovery time per fault, and the worst arrival->offer delay during each
disturbance. The stack is its own (ports 23092/23093 Kafka, 23432 PostgreSQL, 23080-23099 HTTP,
state .state/faults) because its broker and database get killed.

python -m tools.faults [--long] [--scenario all|rolling|faults]   (prints one JSON document)
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared import contracts as c
from shared import topics
from tools import bench, stack, testing
from tools.supervise import ProcessSpec, Supervisor, SupervisorError

HTTP_BASE = 23080
KEEP_ENV = "SWITCHBOARD_KEEP_FAULTS_STACK"  # 1: leave the faults stack running after the run (faster reruns)
# the "too many consecutive failures" exit of shared.messaging.Consumer
CONSECUTIVE_FAILURES_EXIT = 70


def layout() -> stack.Layout:
    """The faults stack's own ports and state (never the shared test stack's or `make up`'s)."""
    return stack.Layout(
        state=stack.ROOT / ".state" / "faults",
        kafka_port=23092,
        controller_port=23093,
        pg_port=23432,
        http_ports={svc: HTTP_BASE + 2 * i for i, svc in enumerate(stack.SERVICES)},
    )


# --- the stack: Kafka and PostgreSQL that may be killed -----------------------------------------


class OwnStack:
    """Kafka and PostgreSQL of the faults scenarios; `kill_*` is a SIGKILL (no clean shutdown)."""

    def __init__(self, lay: stack.Layout | None = None) -> None:
        self.layout = lay or layout()
        self.started_here = False

    @property
    def infra(self) -> testing.Infrastructure:
        return testing.Infrastructure(self.layout.bootstrap, self.layout.admin_url())

    def start(self) -> testing.Infrastructure:
        """Start whatever of the two is not running (synchronous: run it in a thread from async code)."""
        # ours to stop when this call started either (what start_* did, not a port probed before)
        started_postgres = stack.start_postgres(self.layout)
        self.started_here |= started_postgres
        try:
            self.started_here |= stack.start_kafka(self.layout)
        except BaseException:
            if started_postgres:  # nothing would stop it: the caller never gets a stack to stop
                stack.stop_postgres(self.layout)
            raise
        return self.infra

    def stop(self) -> None:
        stack.stop_pid(self.layout.run / "kafka.pid", "faults Kafka", timeout=30)
        stack.stop_postgres(self.layout)

    def kafka_pid(self) -> int | None:
        return stack.read_pid(self.layout.run / "kafka.pid")

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...)."""
        pid_file = self.layout.pg_dir / "data" / "postmaster.pid"
        try:
            postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
            return [postmaster.pid, *(p.pid for p in postmaster.children(recursive=True))]
        except (OSError, ValueError, IndexError, psutil.Error):
            return []

    def kill_kafka(self) -> None:
        pid = self.kafka_pid()
        if pid is None:
            raise stack.StackError(f"the faults Kafka is not running (no live pid in {self.layout.run / 'kafka.pid'})")
        _kill_all([pid])

    def kill_postgres(self) -> None:
        pids = self.postgres_pids()
        if not pids:
            raise stack.StackError(f"the faults PostgreSQL is not running (data in {self.layout.pg_dir / 'data'})")
        _kill_all(pids)  # every process at once, as a machine that loses power

    def start_kafka(self) -> None:
        stack.start_kafka(self.layout)

    def start_postgres(self) -> None:
        stack.start_postgres(self.layout)


def _kill_all(pids: list[int], timeout: float = 15.0) -> None:
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            p = psutil.Process(pid)
            p.kill()
            procs.append(p)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        raise stack.StackError(f"processes {[p.pid for p in alive]} survived SIGKILL for {timeout:.0f}s")


_shared: OwnStack | None = None


def shared_stack() -> OwnStack:
    """One faults stack per Python process, started on first use and stopped at exit when this
    process started it (unless SWITCHBOARD_KEEP_FAULTS_STACK=1)."""
    global _shared
    if _shared is None:
        _shared = OwnStack()
        _shared.start()
        if _shared.started_here and os.environ.get(KEEP_ENV) != "1":
            atexit.register(_shared.stop)
    else:
        _shared.start()  # brings back whatever a failed scenario left down
    return _shared


# --- the services as supervised processes --------------------------------------------------------


def load_config(agents: int) -> dict[str, Any]:
    """The demo configuration with `agents` agents of chat capacity 3 (tools.bench's)."""
    return bench.bench_config(agents)


def service_processes(
    lay: stack.Layout, dep: testing.Deployment, replicas: int, config: Path, logs: Path
) -> list[ProcessSpec]:
    """`replicas` processes of every service on this deployment: replica r of the i-th service
    listens on HTTP_BASE + 2*i + (r-1)."""
    out = []
    for i, svc in enumerate(stack.SERVICES):
        for r in range(1, replicas + 1):
            port = HTTP_BASE + 2 * i + (r - 1)
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": lay.bootstrap,
                "DATABASE_URL": stack.service_database_url(dep.database_url, svc),
                "SWITCHBOARD_TOPIC_PREFIX": dep.prefix,
                f"{svc.upper()}_DB_USER": stack.service_role(svc),
                f"{svc.upper()}_DB_PASSWORD": stack.DB_PASSWORD,
                "SWITCHBOARD_CONFIG": str(config),
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                "SESSIONS_ROUTING_URL": f"http://127.0.0.1:{lay.http_ports['routing']}",
                "SESSIONS_PRESENCE_URL": f"http://127.0.0.1:{lay.http_ports['presence']}",
                "SESSIONS_ASSIST_URL": f"http://127.0.0.1:{lay.http_ports['assist']}",
            }
            out.append(
                ProcessSpec(
                    name=f"{svc}-{r}",
                    argv=stack.service_argv(svc, port),
                    env=env,
                    log=str(logs / f"{svc}-{r}.log"),
                    health_url=f"http://127.0.0.1:{port}/health/ready",
                    cwd=str(stack.ROOT),
                )
            )
    return out


@dataclass
class Cluster:
    dep: testing.Deployment
    supervisor: Supervisor
    replicas: int
    partitions: int  # the cap the deployment's topics were created with

    def names(self, service: str | None = None) -> list[str]:
        return [n for n in self.supervisor.names if service is None or n.rsplit("-", 1)[0] == service]

    async def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 180.0) -> None:
        await asyncio.gather(*(self.supervisor.wait_healthy(n, timeout) for n in (names or self.names())))


@contextlib.asynccontextmanager
async def cluster(own: OwnStack, replicas: int, agents: int, partitions: int = 4) -> AsyncIterator[Cluster]:
    """A fresh deployment (database + topic prefix) on the faults stack with `replicas` processes
    of every service, ready; everything is stopped and dropped afterwards."""
    dep = await testing.create_deployment(own.infra, partitions=partitions)
    logs = own.layout.logs / dep.prefix.rstrip(".")
    logs.mkdir(parents=True, exist_ok=True)
    cfg = Path(tempfile.mkstemp(prefix="faults-", suffix=".yaml")[1])
    cfg.write_text(yaml.safe_dump(load_config(agents)))
    sup = Supervisor(
        service_processes(own.layout, dep, replicas, cfg, logs),
        grace_s=30.0,
        out=open(logs / "supervisor.log", "a"),
    )
    try:
        await sup.start()
        cl = Cluster(dep, sup, replicas, partitions)
        await cl.wait_ready()
        yield cl
    finally:
        await sup.stop()
        sup.out.close()
        cfg.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            await testing.drop_deployment(dep)


# --- the load: arrivals, and agents who accept and close ------------------------------------------


class Load:
    """Chat arrivals at `rate`/s (each retried until Kafka takes it, as a channel would) and
    `agents` simulated agents: signed in with a beating device, accepting every offer at once,
    closing each session after `handle_time_s`. Records what each conversation went through."""

    def __init__(
        self, dep: testing.Deployment, agents: int, rate: float, handle_time_s: float, partitions: int
    ) -> None:
        self.dep = dep
        self.partitions = partitions  # the cap the deployment's topics were created with
        self.agents = [f"agent-{i}" for i in range(1, agents + 1)]
        self.rate = rate
        self.handle_time_s = handle_time_s
        self.tag = uuid.uuid4().hex[:6]
        self.attempted: dict[str, float] = {}  # conversation -> first publish attempt (the customer's arrival)
        self.accepted: dict[str, float] = {}  # conversation -> Kafka acknowledged the arrival
        self.offered: dict[str, float] = {}  # conversation -> first offer.received the agent saw
        self.started: dict[str, float] = {}  # conversation -> first session.started
        self.holders: dict[str, set[tuple[str, str]]] = {}  # conversation -> {(agent, session)}
        self.rejected: list[str] = []
        self.publish_retries = 0
        self.duplicates_seen = 0
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._arrivals: asyncio.Task[None] | None = None
        self._stop_arrivals = asyncio.Event()
        self._closed = asyncio.Event()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=dep.infra.bootstrap,
            acks="all",
            linger_ms=2,
            request_timeout_ms=5000,
            retry_backoff_ms=200,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=dep.infra.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            max_poll_records=2000,
            request_timeout_ms=10000,
        )

    async def start(self) -> None:
        """Follow the agents' topic from now on, sign the agents in, wait until routing has them all."""
        await self.producer.start()
        await self.consumer.start()
        count = {spec.name: spec.partitions for spec in topics.all_topic_specs(self.partitions)}[topics.SESSIONS]
        self.consumer.assign([TopicPartition(self.dep.topic(topics.SESSIONS), p) for p in range(count)])
        await self.consumer.seek_to_end()
        self._spawn(self._client())
        self._spawn(self._heartbeats())
        for a in self.agents:
            await self._send(c.AgentSignedIn(agent_id=a, device_id=f"faults-{self.tag}"))
        await bench.wait_routable(self.dep, len(self.agents))

    def begin(self) -> None:
        """Start the arrivals (until `halt`)."""
        self._arrivals = asyncio.create_task(self._arrive_forever())

    async def halt(self, timeout: float = 120.0) -> None:
        """Stop new arrivals; wait until every arrival was taken by Kafka."""
        self._stop_arrivals.set()
        if self._arrivals:
            await self._arrivals
        deadline = time.monotonic() + timeout
        while set(self.attempted) - set(self.accepted) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def settle(self, timeout: float) -> bool:
        """Until every accepted arrival has opened a session (True), or the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(cid in self.started for cid in self.accepted):
                return True
            await asyncio.sleep(0.2)
        return False

    async def close(self) -> None:
        self._closed.set()
        self._stop_arrivals.set()
        for task in list(self._tasks) + ([self._arrivals] if self._arrivals else []):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()

    async def first_offer_after(self, t: float, timeout: float) -> float | None:
        """When the first conversation arriving after `t` was offered (None: none within the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            times = [self.offered[k] for k, at in list(self.attempted.items()) if at >= t and k in self.offered]
            if times:
                return min(times)
            await asyncio.sleep(0.05)
        return None

    def worst_offer_delay_s(self, start: float, end: float) -> float | None:
        """The worst arrival->offer delay of the conversations in flight during [start, end]."""
        return worst_delay(self.attempted, self.offered, start, end, time.monotonic())

    # --- internals ---

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, payload: c.Payload, ev: c.CloudEvent | None = None) -> None:
        """Publish until Kafka takes it (the same event id each time: consumers dedupe on it)."""
        ev = ev or c.event(payload, source="/faults")
        key = c.key_of(payload).encode()
        while not self._closed.is_set():
            try:
                await self.producer.send_and_wait(
                    self.dep.topic(payload.TOPIC), ev.to_bytes(), key=key, headers=[("ce_type", ev.type.encode())]
                )
                return
            except KafkaError:
                self.publish_retries += 1
                await asyncio.sleep(0.3)

    async def _arrive_forever(self) -> None:
        i = 0
        interval = 1 / self.rate
        t0 = time.perf_counter()
        while not self._stop_arrivals.is_set():
            delay = t0 + i * interval - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_arrivals.wait(), delay)
                if self._stop_arrivals.is_set():
                    break
            self._spawn(self._arrive(f"f-{self.tag}-{i}", i))
            i += 1

    async def _arrive(self, cid: str, i: int) -> None:
        self.attempted[cid] = time.monotonic()
        await self._send(c.ConversationArrived(conversation_id=cid, channel="chat", customer=c.Customer(name=f"C {i}")))
        self.accepted[cid] = time.monotonic()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            for a in self.agents:
                self._spawn(self._send(c.AgentHeartbeat(agent_id=a, device_id=f"faults-{self.tag}")))

    async def _client(self) -> None:
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=200)
            except KafkaError:
                await asyncio.sleep(0.5)  # the broker is away: the consumer reconnects by itself
                continue
            now = time.monotonic()
            for recs in batch.values():
                for r in recs:
                    self._on_record(r.value, now)

    def _on_record(self, value: bytes, now: float) -> None:
        try:
            ev = orjson.loads(value)
            kind, data, eid = ev["type"], ev["data"], ev["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if eid in self._seen:
            self.duplicates_seen += 1  # at-least-once delivery: the same event again
            return
        self._seen.add(eid)
        cid = data.get("conversation_id") if isinstance(data, dict) else None
        if kind == "offer.received" and cid:
            self.offered.setdefault(cid, now)
            self._spawn(self._send(c.AcceptOffer(agent_id=data["agent_id"], offer_id=data["offer_id"])))
        elif kind == "session.started" and cid:
            self.started.setdefault(cid, now)
            holders = self.holders.setdefault(cid, set())
            if (data["agent_id"], data["session_id"]) not in holders:
                holders.add((data["agent_id"], data["session_id"]))
                self._spawn(self._close_later(data["agent_id"], data["session_id"]))
        elif kind == "command.rejected":
            self.rejected.append(str(data.get("reason", ""))[:200])

    async def _close_later(self, agent: str, session_id: str) -> None:
        await asyncio.sleep(self.handle_time_s)
        await self._send(c.CloseSession(agent_id=agent, session_id=session_id, confirmed=True))


# --- the invariants ---------------------------------------------------------------------------------


def worst_delay(
    attempted: Mapping[str, float], offered: Mapping[str, float], start: float, end: float, now: float
) -> float | None:
    """The worst arrival->offer delay (seconds) among conversations in flight at some moment of
    [start, end]: arrived before its end and not offered before its start; one never offered
    counts until `now`."""
    delays = [
        offered.get(k, now) - at for k, at in list(attempted.items()) if at <= end and offered.get(k, now) >= start
    ]
    return round(max(delays), 3) if delays else None


def lost_and_twice(
    arrived: set[str],
    opened: Mapping[str, int],
    started: Mapping[str, float],
    holders: Mapping[str, set[tuple[str, str]]],
    accepted_twice: set[str],
) -> tuple[list[str], list[str]]:
    """Conversations lost (Kafka took the arrival, yet no session was opened for it in sessions'
    database or none reached the agent's stream) and assigned twice (more than one session for it
    in the database, more than one accepted offer in routing's, or more than one (agent, session)
    on the agents' stream)."""
    lost = sorted(k for k in arrived if not opened.get(k) or k not in started)
    twice = sorted(
        {k for k, n in opened.items() if n > 1} | accepted_twice | {k for k, held in holders.items() if len(held) > 1}
    )
    return lost, twice


async def invariants(load: Load) -> dict[str, Any]:
    """Lost, assigned twice and capacity violations, from the databases and what agents saw."""
    conn = await asyncpg.connect(load.dep.database_url)
    try:
        opened = {
            r["conversation_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT conversation_id, count(*) AS n FROM sessions.sessions "
                "WHERE kind = 'conversation' GROUP BY conversation_id"
            )
        }
        accepted_twice = {
            r["conversation_id"]
            for r in await conn.fetch(
                "SELECT conversation_id FROM routing.offers WHERE status = 'accepted' "
                "GROUP BY conversation_id HAVING count(*) > 1"
            )
        }
    finally:
        await conn.close()
    lost, twice = lost_and_twice(set(load.accepted), opened, load.started, load.holders, accepted_twice)
    capacity = await bench.capacity_violations(load.dep)
    return {
        "arrivals": len(load.accepted),
        "sessions_started": len(load.started),
        "conversations_lost": len(lost),
        "lost_examples": lost[:5],
        "assigned_twice": len(twice),
        "assigned_twice_examples": twice[:5],
        "capacity_violations": capacity["violations"],
        "capacity": capacity,
        "commands_rejected": len(load.rejected),
        "rejection_examples": sorted(set(load.rejected))[:3],
        "arrival_publish_retries": load.publish_retries,
        "duplicate_events_seen_by_agents": load.duplicates_seen,
    }


def _offer_delays(load: Load) -> dict[str, Any]:
    delays = [(load.offered[k] - at) * 1000 for k, at in load.attempted.items() if k in load.offered]
    return bench.summary(delays) | {"max_ms": round(max(delays), 1) if delays else None}


# --- scenario: rolling restart -------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    agents: int
    rate: float
    handle_time_s: float
    warmup_s: float
    settle_s: float


SHORT = Scale(agents=20, rate=3.0, handle_time_s=1.0, warmup_s=3.0, settle_s=90.0)
LONG = Scale(agents=60, rate=10.0, handle_time_s=2.0, warmup_s=10.0, settle_s=180.0)


async def rolling(own: OwnStack, scale: Scale = SHORT, replicas: int = 2, rounds: int = 1) -> dict[str, Any]:
    """Restart every process one by one with SIGTERM while the load runs (`rounds` times)."""
    async with cluster(own, replicas, scale.agents) as cl:
        load = Load(cl.dep, scale.agents, scale.rate, scale.handle_time_s, cl.partitions)
        try:
            await load.start()
            load.begin()
            await asyncio.sleep(scale.warmup_s)  # a steady flow before the first restart
            t0 = time.monotonic()
            steps = []
            for _ in range(rounds):
                steps += await cl.supervisor.roll(health_timeout=180.0)
            t1 = time.monotonic()
            await asyncio.sleep(scale.warmup_s)  # and after the last
            await load.halt()
            settled = await load.settle(scale.settle_s)
            figures = await invariants(load)
            crashes = [e for e in cl.supervisor.exits() if not e.expected]
            return {
                "scenario": {
                    "replicas_per_service": replicas,
                    "processes": len(cl.names()),
                    "rounds": rounds,
                    "agents": scale.agents,
                    "chat_capacity_per_agent": 3,
                    "arrivals_per_s": scale.rate,
                    "handle_time_s": scale.handle_time_s,
                },
                **figures,
                "settled": settled,
                "roll_seconds": round(t1 - t0, 1),
                "roll_steps": steps,
                "worst_arrival_to_offer_during_roll_s": load.worst_offer_delay_s(t0, t1),
                "arrival_to_offer": _offer_delays(load),
                "unexpected_exits": [vars(e) for e in crashes],
            }
        finally:
            await load.close()


# --- scenario: faults ------------------------------------------------------------------------------


def bad_records(n: int) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """Malformed, invalid, unknown, oversize and adversarial records, `n` of them in rotation."""
    good: dict[str, Any] = dict(testing.DESIGN_EXAMPLE)
    data: dict[str, Any] = dict(good["data"])
    samples: list[tuple[dict[str, Any] | bytes, str | None]] = [
        (b"\x00\xff not json at all", None),
        (b"", None),
        (b"[1, 2, 3]", None),
        (b'{"specversion": "1.0"', None),
        ({k: v for k, v in good.items() if k != "id"}, "conversation.arrived"),
        ({**good, "type": "nothing.happened"}, "nothing.happened"),
        ({**good, "data": {"channel": "chat"}}, "conversation.arrived"),
        ({**good, "data": "not an object"}, "conversation.arrived"),
        ({**good, "id": "x" * 5000}, "conversation.arrived"),
        ({**good, "data": {**data, "customer": {"name": "N" * 300_000}}}, "conversation.arrived"),
        ({**good, "type": "offer.accept", "data": {"agent_id": "agent-1", "offer_id": "o" * 5000}}, "offer.accept"),
        ({**good, "specversion": "0.1", "time": "yesterday"}, "conversation.arrived"),
    ]
    out = []
    for i in range(n):
        body, ce_type = samples[i % len(samples)]
        if isinstance(body, dict):
            body = {**body, "id": f"bad-{uuid.uuid4().hex}"} if "id" in body and len(str(body["id"])) < 100 else body
            value = json.dumps(body).encode()
        else:
            value = body
        headers = [("ce_type", ce_type.encode())] if ce_type and i % 2 == 0 else []
        out.append((value, headers))
    return out


async def _group_lag(dep: testing.Deployment, targets: dict[TopicPartition, int]) -> int:
    """How many records of `targets` (partition -> end offset) the services' groups have not
    committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=dep.infra.bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        behind = 0
        for service, access in topics.ACCESS.items():
            for topic in access.consumes:
                group = f"{dep.prefix}{service}.{topic}"
                committed = await admin.list_consumer_group_offsets(group)
                for tp, end in targets.items():
                    if tp.topic != dep.topic(topic):
                        continue
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    behind += max(0, end - done)
        return behind
    finally:
        await admin.close()


async def bad_input_burst(cl: Cluster, load: Load, per_topic: int) -> dict[str, Any]:
    """`per_topic` bad records on every consumed topic; waits until every consumer group has
    committed past them; counts the processes that exited with the consecutive-failures code."""
    consumed = sorted({t for a in topics.ACCESS.values() for t in a.consumes})
    producer = AIOKafkaProducer(bootstrap_servers=cl.dep.infra.bootstrap, acks="all", max_request_size=2_000_000)
    await producer.start()
    t0 = time.monotonic()
    try:
        sent = 0
        for topic in consumed:
            for value, headers in bad_records(per_topic):
                key = random.choice(load.agents) if topic.startswith(("sessions", "presence")) else "bad"
                await producer.send(cl.dep.topic(topic), value, key=key.encode(), headers=headers)
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    counts = {spec.name: spec.partitions for spec in topics.all_topic_specs(cl.partitions)}
    tps = [TopicPartition(cl.dep.topic(t), p) for t in consumed for p in range(counts[t])]
    ends = await load.consumer.end_offsets(tps)
    deadline = time.monotonic() + 120
    behind = await _group_lag(cl.dep, ends)
    while behind and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        behind = await _group_lag(cl.dep, ends)
    t1 = time.monotonic()
    exits = [e for e in cl.supervisor.exits() if t0 <= e.at and e.exit_code == CONSECUTIVE_FAILURES_EXIT]
    return {
        "bad_records_sent": sent,
        "topics": len(consumed),
        "consumers_caught_up": behind == 0,
        "records_not_committed": behind,
        "consumer_exits_on_bad_input": len(exits),
        "exited": [e.name for e in exits],
        "seconds_to_process": round(t1 - t0, 2),
    }


async def _fault(label: str, cl: Cluster, load: Load, inject: Any, restore: Any, outage_s: float) -> dict[str, Any]:
    """Inject, keep it down `outage_s`, restore; recovery = from the fault until every process is
    ready again and a conversation arriving after the fault has been offered."""
    t0 = time.monotonic()
    await inject()
    await asyncio.sleep(outage_s)
    t_restore = time.monotonic()
    await restore()
    t_back = time.monotonic()
    await cl.wait_ready(timeout=240.0)
    t_ready = time.monotonic()
    flow = await load.first_offer_after(t0, timeout=180.0)
    t_end = max(t_ready, flow or time.monotonic())
    crashes = [e for e in cl.supervisor.exits() if e.at >= t0 and not e.expected]
    return {
        "fault": label,
        "down_s": round(t_restore - t0, 2),
        "restore_s": round(t_back - t_restore, 2),
        "recovery_s": round(t_end - t0, 2),
        "all_ready_after_s": round(t_ready - t0, 2),
        "first_offer_after_fault_s": round(flow - t0, 2) if flow else None,
        "worst_arrival_to_offer_s": load.worst_offer_delay_s(t0, t_end),
        "process_exits": sorted({f"{e.name}:{e.signal or e.exit_code}" for e in crashes}),
    }


async def fault_suite(own: OwnStack, scale: Scale = SHORT, replicas: int = 1, repeat: int = 1) -> dict[str, Any]:
    """Under load: SIGKILL every process of each service in turn (the supervisor restarts them),
    then the broker, then PostgreSQL (brought back after a short outage); a burst of bad records
    on every consumed topic; `repeat` times each."""
    async with cluster(own, replicas, scale.agents) as cl:
        load = Load(cl.dep, scale.agents, scale.rate, scale.handle_time_s, cl.partitions)
        faults: list[dict[str, Any]] = []
        try:
            await load.start()
            load.begin()
            await asyncio.sleep(scale.warmup_s)
            bad = await bad_input_burst(cl, load, per_topic=24 * repeat)
            for _ in range(repeat):
                for svc in stack.SERVICES:

                    async def kill(svc: str = svc) -> None:
                        for name in cl.names(svc):
                            cl.supervisor.kill(name, signal.SIGKILL)

                    async def nothing() -> None:  # the supervisor restarts it (after its backoff)
                        return

                    faults.append(await _fault(f"SIGKILL {svc}", cl, load, kill, nothing, 0.0))

                async def kill_kafka() -> None:
                    await asyncio.to_thread(own.kill_kafka)

                async def start_kafka() -> None:
                    await asyncio.to_thread(own.start_kafka)

                faults.append(await _fault("SIGKILL Kafka broker", cl, load, kill_kafka, start_kafka, 3.0))

                async def kill_pg() -> None:
                    await asyncio.to_thread(own.kill_postgres)

                async def start_pg() -> None:
                    await asyncio.to_thread(own.start_postgres)

                faults.append(await _fault("SIGKILL PostgreSQL", cl, load, kill_pg, start_pg, 3.0))
            await asyncio.sleep(scale.warmup_s)
            await load.halt()
            settled = await load.settle(scale.settle_s)
            figures = await invariants(load)
            return {
                "scenario": {
                    "replicas_per_service": replicas,
                    "agents": scale.agents,
                    "chat_capacity_per_agent": 3,
                    "arrivals_per_s": scale.rate,
                    "handle_time_s": scale.handle_time_s,
                    "each_fault": repeat,
                },
                **figures,
                "consumer_exits_on_bad_input": bad["consumer_exits_on_bad_input"],
                "bad_input": bad,
                "settled": settled,
                "faults": faults,
                "worst_recovery_s": max(f["recovery_s"] for f in faults),
                "worst_arrival_to_offer_during_faults_s": max((f["worst_arrival_to_offer_s"] or 0.0) for f in faults),
                "arrival_to_offer": _offer_delays(load),
            }
        finally:
            await load.close()


# --- make bench -------------------------------------------------------------------------------------


async def run(long: bool) -> dict[str, Any]:
    """`make bench`'s version (long=True: more load, two rolls, each fault twice, two replicas)
    or the short one; JSON-able figures of both scenarios."""
    own = await asyncio.to_thread(shared_stack)
    scale = LONG if long else SHORT
    report: dict[str, Any] = {}
    report["rolling_restart"] = await rolling(own, scale, replicas=2, rounds=2 if long else 1)
    report["fault_injection"] = await fault_suite(own, scale, replicas=2 if long else 1, repeat=2 if long else 1)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--long", action="store_true", help="the make bench version: more load, each fault twice")
    p.add_argument("--scenario", choices=["all", "rolling", "faults"], default="all")
    args = p.parse_args(argv)
    # the broker is killed on purpose: the clients' reconnect warnings would bury the report
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def go() -> dict[str, Any]:
        if args.scenario == "all":
            return await run(args.long)
        own = await asyncio.to_thread(shared_stack)
        scale = LONG if args.long else SHORT
        if args.scenario == "rolling":
            return {"rolling_restart": await rolling(own, scale, rounds=2 if args.long else 1)}
        return {"fault_injection": await fault_suite(own, scale, repeat=2 if args.long else 1)}

    try:
        report = asyncio.run(go())
    except (stack.StackError, SupervisorError) as exc:
        print(f"[faults] error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
