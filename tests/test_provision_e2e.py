"""`switchboard provision` on the shared test stack, with a database, topic prefix and role prefix of
its own: it creates what is missing, grows partitions, corrects config drift while keeping others'
settings, makes login roles that own only their schema, and a second run changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import topics
from shared.db import with_credentials
from tools import provision, testing


def test_acls_are_derived_from_the_access_list() -> None:
    acls = {str(a) for a in provision.acls_for(topics.ACCESS["presence"], prefix="p.")}
    assert acls == {
        "User:presence Read on Topic:p.presence.commands.v1",
        "User:presence Describe on Topic:p.presence.commands.v1",
        "User:presence Read on Topic:p.routing.v1",
        "User:presence Describe on Topic:p.routing.v1",
        "User:presence Write on Topic:p.presence.v1",
        "User:presence Describe on Topic:p.presence.v1",
        "User:presence DescribeConfigs on Topic:p.presence.v1",
        "User:presence Write on Topic:p.presence.commands.v1.dlq",
        "User:presence Describe on Topic:p.presence.commands.v1.dlq",
        "User:presence DescribeConfigs on Topic:p.presence.commands.v1.dlq",
        "User:presence Write on Topic:p.routing.v1.dlq",
        "User:presence Describe on Topic:p.routing.v1.dlq",
        "User:presence DescribeConfigs on Topic:p.routing.v1.dlq",
        "User:presence Read on Group:p.presence.presence.commands.v1",
        "User:presence Read on Group:p.presence.routing.v1",
    }
    assert not any(a.resource_type == provision.CLUSTER for a in provision.principal_acls())


def test_topic_configs() -> None:
    assert provision.topic_configs("x.routing.v1", 3) == {
        "cleanup.policy": "delete",
        "retention.ms": str(7 * 24 * 3600 * 1000),
        "min.insync.replicas": "2",
    }
    dlq = provision.topic_configs("x.routing.v1.dlq", 1)
    assert dlq["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert dlq["min.insync.replicas"] == "1"


@pytest.fixture
async def target(infra: testing.Infrastructure, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    for svc in provision.SERVICES:
        monkeypatch.delenv(f"{svc.upper()}_DB_PASSWORD", raising=False)
    token = uuid.uuid4().hex[:8]
    t = {
        "bootstrap": infra.bootstrap,
        "prefix": f"tprov{token}.",
        "database": f"tprov_{token}",
        "roles": f"tprov{token}_",
        "url": infra.admin_url.rsplit("/", 1)[0] + f"/tprov_{token}",
    }
    yield t
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(t["prefix"])]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
    conn = await asyncpg.connect(infra.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{t["database"]}" WITH (FORCE)')
        for svc in provision.SERVICES:
            await conn.execute(f'DROP ROLE IF EXISTS "{t["roles"]}{svc}"')
    finally:
        await conn.close()


async def run(t: dict[str, str], *extra: str) -> provision.Report:
    args = provision.parse(
        [
            "--bootstrap",
            t["bootstrap"],
            "--database-url",
            t["url"],
            "--topic-prefix",
            t["prefix"],
            "--role-prefix",
            t["roles"],
            *extra,
        ]
    )
    return await provision.provision(args)


async def configs(bootstrap: str, name: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = resp[0].to_object()["resources"][0]["config_entries"]
        return {e["config_names"]: e["config_value"] for e in entries}
    finally:
        await admin.close()


@pytest.mark.e2e
async def test_provision_is_idempotent_and_corrects_drift(target: dict[str, str]) -> None:
    t = target
    specs = topics.all_topic_specs(1)
    first = await run(t, "--partitions-cap", "1")
    assert sorted(first.topics_created) == sorted(t["prefix"] + s.name for s in specs)
    assert first.database_created
    roles = [f"{t['roles']}{svc}" for svc in provision.SERVICES]
    assert sorted(first.roles_created) == sorted(roles)
    assert sorted(first.generated_passwords) == sorted(roles)
    assert len(set(first.generated_passwords.values())) == len(roles)  # distinct passwords
    assert sorted(first.schemas_created) == sorted(provision.SERVICES)

    routing = t["prefix"] + topics.ROUTING
    cfg = await configs(t["bootstrap"], routing)
    assert cfg["retention.ms"] == str(provision.RETENTION_MS)
    assert cfg["cleanup.policy"] == "delete"
    assert (await configs(t["bootstrap"], routing + ".dlq"))["retention.ms"] == str(provision.DLQ_RETENTION_MS)

    second = await run(t, "--partitions-cap", "1")
    assert not second.changed, second
    assert not second.generated_passwords and not second.drift
    assert sorted(second.roles_existing) == sorted(roles)

    # more partitions wanted: grown; someone changed a config and added one of their own
    admin = AIOKafkaAdminClient(bootstrap_servers=t["bootstrap"])
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, routing, {"retention.ms": "1000", "max.message.bytes": "2000000"}
                )
            ]
        )
    finally:
        await admin.close()
    reported = await run(t, "--partitions-cap", "2", "--report-only")
    assert f"{routing}: retention.ms=1000, expected {provision.RETENTION_MS}" in reported.drift
    assert (await configs(t["bootstrap"], routing))["retention.ms"] == "1000"
    grown = [n for n, (before, after) in reported.partitions_increased.items() if (before, after) == (1, 2)]
    assert routing in grown

    fixed = await run(t, "--partitions-cap", "2")
    assert fixed.configs_fixed == {routing: {"retention.ms": str(provision.RETENTION_MS)}}
    cfg = await configs(t["bootstrap"], routing)
    assert cfg["retention.ms"] == str(provision.RETENTION_MS)
    assert cfg["max.message.bytes"] == "2000000"  # kept
    assert not (await run(t, "--partitions-cap", "2")).changed

    # each role logs in with its own password, owns its schema, and cannot touch another's
    pw = first.generated_passwords
    conn = await asyncpg.connect(with_credentials(t["url"], f"{t['roles']}assist", pw[f"{t['roles']}assist"]))
    try:
        attrs = await conn.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        assert tuple(attrs) == (False, False, False)
        await conn.execute("CREATE TABLE assist.probe (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE routing.probe (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.probe (id int)")
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(with_credentials(t["url"], f"{t['roles']}assist", pw[f"{t['roles']}routing"]))


@pytest.mark.e2e
async def test_given_passwords_and_json_output(
    target: dict[str, str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    t = target
    secrets_file = tmp_path / "roles.json"
    argv = [
        "--bootstrap",
        t["bootstrap"],
        "--database-url",
        t["url"],
        "--topic-prefix",
        t["prefix"],
        "--role-prefix",
        t["roles"],
        "--partitions-cap",
        "1",
        "--password",
        "routing=chosen-by-ops",
        "--passwords-file",
        str(secrets_file),
        "--json",
    ]
    assert await _main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] and out["generated_passwords"] == {}  # written to the file, not printed
    written = json.loads(secrets_file.read_text())
    assert sorted(written) == sorted(f"{t['roles']}{s}" for s in ("sessions", "presence", "assist"))
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    conn = await asyncpg.connect(with_credentials(t["url"], f"{t['roles']}routing", "chosen-by-ops"))
    await conn.close()
    assert await _main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["changed"] is False


async def _main(argv: list[str]) -> int:
    # provision.main runs its own event loop; the test already has one
    args = provision.parse(argv)
    report = await provision.provision(args)
    return provision.emit(report, args)


def test_embedded_stack_logins_are_per_service(tmp_path: Any) -> None:
    """`make up` (and SECURE=1): each service gets its own database role and Kafka principal, with
    passwords generated once into a file only its owner reads; nothing carries the admin logins."""
    from tools import stack

    layout = stack.Layout(tmp_path / "state", secure=True)
    admin_secrets = {layout.pg_admin_password(), layout.secrets().get("kafka", stack.KAFKA_ADMIN)}
    envs = {svc: stack.service_env(layout, svc) for svc in provision.SERVICES}
    for svc, env in envs.items():
        assert env["DATABASE_URL"].startswith(f"postgresql://sb_{svc}:{layout.db_password(svc)}@")
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_USERNAME"] == svc
        assert not any(secret in value for secret in admin_secrets for value in env.values()), svc
    db_passwords = {env[f"{svc.upper()}_DB_PASSWORD"] for svc, env in envs.items()}
    kafka_passwords = {env["KAFKA_SASL_PASSWORD"] for env in envs.values()}
    assert len(db_passwords) == len(kafka_passwords) == len(provision.SERVICES)
    assert layout.secrets().path.stat().st_mode & 0o777 == 0o600
    again = stack.Layout(tmp_path / "state", secure=True)
    assert stack.service_env(again, "routing") == envs["routing"]  # generated once, then kept

    props = "\n".join(stack._listener_properties(layout))
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT" in props
    assert "PLAINTEXT://" not in props
    assert set(stack.kafka_principals()) == {stack.KAFKA_ADMIN, *topics.ACCESS, *topics.CLIENTS}


def test_replicas_get_distinct_ports_in_the_supervisor_spec(tmp_path: Any) -> None:
    from tools import stack

    layout = stack.Layout(tmp_path / "state", replicas=2)
    procs = {p.name: p.port for p in stack.processes(layout)}
    assert procs["routing-1"] == 18081 and procs["routing-2"] == 18091
    assert procs["sessions-2"] == 18090 and len(procs) == 8
    spec = stack.supervisor_spec(layout)
    by_name = {p["name"]: p for p in spec["processes"]}
    assert by_name["assist-2"]["argv"][-2:] == ["--port", "18093"]
    assert by_name["assist-2"]["health_url"] == "http://127.0.0.1:18093/health/ready"
    assert by_name["assist-2"]["env"]["DATABASE_URL"].startswith("postgresql://sb_assist:")
    assert "KAFKA_SECURITY_PROTOCOL" not in by_name["assist-2"]["env"]  # plaintext stack
    single = stack.Layout(tmp_path / "state")
    assert [p.name for p in stack.processes(single)] == list(stack.SERVICES)
