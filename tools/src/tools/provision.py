"""Provisioning against any Kafka and PostgreSQL, idempotently: every topic of `shared.topics` and its
dead-letter topic (partitions, replication factor, configs), per-principal ACLs on a secure broker,
and one login role and schema per service. `make up` uses the same code; so does
`switchboard provision`. Migrations are not run here: each service runs its own at start.

python -m tools.provision [--json] [--replication-factor N] [--acls] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest

from shared import kafka_security, topics
from shared.db import ident

SERVICES = ("routing", "sessions", "presence", "assist")
DAY_MS = 24 * 3600 * 1000
RETENTION_MS = 7 * DAY_MS
DLQ_RETENTION_MS = 30 * DAY_MS


class ProvisionError(RuntimeError):
    """Something a person must fix; the message says what."""


@dataclass
class Report:
    """What provisioning found and did; `--json` prints it as is."""

    topics_created: list[str] = field(default_factory=list)
    topics_existing: list[str] = field(default_factory=list)
    partitions_increased: dict[str, list[int]] = field(default_factory=dict)  # topic: [before, after]
    configs_fixed: dict[str, dict[str, str]] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    acls_created: int = 0
    acls_existing: int = 0
    database_created: bool = False
    roles_created: list[str] = field(default_factory=list)
    roles_existing: list[str] = field(default_factory=list)
    roles_fixed: list[str] = field(default_factory=list)
    passwords_set: list[str] = field(default_factory=list)
    schemas_created: list[str] = field(default_factory=list)
    # generated passwords of roles created by this run (shown once; empty when written to a file)
    generated_passwords: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(
            self.topics_created
            or self.partitions_increased
            or self.configs_fixed
            or self.acls_created
            or self.database_created
            or self.roles_created
            or self.roles_fixed
            or self.schemas_created
        )


# --- Kafka: topics ---------------------------------------------------------------------------------


ROLE_PREFIX = "sb_"


def service_role(service: str, role_prefix: str = ROLE_PREFIX) -> str:
    return f"{role_prefix}{service}"


def topic_configs(name: str, replication_factor: int) -> dict[str, str]:
    """The configs every Switchboard topic gets; dead letters are kept longer, for a person to act."""
    is_dlq = name.endswith(topics.DLQ_SUFFIX)
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(DLQ_RETENTION_MS if is_dlq else RETENTION_MS),
        "min.insync.replicas": "2" if replication_factor >= 3 else "1",
    }


def admin_client(bootstrap: str, security: kafka_security.KafkaSecurity | None = None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30000, **kafka_security.aiokafka_options(security)
    )


async def _broker_count(admin: AIOKafkaAdminClient) -> int:
    cluster = await admin.describe_cluster()
    return max(1, len(cluster.get("brokers", [])))


async def _topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, tuple[str, int]]]:
    """name -> config -> (value, source) for the given topics."""
    if not names:
        return {}
    out: dict[str, dict[str, tuple[str, int]]] = {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    for resp in responses:
        for res in resp.to_object()["resources"]:
            if res["error_code"]:
                raise ProvisionError(f"describing configs of {res['resource_name']}: {res['error_message']}")
            out[res["resource_name"]] = {
                e["config_names"]: (e["config_value"], e["config_source"])
                for e in res["config_entries"]
                if not e["is_sensitive"]
            }
    return out


DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source of a value set on the topic itself


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    *,
    prefix: str = "",
    replication_factor: int | None = None,
    partitions_cap: int | None = None,
    fix_configs: bool = True,
    report: Report | None = None,
) -> Report:
    """Create every topic and DLQ that is missing, add partitions where there are fewer than
    specified, set the configs that differ (`fix_configs`) and report every other drift."""
    report = report or Report()
    brokers = await _broker_count(admin)
    rf = replication_factor or min(3, brokers)
    if rf > brokers:
        raise ProvisionError(f"replication factor {rf} needs at least {rf} brokers; this cluster has {brokers}")
    specs = {prefix + s.name: s for s in topics.all_topic_specs(partitions_cap)}
    existing = set(await admin.list_topics())
    missing = [name for name in specs if name not in existing]
    if missing:
        new = [NewTopic(n, specs[n].partitions, rf, topic_configs=topic_configs(n, rf)) for n in missing]
        try:
            resp = await admin.create_topics(new, timeout_ms=30000)
        except TopicAlreadyExistsError:
            resp = None  # another provisioner won the race; the next run sees them as existing
        if resp is not None:
            for name, code, *rest in resp.topic_errors:
                if code and for_code(code) is not TopicAlreadyExistsError:
                    raise ProvisionError(f"creating topic {name}: {for_code(code).__name__} {rest[-1] if rest else ''}")
        report.topics_created.extend(missing)
    present = [name for name in specs if name in existing]
    report.topics_existing.extend(present)
    if not present:
        return report
    described = {t["topic"]: t for t in await admin.describe_topics(present)}
    grow: dict[str, NewPartitions] = {}
    for name in present:
        info = described.get(name)
        if info is None or info.get("error_code"):
            report.drift.append(f"{name}: cannot describe it")
            continue
        have = len(info["partitions"])
        want = specs[name].partitions
        if have < want:
            grow[name] = NewPartitions(total_count=want)
            report.partitions_increased[name] = [have, want]
        elif have > want:
            report.drift.append(f"{name}: {have} partitions, more than the {want} specified (kept)")
        replicas = {len(p["replicas"]) for p in info["partitions"]}
        if replicas and max(replicas) != rf:
            report.drift.append(
                f"{name}: replication factor {max(replicas)}, expected {rf} "
                "(changing it needs a partition reassignment: kafka-reassign-partitions)"
            )
    if grow:
        await admin.create_partitions(grow)
    current = await _topic_configs(admin, present)
    for name in present:
        have_cfg = current.get(name, {})
        want_cfg = topic_configs(name, rf)
        differ = {k: v for k, v in want_cfg.items() if have_cfg.get(k, ("", 0))[0] != v}
        if not differ:
            continue
        if not fix_configs:
            for k, v in differ.items():
                report.drift.append(f"{name}: {k}={have_cfg.get(k, ('unset', 0))[0]}, expected {v}")
            continue
        # AlterConfigs replaces every dynamic config of the topic: keep the ones set there by others
        merged = {k: v for k, (v, src) in have_cfg.items() if src == DYNAMIC_TOPIC_CONFIG}
        merged.update(want_cfg)
        resp = (await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, merged)]))[0]
        for res in resp.to_object()["resources"]:
            if res["error_code"]:
                raise ProvisionError(f"setting configs of {name}: {res['error_message']}")
        report.configs_fixed[name] = differ
    return report


# --- Kafka: ACLs -------------------------------------------------------------------------------------

# Kafka's protocol codes (org.apache.kafka.common.acl / resource)
TOPIC, GROUP, CLUSTER = 2, 3, 4
READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS, IDEMPOTENT_WRITE = 3, 4, 8, 10, 12
ANY, ALLOW = 1, 3
LITERAL = 3
OPERATIONS = {
    READ: "Read",
    WRITE: "Write",
    DESCRIBE: "Describe",
    DESCRIBE_CONFIGS: "DescribeConfigs",
    IDEMPOTENT_WRITE: "IdempotentWrite",
}
RESOURCES = {TOPIC: "Topic", GROUP: "Group", CLUSTER: "Cluster"}


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding on a literal resource, from any host."""

    principal: str
    resource_type: int
    resource_name: str
    operation: int

    def __str__(self) -> str:
        return (
            f"{self.principal} {OPERATIONS.get(self.operation, self.operation)} on "
            f"{RESOURCES.get(self.resource_type, self.resource_type)}:{self.resource_name}"
        )


def acls_for(access: topics.Access, *, prefix: str = "", principal: str | None = None) -> list[Acl]:
    """Exactly what `access` allows: read (and describe) the topics it consumes or reads, write
    (and describe, and read the configuration of: the outbox relay checks `max.message.bytes`)
    what it produces and its consumed topics' DLQs, read its consumer groups.
    Kafka 3.x and 4.x let an idempotent producer initialise with WRITE on any topic (KIP-679), so
    no cluster-wide IDEMPOTENT_WRITE is granted."""
    who = principal or f"User:{access.service}"
    out: set[Acl] = set()
    for t in access.read_topics():
        out |= {Acl(who, TOPIC, prefix + t, READ), Acl(who, TOPIC, prefix + t, DESCRIBE)}
    for t in access.write_topics():
        out |= {
            Acl(who, TOPIC, prefix + t, WRITE),
            Acl(who, TOPIC, prefix + t, DESCRIBE),
            Acl(who, TOPIC, prefix + t, DESCRIBE_CONFIGS),
        }
    for g in access.groups(prefix):
        out.add(Acl(who, GROUP, g, READ))
    return sorted(out)


async def describe_acls(admin: AIOKafkaAdminClient, principal: str) -> set[Acl]:
    """The literal ALLOW bindings `principal` has."""
    resp = await admin._send_request(DescribeAclsRequest(ANY, None, ANY, principal, None, ANY, ANY))  # type: ignore[arg-type]
    obj = resp.to_object()
    if obj["error_code"]:
        raise ProvisionError(f"listing ACLs of {principal}: {obj['error_message']} (is the admin a super user?)")
    found: set[Acl] = set()
    for res in obj["resources"]:
        if res.get("resource_pattern_type", LITERAL) != LITERAL:
            continue
        for a in res["acls"]:
            if a["permission_type"] == ALLOW:
                found.add(Acl(a["principal"], res["resource_type"], res["resource_name"], a["operation"]))
    return found


async def ensure_acls(admin: AIOKafkaAdminClient, wanted: Iterable[Acl], report: Report | None = None) -> Report:
    """Create the bindings that are missing (CreateAcls is idempotent; this only counts)."""
    report = report or Report()
    wanted = sorted(set(wanted))
    have: set[Acl] = set()
    for principal in sorted({a.principal for a in wanted}):
        have |= await describe_acls(admin, principal)
    missing = [a for a in wanted if a not in have]
    report.acls_existing += len(wanted) - len(missing)
    for acl in missing:
        req = CreateAclsRequest(acl.resource_type, acl.resource_name, LITERAL, acl.principal, "*", acl.operation, ALLOW)
        resp = (await admin._send_request(req)).to_object()
        for r in resp["creation_responses"]:
            if r["error_code"]:
                raise ProvisionError(
                    f"creating ACL {acl}: {for_code(r['error_code']).__name__} {r['error_message'] or ''}"
                    " (is an authorizer configured, and is the admin a super user?)"
                )
        report.acls_created += 1
    return report


def principal_acls(
    prefix: str = "", principal_prefix: str = "", principals: Mapping[str, topics.Access] | None = None
) -> list[Acl]:
    """Every principal's bindings (services and other clients of `shared.topics`)."""
    out: list[Acl] = []
    for name, access in (principals or topics.PRINCIPALS).items():
        out.extend(acls_for(access, prefix=prefix, principal=f"User:{principal_prefix}{name}"))
    return out


# --- PostgreSQL: database, roles, schemas -------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_of(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ProvisionError(f"the database URL names no database ({_redact(url)}): add /NAME or --database")
    return name


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def new_password() -> str:
    return secrets.token_urlsafe(24)


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ProvisionError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc


async def ensure_database(
    admin_url: str,
    database: str,
    *,
    services: Iterable[str] = SERVICES,
    passwords: Mapping[str, str] | None = None,
    reset_passwords: bool = True,
    role_prefix: str = ROLE_PREFIX,
    report: Report | None = None,
) -> Report:
    """The database, and per service a login role without any administrative attribute (it owns its
    schema and has rights on nothing else) and that schema. A role that is created gets the given
    password or a generated one (in `report.generated_passwords`); an existing role's password is set
    only when given and `reset_passwords`."""
    report = report or Report()
    services = list(services)
    passwords = dict(passwords or {})
    ident(database)
    conn = await _connect(_with_database(admin_url, "postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f'CREATE DATABASE "{ident(database)}"')
                report.database_created = True
        for svc in services:
            role = ident(service_role(svc, role_prefix))
            row = await conn.fetchrow(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = $1",
                role,
            )
            if row is None:
                pw = passwords.get(svc)
                if pw is None:
                    pw = report.generated_passwords[role] = new_password()
                stmt = await conn.fetchval(
                    "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                    " NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
                    role,
                    pw,
                )
                try:
                    await conn.execute(stmt)
                    report.roles_created.append(role)
                    continue
                except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                    report.generated_passwords.pop(role, None)  # created meanwhile by another run
            else:
                report.roles_existing.append(role)
                if (
                    any(row[k] for k in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls"))
                    or not row["rolcanlogin"]
                ):
                    await conn.execute(
                        f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                    )
                    report.roles_fixed.append(role)
            if svc in passwords and reset_passwords:
                stmt = await conn.fetchval(
                    "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, passwords[svc]
                )
                await conn.execute(stmt)
                report.passwords_set.append(role)
    finally:
        await conn.close()
    conn = await _connect(_with_database(admin_url, database))
    try:
        await conn.execute(f'REVOKE ALL ON DATABASE "{ident(database)}" FROM PUBLIC')
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for svc in services:
            role = service_role(svc, role_prefix)
            await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{ident(database)}" TO {role}')
            owner = await conn.fetchval(
                "SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1", svc
            )
            if owner is None:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(svc)} AUTHORIZATION {role}")
                report.schemas_created.append(svc)
            elif owner != role:
                await conn.execute(f"ALTER SCHEMA {ident(svc)} OWNER TO {role}")
                report.roles_fixed.append(f"schema {svc} owner {owner} -> {role}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {ident(svc)} FROM PUBLIC")
    finally:
        await conn.close()
    return report


# --- the command ------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`switchboard provision`: the subcommand's arguments (run with `run`)."""
    p = subparsers.add_parser(
        "provision",
        help="create topics, ACLs, database roles and schemas idempotently",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _arguments(p)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--bootstrap", default=env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"), help="Kafka (KAFKA_BOOTSTRAP_SERVERS)"
    )
    p.add_argument(
        "--database-url",
        default=env("SWITCHBOARD_ADMIN_DATABASE_URL") or env("DATABASE_URL"),
        help="an administrative login to PostgreSQL (SWITCHBOARD_ADMIN_DATABASE_URL, else DATABASE_URL)",
    )
    p.add_argument("--database", help="the database to provision (default: the URL's)")
    p.add_argument("--topic-prefix", default=env("SWITCHBOARD_TOPIC_PREFIX", ""), help="SWITCHBOARD_TOPIC_PREFIX")
    p.add_argument("--replication-factor", type=int, help="default: min(3, number of brokers)")
    p.add_argument("--partitions-cap", type=int, help="at most this many partitions per topic (small clusters)")
    p.add_argument("--report-only", action="store_true", help="report config drift instead of correcting it")
    p.add_argument(
        "--acls", action="store_true", help="also create each principal's ACLs (a broker with an authorizer)"
    )
    p.add_argument("--principal-prefix", default="", help="Kafka user names are PREFIX + routing, sessions, ...")
    p.add_argument(
        "--password",
        action="append",
        default=[],
        metavar="SERVICE=PASSWORD",
        help="a role's password (also from ROUTING_DB_PASSWORD etc.); missing ones are generated for new roles",
    )
    p.add_argument("--passwords-file", type=Path, help="write generated passwords here (JSON, mode 0600)")
    p.add_argument("--role-prefix", default=ROLE_PREFIX, help="login roles are PREFIX + service (default sb_)")
    p.add_argument("--skip-kafka", action="store_true")
    p.add_argument("--skip-database", action="store_true")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _passwords(args: argparse.Namespace) -> dict[str, str]:
    out = {s: os.environ[f"{s.upper()}_DB_PASSWORD"] for s in SERVICES if os.environ.get(f"{s.upper()}_DB_PASSWORD")}
    for item in args.password:
        svc, sep, pw = item.partition("=")
        if not sep or svc not in SERVICES or not pw:
            raise ProvisionError(f"--password {svc}=...: expected SERVICE=PASSWORD with SERVICE one of {SERVICES}")
        out[svc] = pw
    return out


async def provision(args: argparse.Namespace) -> Report:
    report = Report()
    if not args.skip_kafka:
        sec = kafka_security.load()
        admin = admin_client(args.bootstrap, sec)
        try:
            await admin.start()
        except KafkaError as exc:
            raise ProvisionError(f"cannot reach Kafka at {args.bootstrap} ({sec.describe()}): {exc!r}") from exc
        try:
            await ensure_topics(
                admin,
                prefix=args.topic_prefix,
                replication_factor=args.replication_factor,
                partitions_cap=args.partitions_cap,
                fix_configs=not args.report_only,
                report=report,
            )
            if args.acls:
                await ensure_acls(admin, principal_acls(args.topic_prefix, args.principal_prefix), report)
        finally:
            await admin.close()
    if not args.skip_database:
        if not args.database_url:
            raise ProvisionError("no PostgreSQL to provision: set SWITCHBOARD_ADMIN_DATABASE_URL or --database-url")
        database = args.database or database_of(args.database_url)
        await ensure_database(
            args.database_url, database, passwords=_passwords(args), role_prefix=args.role_prefix, report=report
        )
        if report.generated_passwords and args.passwords_file:
            write_secret_json(args.passwords_file, report.generated_passwords)
    return report


def write_secret_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write (merging into an existing file) JSON readable by its owner only."""
    current: dict[str, Any] = {}
    if path.exists():
        current = json.loads(path.read_text() or "{}")
    current.update(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(current, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(path, 0o600)


def render(report: Report, passwords_file: Path | None = None) -> str:
    """The human-readable summary."""
    lines: list[str] = []
    if report.topics_created:
        lines.append(f"topics created ({len(report.topics_created)}): " + ", ".join(report.topics_created))
    if report.topics_existing:
        lines.append(f"topics already there: {len(report.topics_existing)}")
    for name, (before, after) in report.partitions_increased.items():
        lines.append(f"partitions of {name}: {before} -> {after}")
    for name, cfg in report.configs_fixed.items():
        lines.append(f"configs of {name} set: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    if report.acls_created or report.acls_existing:
        lines.append(f"ACLs created: {report.acls_created}, already there: {report.acls_existing}")
    if report.database_created:
        lines.append("database created")
    if report.roles_created:
        lines.append("roles created: " + ", ".join(report.roles_created))
    if report.roles_existing:
        lines.append("roles already there: " + ", ".join(report.roles_existing))
    if report.roles_fixed:
        lines.append("corrected: " + ", ".join(report.roles_fixed))
    if report.passwords_set:
        lines.append("passwords set: " + ", ".join(report.passwords_set))
    if report.schemas_created:
        lines.append("schemas created: " + ", ".join(report.schemas_created))
    for d in report.drift:
        lines.append(f"drift: {d}")
    if report.generated_passwords:
        if passwords_file:
            lines.append(f"generated passwords written to {passwords_file} (mode 0600)")
        else:
            lines.append("generated passwords (shown once; store them as the services' secrets):")
            lines.extend(f"  {role}: {pw}" for role, pw in report.generated_passwords.items())
    lines.append("changed: " + ("yes" if report.changed else "nothing (already provisioned)"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """`switchboard provision`: provision, print the report; 1 with a readable error."""
    try:
        report = asyncio.run(provision(args))
    except (ProvisionError, kafka_security.KafkaSecurityError, asyncpg.PostgresError, KafkaError) as exc:
        print(f"provision: error: {exc}", file=sys.stderr)
        return 1
    return emit(report, args)


def emit(report: Report, args: argparse.Namespace) -> int:
    if args.json:
        out = asdict(report)
        if args.passwords_file:
            out["generated_passwords"] = {}
        out["changed"] = report.changed
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(render(report, args.passwords_file))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.provision", description=__doc__.split("\n\n")[0])
    _arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run(parse(argv))


if __name__ == "__main__":
    sys.exit(main())
