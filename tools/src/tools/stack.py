"""The embedded stack: a real Kafka (KRaft, jars from Maven Central) and a real PostgreSQL
(Debian's packages) as local processes, plus the four services. Used by `make up/down/env/logs/
clean` and by the test fixtures. No Docker needed.

python -m tools.stack up|down|clean|env [--service NAME]|logs|status|roll|infra

`SECURE=1` runs Kafka with SCRAM-SHA-512 over TLS and the standard authorizer: one principal per
service (and per other client of `shared.topics.CLIENTS`) allowed only its topics and groups.
`REPLICAS=N` runs N processes of every service. Passwords (PostgreSQL's admin and each service's
role, Kafka's principals) are generated once into the state folder's `secrets.json` (mode 0600);
services log in with their own role only.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import fcntl
import glob
import hashlib
import importlib.util
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from shared import kafka_security, topics
from tools import provision

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[3]
KAFKA_VERSION = "4.3.1"
SERVICES = ("routing", "sessions", "presence", "assist")
# The test harness's role password and the admin password of a PostgreSQL initialised before
# secrets.json existed; `make up` generates its own (Layout.secrets).
DB_PASSWORD = "switchboard"
KAFKA_ADMIN = "admin"  # the secure broker's super user: the broker itself and provisioning


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
    secure: bool = False
    replicas: int = 1

    @classmethod
    def default(cls) -> Layout:
        lay = cls(Path(os.environ.get("SWITCHBOARD_STATE", ROOT / ".state")))
        lay.kafka_port = int(os.environ.get("SWITCHBOARD_KAFKA_PORT", lay.kafka_port))
        lay.controller_port = int(os.environ.get("SWITCHBOARD_CONTROLLER_PORT", lay.kafka_port + 1))
        lay.pg_port = int(os.environ.get("SWITCHBOARD_PG_PORT", lay.pg_port))
        # SECURE unset: the mode of the last `up` (so `make down`/`make env` follow a secure stack)
        mode = os.environ.get("SECURE")
        lay.secure = (
            _flag(mode) if mode is not None else lay.mode_file.exists() and lay.mode_file.read_text() == "secure"
        )
        try:
            lay.replicas = int(os.environ.get("REPLICAS") or 1)
        except ValueError:
            raise StackError(f"REPLICAS={os.environ['REPLICAS']!r}: give a number of processes per service") from None
        if not 1 <= lay.replicas <= 9:
            raise StackError(f"REPLICAS={lay.replicas}: between 1 and 9 processes per service")
        return lay

    @property
    def mode_file(self) -> Path:
        return self.state / "kafka-mode"

    def running_mode(self) -> str:
        """ "secure" or "plaintext": how the last `up` started Kafka ("" before any)."""
        return self.mode_file.read_text().strip() if self.mode_file.exists() else ""

    @property
    def kafka_dir(self) -> Path:
        # a secure broker is formatted with its principals: it keeps its own data
        return self.state / ("kafka-secure" if self.secure else "kafka")

    @property
    def tls_dir(self) -> Path:
        return self.state / "tls"

    def secrets(self) -> Secrets:
        return Secrets(self.state / "secrets.json")

    def pg_admin_password(self) -> str:
        """The admin login's password: generated before initdb; the old fixed one for a cluster
        initialised before secrets.json existed."""
        legacy = (self.pg_dir / "data" / "PG_VERSION").exists()
        return self.secrets().get("postgres", "admin", DB_PASSWORD if legacy else None)

    def db_password(self, service: str) -> str:
        return self.secrets().get("postgres", provision.service_role(service))

    def kafka_security(self, principal: str = KAFKA_ADMIN) -> kafka_security.KafkaSecurity:
        """How `principal` connects to this stack's Kafka (PLAINTEXT unless secure)."""
        if not self.secure:
            return kafka_security.KafkaSecurity.explicit()
        ensure_tls(self)
        return kafka_security.KafkaSecurity.explicit(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=principal,
            sasl_password=self.secrets().get("kafka", principal),
            ssl_cafile=self.tls_dir / "ca.pem",
        )

    def kafka_env(self, principal: str = KAFKA_ADMIN) -> dict[str, str]:
        return self.kafka_security(principal).env() if self.secure else {}

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
        return f"postgresql://switchboard:{self.pg_admin_password()}@127.0.0.1:{self.pg_port}/{db}"

    @property
    def database_url(self) -> str:
        return self.admin_url(self.database)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.http_ports['sessions']}"


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class Secrets:
    """The stack's generated passwords, one JSON file readable by its owner only. A password is
    made the first time it is asked for; a lock keeps concurrent processes agreeing on it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return {}

    def get(self, kind: str, name: str, default: str | None = None) -> str:
        known = self._read().get(kind, {}).get(name)
        if known is not None:
            return known
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            value = data.setdefault(kind, {}).get(name)
            if value is None:
                value = data[kind][name] = default if default is not None else provision.new_password()
                provision.write_secret_json(self.path, data)
            return value


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


def ensure_tls(layout: Layout) -> None:
    """A CA of the stack's own and the broker's certificate (for 127.0.0.1 and localhost), made
    once: `ca.pem` is what clients trust; the broker's key and chain are in a PKCS#12 keystore."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = layout.tls_dir
    if (d / "ca.pem").exists() and (d / "broker.p12").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Switchboard embedded stack CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    password = layout.secrets().get("kafka", "keystore").encode()
    p12 = pkcs12.serialize_key_and_certificates(
        b"broker", key, cert, [ca], serialization.BestAvailableEncryption(password)
    )
    _write_private(d / "broker.p12", p12)
    _write_private(
        d / "ca-key.pem",
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)


def _jaas(module: str, **options: str) -> str:
    return f"{module} required " + " ".join(f'{k}="{v}"' for k, v in options.items()) + ";"


def _listener_properties(layout: Layout) -> list[str]:
    """PLAINTEXT, or SASL_SSL with SCRAM for clients and the broker itself, the controller
    listener on loopback with PLAIN (KRaft keeps SCRAM credentials in the metadata the controller
    serves, so the controller cannot use them), and the standard authorizer denying by default."""
    client, ctrl = layout.kafka_port, layout.controller_port
    if not layout.secure:
        return [
            f"listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{ctrl}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{client}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]
    sec = layout.secrets()
    admin_pw, ctrl_pw = sec.get("kafka", KAFKA_ADMIN), sec.get("kafka", "controller")
    tls = layout.tls_dir
    return [
        f"listeners=SASL_SSL://127.0.0.1:{client},CONTROLLER://127.0.0.1:{ctrl}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{client}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name=SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        + _jaas("org.apache.kafka.common.security.scram.ScramLoginModule", username=KAFKA_ADMIN, password=admin_pw),
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config="
        + _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            username="controller",
            password=ctrl_pw,
            user_controller=ctrl_pw,
        ),
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={tls / 'broker.p12'}",
        f"ssl.keystore.password={sec.get('kafka', 'keystore')}",
        f"ssl.key.password={sec.get('kafka', 'keystore')}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls / 'ca.pem'}",
        "ssl.endpoint.identification.algorithm=https",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{KAFKA_ADMIN};User:controller",
    ]


def kafka_principals() -> list[str]:
    """The secure broker's SCRAM users: its super user, every service and every other client."""
    return [KAFKA_ADMIN, *topics.PRINCIPALS]


def start_kafka(layout: Layout, heap: str | None = None) -> bool:
    pid_file = layout.run / "kafka.pid"
    if read_pid(pid_file) is not None and port_open(layout.kafka_port):
        running = layout.running_mode() or "plaintext"
        if running != ("secure" if layout.secure else "plaintext"):
            raise StackError(
                f"a {running} Kafka is running on {layout.bootstrap}: stop the stack (make down) before "
                f"starting it {'with' if layout.secure else 'without'} SECURE=1"
            )
        say(f"Kafka already running on {layout.bootstrap}")
        return False
    for port in (layout.kafka_port, layout.controller_port):
        if port_open(port):
            raise StackError(f"port {port} is taken by another program; stop it or set SWITCHBOARD_KAFKA_PORT")
    java = ensure_java()
    jars = kafka_jars()
    kdir = layout.kafka_dir
    data = kdir / "data"
    kdir.mkdir(parents=True, exist_ok=True)
    if layout.secure:
        ensure_tls(layout)
    props = kdir / "server.properties"
    _write_private(  # holds the broker's passwords when secure
        props,
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{layout.controller_port}",
                *_listener_properties(layout),
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
        ).encode()
        + b"\n",
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
        scram: list[str] = []
        if layout.secure:
            # the principals' SCRAM credentials go into the first metadata records
            for name in kafka_principals():
                pw = layout.secrets().get("kafka", name)
                scram += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={pw}]"]
        r = subprocess.run(
            [
                java,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise StackError("formatting Kafka's storage failed:\n" + (r.stdout + r.stderr)[-2000:])
    heap = heap or os.environ.get("SWITCHBOARD_KAFKA_HEAP", "768m")
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
    layout.mode_file.write_text("secure" if layout.secure else "plaintext")
    try:
        wait_for(lambda: port_open(layout.kafka_port), "Kafka", 120, layout.logs / "kafka.log")
        blocking(_wait_kafka_metadata(layout.bootstrap, layout.kafka_security()))
    except BaseException:
        # the caller learns nothing was started, so nothing would stop it: a broker left on the port
        stop_pid(layout.run / "kafka.pid", "Kafka", 30)
        raise
    return True


def blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end from synchronous code. When this thread runs an event loop already (a
    synchronous pytest fixture first asked for by an asynchronous one), on a thread of its own:
    `asyncio.run` refuses to run inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="blocking") as pool:
        return pool.submit(asyncio.run, work).result()


async def _wait_kafka_metadata(
    bootstrap: str, security: kafka_security.KafkaSecurity | None = None, timeout: float = 60
) -> None:
    options = kafka_security.aiokafka_options(security or kafka_security.load())
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
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


async def create_topics(
    bootstrap: str,
    prefix: str = "",
    partitions_cap: int | None = None,
    security: kafka_security.KafkaSecurity | None = None,
) -> list[str]:
    """Create every DESIGN.md topic (and its .dlq) that is missing; returns the names created."""
    admin = provision.admin_client(bootstrap, security or kafka_security.load())
    await admin.start()
    try:
        report = await provision.ensure_topics(admin, prefix=prefix, partitions_cap=partitions_cap)
        return report.topics_created
    finally:
        await admin.close()


# --- PostgreSQL --------------------------------------------------------------------------------


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start_postgres(layout: Layout) -> bool:
    pg_dir = layout.pg_dir
    data = pg_dir / "data"
    bindir = pg_bindir()
    if (data / "postmaster.pid").exists() and port_open(layout.pg_port):
        say(f"PostgreSQL already running on 127.0.0.1:{layout.pg_port}")
        return False
    if port_open(layout.pg_port):
        raise StackError(f"port {layout.pg_port} is taken by another program; stop it or set SWITCHBOARD_PG_PORT")
    pg_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pg_dir, "postgres", "postgres")
        layout.logs.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        say(f"initdb {data}")
        pwfile = pg_dir / "pwfile"
        _write_private(pwfile, (layout.pg_admin_password() + "\n").encode())
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
                # pg_stat_statements: statements per service role (make bench, operators' diagnosis)
                f"-p {layout.pg_port} -c shared_preload_libraries=pg_stat_statements",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
        raise StackError("PostgreSQL did not start:\n" + r.stdout + r.stderr + tail)
    return True


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
    return provision.service_role(service)


async def provision_database(
    admin_url: str,
    database: str,
    services: tuple[str, ...] = SERVICES,
    passwords: dict[str, str] | None = None,
) -> provision.Report:
    """One database; one schema and one login role per service, each with rights on its own only.
    Without `passwords`, new roles get DB_PASSWORD (the test harness's) and existing ones keep theirs;
    with them (make up), every role's password is set to its own."""
    return await provision.ensure_database(
        admin_url,
        database,
        services=services,
        passwords=passwords or dict.fromkeys(services, DB_PASSWORD),
        reset_passwords=passwords is not None,
    )


def service_database_url(database_url: str, service: str, password: str = DB_PASSWORD) -> str:
    """The DATABASE_URL with the service's own login role."""
    from shared.db import with_credentials

    return with_credentials(database_url, service_role(service), password)


def provision_stack(layout: Layout) -> provision.Report:
    """Topics, ACLs (secure), and each service's role with its own password and schema: the same
    code as `switchboard provision`, with the stack's admin logins."""

    async def run() -> provision.Report:
        report = provision.Report()
        admin = provision.admin_client(layout.bootstrap, layout.kafka_security())
        await admin.start()
        try:
            await provision.ensure_topics(admin, report=report)
            if layout.secure:
                await provision.ensure_acls(admin, provision.principal_acls(), report)
        finally:
            await admin.close()
        passwords = {svc: layout.db_password(svc) for svc in SERVICES}
        await provision.ensure_database(layout.admin_url(), layout.database, passwords=passwords, report=report)
        return report

    report = asyncio.run(run())
    if report.topics_created:
        say(f"created {len(report.topics_created)} topics")
    if report.acls_created:
        say(f"created {report.acls_created} ACLs for {len(topics.PRINCIPALS)} principals")
    if report.roles_created:
        say(f"created roles {', '.join(report.roles_created)} (passwords in {layout.secrets().path})")
    return report


# --- services ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """One process of the stack's services (replica `index` of `service`)."""

    name: str
    service: str
    index: int
    port: int


def processes(layout: Layout) -> list[Process]:
    """Every service process: replica i of a service listens on its base port + 10*(i-1)."""
    out = []
    for svc in SERVICES:
        for i in range(1, layout.replicas + 1):
            name = svc if layout.replicas == 1 else f"{svc}-{i}"
            out.append(Process(name, svc, i, layout.http_ports[svc] + 10 * (i - 1)))
    return out


def service_env(layout: Layout, service: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment: its own database login (never the admin's) and Kafka principal."""
    password = layout.db_password(service)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": layout.bootstrap,
        "DATABASE_URL": service_database_url(layout.database_url, service, password),
        f"{service.upper()}_DB_USER": service_role(service),
        f"{service.upper()}_DB_PASSWORD": password,
        **layout.kafka_env(service),
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


def supervisor_available() -> bool:
    return importlib.util.find_spec("tools.supervise") is not None


def supervisor_spec(layout: Layout) -> dict[str, Any]:
    """The process list `tools.supervise` runs (restarts with backoff, SIGTERM stops all)."""
    return {
        "processes": [
            {
                "name": p.name,
                "argv": service_argv(p.service, p.port),
                "env": service_env(layout, p.service),
                "log": str(layout.logs / f"{p.name}.log"),
                # a roll takes the next process down only once this one is ready (groups joined)
                "health_url": f"http://127.0.0.1:{p.port}/health/ready",
            }
            for p in processes(layout)
        ]
    }


def start_services(layout: Layout) -> None:
    procs = processes(layout)
    supervised = supervisor_available()
    running = read_pid(layout.run / "supervisor.pid") is not None or any(
        read_pid(layout.run / f"{p.name}.pid") is not None for p in procs
    )
    if running:
        say("services already running")
    else:
        for p in procs:
            if port_open(p.port):
                raise StackError(f"port {p.port} (for {p.name}) is taken by another program; stop it first")
        if supervised:
            spec = layout.run / "supervisor.json"
            layout.run.mkdir(parents=True, exist_ok=True)
            # the spec holds the services' passwords
            _write_private(spec, json.dumps(supervisor_spec(layout), indent=2).encode())
            say(f"starting {len(procs)} service processes under tools.supervise (restarted if they exit)")
            spawn("supervisor", [sys.executable, "-m", "tools.supervise", "--spec", str(spec)], layout)
        else:
            for p in procs:
                say(f"starting {p.name} on 127.0.0.1:{p.port}")
                spawn(p.name, service_argv(p.service, p.port), layout, service_env(layout, p.service))
    # on a small machine N replicas start slower; a supervised process may need a restart or two
    timeout = 90 + 60 * (layout.replicas - 1) + (60 if supervised else 0)
    for p in procs:
        wait_for(lambda port=p.port: _healthy(port), p.name, timeout, layout.logs / f"{p.name}.log")


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop_services(layout: Layout) -> None:
    stop_pid(layout.run / "demo-devices.pid", "demo devices")
    # the supervisor drains its processes on SIGTERM (each within its drain timeout)
    stop_pid(layout.run / "supervisor.pid", "the services' supervisor", timeout=60)
    names = {p.name for p in processes(layout)} | set(SERVICES)
    names |= {f.stem for f in layout.run.glob("*.pid") if f.stem.split("-")[0] in SERVICES}
    for name in sorted(names):
        stop_pid(layout.run / f"{name}.pid", name)


def start_demo_devices(layout: Layout) -> None:
    """The demo agents' devices: signed in and beating until `make down` (tools.demo)."""
    if read_pid(layout.run / "demo-devices.pid") is not None:
        return
    say("signing the demo agents in (a demo device beats for each until make down)")
    spawn(
        "demo-devices",
        [sys.executable, "-m", "tools.demo", "devices"],
        layout,
        {"KAFKA_BOOTSTRAP_SERVERS": layout.bootstrap, **layout.kafka_env("devices")},
    )


# --- commands ----------------------------------------------------------------------------------


def env_lines(layout: Layout) -> str:
    """`make env`: the stack's addresses with its administrative logins (tests and tools use them)."""
    lines = [
        f"KAFKA_BOOTSTRAP_SERVERS={layout.bootstrap}",
        *(f"{k}={v}" for k, v in layout.kafka_env(KAFKA_ADMIN).items()),
        f"DATABASE_URL={layout.database_url}",
        f"SWITCHBOARD_URL={layout.gateway_url}",
    ]
    return "\n".join(lines)


def up(layout: Layout) -> None:
    start_postgres(layout)
    start_kafka(layout)
    provision_stack(layout)
    start_services(layout)
    start_demo_devices(layout)
    say("all healthy")
    from shared.auth import Auth

    auth = Auth.from_env()
    token = auth.mint("agent-1")
    supervisor = auth.mint("supervisor-1", roles=("supervisor",))
    kafka = f"{layout.bootstrap}" + (
        f"   (SASL_SSL, SCRAM-SHA-512; CA {layout.tls_dir / 'ca.pem'}; one principal per service)"
        if layout.secure
        else ""
    )
    health = ", ".join(f"{p.name} :{p.port}" for p in processes(layout))
    gateways = [f"http://127.0.0.1:{p.port}" for p in processes(layout) if p.service == "sessions"]
    replicas = (
        f"  Gateways:         {', '.join(gateways)}   (any of them serves any agent)\n" if len(gateways) > 1 else ""
    )
    print(
        f"\nSwitchboard is up.\n"
        f"  Agent workspace:  {layout.gateway_url}/?agent=agent-1&token={token}\n"
        f"                    (other agents: uv run switchboard token agent-2)\n"
        f"  Supervisor view:  {layout.gateway_url}/supervisor?supervisor=supervisor-1&token={supervisor}\n"
        f"  Customer chat:    {layout.gateway_url}/customer   (demo: start a chat as a customer)\n"
        f"{replicas}"
        f"  Kafka:            {kafka}\n"
        f"  PostgreSQL:       127.0.0.1:{layout.pg_port}/{layout.database}   (one login per service; "
        f"passwords in {layout.secrets().path})\n"
        f"  Health:           {health}\n"
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
    stop_pid(layout.state / "secure-test" / "run" / "kafka.pid", "secure test Kafka", timeout=30)
    from tools import faults  # the fault-injection tests' own stack, when it was kept running

    faults.OwnStack().stop()
    pg = layout.pg_dir
    shutil.rmtree(layout.state, ignore_errors=True)
    shutil.rmtree(pg.parent if pg.parent.name != layout.state.name else pg, ignore_errors=True)
    say(f"deleted {layout.state}")


def _spec_processes(layout: Layout) -> list[tuple[str, int]]:
    """(name, port) of every service process: the supervisor's spec when there is one."""
    spec = layout.run / "supervisor.json"
    if spec.exists() and read_pid(layout.run / "supervisor.pid") is not None:
        out = []
        for p in json.loads(spec.read_text())["processes"]:
            argv = p["argv"]
            out.append((p["name"], int(argv[argv.index("--port") + 1])))
        return out
    found = [(p.name, p.port) for p in processes(layout)]
    extra = sorted(f.stem for f in layout.run.glob("*-[0-9].pid") if f.stem.split("-")[0] in SERVICES)
    if extra and layout.replicas == 1:  # started with REPLICAS=N, asked without it
        found = [(n, layout.http_ports[n.split("-")[0]] + 10 * (int(n.split("-")[1]) - 1)) for n in extra]
    return found


def _supervised(layout: Layout) -> dict[str, dict[str, Any]]:
    """name -> the supervisor's last `process_started` event (pid, restarts), from its log."""
    log = layout.logs / "supervisor.log"
    if not log.exists():
        return {}
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 256 * 1024))
        tail = f.read().decode(errors="replace").splitlines()
    out: dict[str, dict[str, Any]] = {}
    for line in tail:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "process_started":
                out[event["name"]] = event
    return out


def status(layout: Layout) -> None:
    mode = "SASL_SSL" if layout.secure else "PLAINTEXT"
    print(f"kafka        {'up' if port_open(layout.kafka_port) else 'down'}  {layout.bootstrap} ({mode})")
    print(f"postgres     {'up' if port_open(layout.pg_port) else 'down'}  127.0.0.1:{layout.pg_port}")
    sup = read_pid(layout.run / "supervisor.pid")
    started = _supervised(layout) if sup is not None else {}
    if sup is not None:
        print(f"supervisor   up    pid {sup}  (restarts services that exit; log {layout.logs / 'supervisor.log'})")
    for name, port in _spec_processes(layout):
        pid = read_pid(layout.run / f"{name}.pid")
        detail = f"  pid {pid}" if pid else ""
        if name in started:
            detail = f"  pid {started[name]['pid']}, restarts {started[name].get('restarts', 0)}"
        print(f"{name:<12} {'up  ' if _healthy(port) else 'down'}  :{port}{detail}")


def roll(layout: Layout) -> None:
    """Restart every service process one by one, each healthy before the next (the supervisor's SIGHUP)."""
    pid = read_pid(layout.run / "supervisor.pid")
    if pid is None:
        raise StackError("no supervisor is running (make up starts one)")
    os.kill(pid, signal.SIGHUP)
    say(f"rolling restart asked of the supervisor (pid {pid}); follow it in {layout.logs / 'supervisor.log'}")


def logs(layout: Layout, follow: bool) -> None:
    names = [name for name, _ in _spec_processes(layout)] + ["supervisor", "demo-devices", "kafka"]
    files = [layout.logs / f"{n}.log" for n in names if (layout.logs / f"{n}.log").exists()]
    if not files:
        say(f"no logs under {layout.logs}; is the stack up (make up)?")
        return
    os.execvp("tail", ["tail", "-n", "40", *(["-F"] if follow else []), *map(str, files)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.stack")
    p.add_argument("command", choices=["up", "down", "clean", "env", "logs", "status", "infra", "roll"])
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--service", choices=SERVICES, help="env: the lines to run this service by hand (its own logins)")
    args = p.parse_args(argv)
    try:
        layout = Layout.default()
        if (
            args.command in ("up", "infra")
            and "SECURE" not in os.environ
            and read_pid(layout.run / "kafka.pid") is None
        ):
            layout.secure = False  # a stack starting afresh is plaintext unless SECURE=1 says otherwise
        if args.command == "up":
            up(layout)
        elif args.command == "infra":
            start_postgres(layout)
            start_kafka(layout)
            provision_stack(layout)
            print(env_lines(layout))
        elif args.command == "down":
            down(layout)
        elif args.command == "clean":
            clean(layout)
        elif args.command == "env" and args.service:
            env = service_env(layout, args.service)
            print("\n".join(f"{k}={v}" for k, v in env.items() if k.isupper()))
        elif args.command == "env":
            print(env_lines(layout))
        elif args.command == "status":
            status(layout)
        elif args.command == "roll":
            roll(layout)
        elif args.command == "logs":
            logs(layout, args.follow)
    except (StackError, provision.ProvisionError, kafka_security.KafkaSecurityError) as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
