"""The embedded stack: a real Kafka (KRaft, jars from Maven Central) and a real PostgreSQL
(Debian's packages) as local processes, plus the four services. Used by `make up/down/env/logs/
clean` and by the test fixtures. No Docker needed.

python -m tools.stack up|down|clean|env|logs|status
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared import topics
from shared.db import ident

ROOT = Path(__file__).resolve().parents[3]
KAFKA_VERSION = "4.3.1"
SERVICES = ("routing", "sessions", "presence", "assist")
DB_PASSWORD = "switchboard"  # loopback-only embedded default; production passes DATABASE_URL


class StackError(RuntimeError):
    """Something a person must fix; the message says what."""


def say(msg: str) -> None:
    print(f"[switchboard] {msg}", file=sys.stderr, flush=True)


# Every port sits below Linux's ephemeral range (32768-60999): a client retrying a port in that
# range while the server is down can connect to itself and hold the port, so the server cannot bind.
@dataclass
class Layout:
    state: Path
    kafka_port: int = 19092
    controller_port: int = 19093
    pg_port: int = 15432
    http_ports: dict[str, int] = field(
        default_factory=lambda: {"sessions": 18080, "routing": 18081, "presence": 18082, "assist": 18083}
    )
    database: str = "switchboard"

    @classmethod
    def default(cls) -> Layout:
        lay = cls(Path(os.environ.get("SWITCHBOARD_STATE", ROOT / ".state")))
        lay.kafka_port = int(os.environ.get("SWITCHBOARD_KAFKA_PORT", lay.kafka_port))
        lay.controller_port = int(os.environ.get("SWITCHBOARD_CONTROLLER_PORT", lay.kafka_port + 1))
        lay.pg_port = int(os.environ.get("SWITCHBOARD_PG_PORT", lay.pg_port))
        return lay

    @property
    def kafka_dir(self) -> Path:
        return self.state / "kafka"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def pg_dir(self) -> Path:
        # The postgres user must reach its data dir; a checkout under /root is not reachable.
        if os.geteuid() == 0 and not _postgres_can_reach(self.state):
            digest = hashlib.sha256(str(self.state.resolve()).encode()).hexdigest()[:12]
            return Path("/var/lib/switchboard") / digest / "pg"
        return self.state / "pg"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def admin_url(self, db: str = "postgres") -> str:
        return f"postgresql://switchboard:{DB_PASSWORD}@127.0.0.1:{self.pg_port}/{db}"

    @property
    def database_url(self) -> str:
        return self.admin_url(self.database)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.http_ports['sessions']}"


def _postgres_can_reach(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        return False
    for p in [probe, *probe.parents]:
        st = p.stat()
        if st.st_uid == pw.pw_uid:
            continue
        if not st.st_mode & 0o001:
            return False
    return True


# --- installing what is missing ----------------------------------------------------------------

_apt_updated = False


def apt_install(*packages: str) -> None:
    global _apt_updated
    if shutil.which("apt-get") is None:
        raise StackError(f"{' '.join(packages)} missing and no apt-get here: install them by hand")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        say("apt-get update")
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, env=env)
        _apt_updated = True
    say(f"apt-get install {' '.join(packages)}")
    r = subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise StackError(
            f"apt-get install {' '.join(packages)} failed (is Debian's package mirror reachable?):\n" + r.stderr[-2000:]
        )


def ensure_java() -> str:
    java = shutil.which("java")
    if java is None:
        apt_install("openjdk-17-jre-headless")
        java = shutil.which("java")
    if java is None:
        raise StackError("java not found after installing openjdk-17-jre-headless")
    return java


def ensure_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        apt_install("maven")
        mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found after installing maven")
    return mvn


def kafka_jars() -> Path:
    """The broker's jars, fetched once from Maven Central into the ignored cache."""
    cache = Path(os.environ.get("SWITCHBOARD_CACHE", ROOT / ".cache")) / f"kafka-{KAFKA_VERSION}"
    marker = cache / ".complete"
    if marker.exists():
        return cache
    mvn = ensure_maven()
    say(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (once)")
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(ROOT / "deploy/kafka/pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={cache}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not list(cache.glob("kafka_2.13-*.jar")):
        raise StackError(
            "mvn could not fetch Kafka's jars (is Maven Central reachable? a proxy in ~/.m2/settings.xml?):\n"
            + (r.stdout + r.stderr)[-3000:]
        )
    marker.touch()
    return cache


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        apt_install("postgresql-15")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise StackError("PostgreSQL server binaries not found after installing postgresql-15")
    return Path(found[-1]).parent


# --- processes ---------------------------------------------------------------------------------


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def spawn(
    name: str, argv: list[str], layout: Layout, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    logf = open(layout.logs / f"{name}.log", "ab")
    proc = subprocess.Popen(
        argv,
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        start_new_session=True,
    )
    (layout.run / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid_file: Path, name: str, timeout: float = 20.0) -> None:
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    say(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def wait_for(check, what: str, timeout: float, log: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tail = ""
    if log and log.exists():
        tail = (
            "\n--- last lines of " + str(log) + " ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        )
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


# --- Kafka -------------------------------------------------------------------------------------

_LOG4J = """rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka.server.KafkaRaftServer
logger.kafka.level=INFO
"""


def start_kafka(layout: Layout) -> None:
    pid_file = layout.run / "kafka.pid"
    if read_pid(pid_file) is not None and port_open(layout.kafka_port):
        say(f"Kafka already running on {layout.bootstrap}")
        return
    for port in (layout.kafka_port, layout.controller_port):
        if port_open(port):
            raise StackError(f"port {port} is taken by another program; stop it or set SWITCHBOARD_KAFKA_PORT")
    java = ensure_java()
    jars = kafka_jars()
    kdir = layout.kafka_dir
    data = kdir / "data"
    kdir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{layout.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{layout.kafka_port},CONTROLLER://127.0.0.1:{layout.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{layout.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                "auto.create.topics.enable=false",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=168",
                "log.segment.bytes=67108864",
            ]
        )
        + "\n"
    )
    (kdir / "log4j2.properties").write_text(_LOG4J)
    cp = f"{jars}/*"
    if not (data / "meta.properties").exists():
        cluster_id = (
            subprocess.run(
                [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        r = subprocess.run(
            [java, "-cp", cp, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(props)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise StackError("formatting Kafka's storage failed:\n" + (r.stdout + r.stderr)[-2000:])
    heap = os.environ.get("SWITCHBOARD_KAFKA_HEAP", "768m")
    say(f"starting Kafka {KAFKA_VERSION} (KRaft) on {layout.bootstrap}")
    spawn(
        "kafka",
        [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ],
        layout,
    )
    wait_for(lambda: port_open(layout.kafka_port), "Kafka", 120, layout.logs / "kafka.log")
    asyncio.run(_wait_kafka_metadata(layout.bootstrap))


async def _wait_kafka_metadata(bootstrap: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    raise StackError(f"Kafka at {bootstrap} does not answer metadata requests: {last!r}")


async def create_topics(bootstrap: str, prefix: str = "", partitions_cap: int | None = None) -> list[str]:
    """Create every DESIGN.md topic (and its .dlq) that is missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(prefix + s.name, s.partitions, 1)
            for s in topics.all_topic_specs(partitions_cap)
            if prefix + s.name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted, timeout_ms=30000)
        return [t.name for t in wanted]
    finally:
        await admin.close()


# --- PostgreSQL --------------------------------------------------------------------------------


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start_postgres(layout: Layout) -> None:
    pg_dir = layout.pg_dir
    data = pg_dir / "data"
    bindir = pg_bindir()
    if (data / "postmaster.pid").exists() and port_open(layout.pg_port):
        say(f"PostgreSQL already running on 127.0.0.1:{layout.pg_port}")
        return
    if port_open(layout.pg_port):
        raise StackError(f"port {layout.pg_port} is taken by another program; stop it or set SWITCHBOARD_PG_PORT")
    pg_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pg_dir, "postgres", "postgres")
        layout.logs.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        say(f"initdb {data}")
        pwfile = pg_dir / "pwfile"
        pwfile.write_text(DB_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        r = subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "switchboard",
                    f"--pwfile={pwfile}",
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            capture_output=True,
            text=True,
        )
        pwfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise StackError("initdb failed:\n" + (r.stdout + r.stderr)[-2000:])
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {layout.pg_port}\n"
                f"unix_socket_directories = '{pg_dir}'\nmax_connections = 300\n"
                "shared_buffers = 256MB\nsynchronous_commit = on\nwal_level = minimal\n"
                "max_wal_senders = 0\nfsync = on\ncheckpoint_timeout = 15min\nmax_wal_size = 2GB\n"
            )
    say(f"starting PostgreSQL on 127.0.0.1:{layout.pg_port}")
    logfile = pg_dir / "postgres.log"
    r = subprocess.run(
        # the layout's port wins over the one written into postgresql.conf at initdb
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(logfile),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {layout.pg_port}",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
        raise StackError("PostgreSQL did not start:\n" + r.stdout + r.stderr + tail)


def stop_postgres(layout: Layout) -> None:
    data = layout.pg_dir / "data"
    if not (data / "postmaster.pid").exists():
        return
    say("stopping PostgreSQL")
    subprocess.run(
        _as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        text=True,
    )


def service_role(service: str) -> str:
    return f"sb_{service}"


async def provision_database(admin_url: str, database: str, services=SERVICES) -> None:  # type: ignore[no-untyped-def]
    """One database; one schema and one login role per service, each with rights on its own only."""
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{ident(database)}"')
        for svc in services:
            role = service_role(svc)
            with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE ROLE {ident(role)} LOGIN PASSWORD '{DB_PASSWORD}'")
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0]
    conn = await asyncpg.connect(f"{base}/{database}")
    try:
        await conn.execute(f'REVOKE ALL ON DATABASE "{ident(database)}" FROM PUBLIC')
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for svc in services:
            role = service_role(svc)
            await conn.execute(f'GRANT CONNECT ON DATABASE "{ident(database)}" TO {role}')
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(svc)} AUTHORIZATION {role}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {ident(svc)} FROM PUBLIC")
    finally:
        await conn.close()


def service_database_url(database_url: str, service: str) -> str:
    """The DATABASE_URL with the service's own login role (embedded default)."""
    from shared.db import with_credentials

    return with_credentials(database_url, service_role(service), DB_PASSWORD)


# --- services ----------------------------------------------------------------------------------


def service_env(layout: Layout, service: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": layout.bootstrap,
        "DATABASE_URL": layout.database_url,
        f"{service.upper()}_DB_USER": service_role(service),
        f"{service.upper()}_DB_PASSWORD": DB_PASSWORD,
        "SWITCHBOARD_CONFIG": str(ROOT / "deploy/demo/switchboard.yaml"),
        "LOG_FORMAT": "json",
        # the gateway reads routing, presence and assist over HTTP (supervisor view, Home, knowledge)
        "SESSIONS_ROUTING_URL": f"http://127.0.0.1:{layout.http_ports['routing']}",
        "SESSIONS_PRESENCE_URL": f"http://127.0.0.1:{layout.http_ports['presence']}",
        "SESSIONS_ASSIST_URL": f"http://127.0.0.1:{layout.http_ports['assist']}",
        # the demo's customer page (/customer): a person can start a chat without a Kafka tool
        "SESSIONS_CUSTOMER_DEMO": "true",
    }
    env.update(extra or {})
    return env


def service_argv(service: str, port: int) -> list[str]:
    return [sys.executable, "-m", f"{service}.main", "--port", str(port)]


def start_services(layout: Layout) -> None:
    for svc in SERVICES:
        pid_file = layout.run / f"{svc}.pid"
        port = layout.http_ports[svc]
        if read_pid(pid_file) is not None:
            say(f"{svc} already running")
            continue
        if port_open(port):
            raise StackError(f"port {port} (for {svc}) is taken by another program; stop it first")
        say(f"starting {svc} on 127.0.0.1:{port}")
        spawn(svc, service_argv(svc, port), layout, service_env(layout, svc))
    for svc in SERVICES:
        port = layout.http_ports[svc]
        wait_for(lambda p=port: _healthy(p), svc, 90, layout.logs / f"{svc}.log")


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop_services(layout: Layout) -> None:
    stop_pid(layout.run / "demo-devices.pid", "demo devices")
    for svc in SERVICES:
        stop_pid(layout.run / f"{svc}.pid", svc)


def start_demo_devices(layout: Layout) -> None:
    """The demo agents' devices: signed in and beating until `make down` (tools.demo)."""
    if read_pid(layout.run / "demo-devices.pid") is not None:
        return
    say("signing the demo agents in (a demo device beats for each until make down)")
    spawn(
        "demo-devices",
        [sys.executable, "-m", "tools.demo", "devices"],
        layout,
        {"KAFKA_BOOTSTRAP_SERVERS": layout.bootstrap},
    )


# --- commands ----------------------------------------------------------------------------------


def env_lines(layout: Layout) -> str:
    return (
        f"KAFKA_BOOTSTRAP_SERVERS={layout.bootstrap}\nDATABASE_URL={layout.database_url}\n"
        f"SWITCHBOARD_URL={layout.gateway_url}"
    )


def up(layout: Layout) -> None:
    start_postgres(layout)
    start_kafka(layout)
    created = asyncio.run(create_topics(layout.bootstrap))
    if created:
        say(f"created {len(created)} topics")
    asyncio.run(provision_database(layout.admin_url(), layout.database))
    start_services(layout)
    start_demo_devices(layout)
    say("all healthy")
    from shared.auth import Auth

    auth = Auth.from_env()
    token = auth.mint("agent-1")
    supervisor = auth.mint("supervisor-1", roles=("supervisor",))
    print(
        f"\nSwitchboard is up.\n"
        f"  Agent workspace:  {layout.gateway_url}/?agent=agent-1&token={token}\n"
        f"                    (other agents: uv run switchboard token agent-2)\n"
        f"  Supervisor view:  {layout.gateway_url}/supervisor?supervisor=supervisor-1&token={supervisor}\n"
        f"  Customer chat:    {layout.gateway_url}/customer   (demo: start a chat as a customer)\n"
        f"  Kafka:            {layout.bootstrap}\n"
        f"  PostgreSQL:       {layout.database_url}\n"
        f"  Health:           " + ", ".join(f"{s} :{p}" for s, p in layout.http_ports.items()) + "\n"
        f"  Logs:             make logs   (files in {layout.logs})\n"
        f"  Stop:             make down   (make clean also deletes the data)\n\n" + env_lines(layout)
    )


def down(layout: Layout) -> None:
    stop_services(layout)
    stop_pid(layout.run / "kafka.pid", "Kafka", timeout=30)
    stop_postgres(layout)


def clean(layout: Layout) -> None:
    down(layout)
    # the tests' embedded stack lives under the same folder: stop it before its data goes
    tests = Layout(layout.state / "test", kafka_port=29092, controller_port=29093, pg_port=25432)
    stop_pid(tests.run / "kafka.pid", "test Kafka", timeout=30)
    stop_postgres(tests)
    pg = layout.pg_dir
    shutil.rmtree(layout.state, ignore_errors=True)
    shutil.rmtree(pg.parent if pg.parent.name != layout.state.name else pg, ignore_errors=True)
    say(f"deleted {layout.state}")


def status(layout: Layout) -> None:
    print(f"kafka     {'up' if port_open(layout.kafka_port) else 'down'}  {layout.bootstrap}")
    print(f"postgres  {'up' if port_open(layout.pg_port) else 'down'}  127.0.0.1:{layout.pg_port}")
    for svc in SERVICES:
        print(f"{svc:<9} {'up' if _healthy(layout.http_ports[svc]) else 'down'}  :{layout.http_ports[svc]}")


def logs(layout: Layout, follow: bool) -> None:
    files = [layout.logs / f"{s}.log" for s in (*SERVICES, "kafka") if (layout.logs / f"{s}.log").exists()]
    if not files:
        say(f"no logs under {layout.logs}; is the stack up (make up)?")
        return
    os.execvp("tail", ["tail", "-n", "40", *(["-F"] if follow else []), *map(str, files)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.stack")
    p.add_argument("command", choices=["up", "down", "clean", "env", "logs", "status", "infra"])
    p.add_argument("-f", "--follow", action="store_true")
    args = p.parse_args(argv)
    layout = Layout.default()
    try:
        if args.command == "up":
            up(layout)
        elif args.command == "infra":
            start_postgres(layout)
            start_kafka(layout)
            asyncio.run(create_topics(layout.bootstrap))
            asyncio.run(provision_database(layout.admin_url(), layout.database))
            print(env_lines(layout))
        elif args.command == "down":
            down(layout)
        elif args.command == "clean":
            clean(layout)
        elif args.command == "env":
            print(env_lines(layout))
        elif args.command == "status":
            status(layout)
        elif args.command == "logs":
            logs(layout, args.follow)
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
