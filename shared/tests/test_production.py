"""Production mode refuses unsafe defaults, each problem with what to set; outside production
nothing is refused."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest

from routing.settings import RoutingSettings
from sessions.settings import SessionsSettings
from shared import production
from shared.auth import DEV_SECRET
from shared.production import ProductionRefused, enforce
from shared.settings import ServiceSettings
from tools.testing import Deployment

GOOD_SECRET = "0123456789abcdef" * 4
SECURITY_ENV = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE")
AUTH_ENV = (
    "SWITCHBOARD_AUTH_SECRET",
    "SESSIONS_GATEWAY_SECRET",
    "SWITCHBOARD_OIDC_JWKS_URL",
    "SESSIONS_OIDC_JWKS_URL",
    "SWITCHBOARD_OIDC_ISSUER",
    "SESSIONS_OIDC_ISSUER",
    "SWITCHBOARD_OIDC_AUDIENCE",
    "SESSIONS_OIDC_AUDIENCE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*AUTH_ENV, *SECURITY_ENV, "SWITCHBOARD_ENV"):
        monkeypatch.delenv(name, raising=False)


def secure_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "routing")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "a-password")


async def refused(settings: ServiceSettings) -> list[str]:
    with pytest.raises(ProductionRefused) as caught:
        await enforce(settings, None)
    return caught.value.problems


async def test_development_refuses_nothing() -> None:
    await enforce(RoutingSettings(environment="development"), None)
    await enforce(SessionsSettings(customer_demo=True), None)


async def test_the_default_secret_and_plaintext_kafka_are_refused_with_what_to_set() -> None:
    problems = await refused(RoutingSettings(environment="production"))
    assert len(problems) == 2
    secret, kafka = problems
    assert "development secret" in secret and "SWITCHBOARD_AUTH_SECRET" in secret and "OIDC" in secret
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL" in kafka


async def test_the_sessions_alias_counts_and_a_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    secure_kafka(monkeypatch)
    monkeypatch.setenv("SESSIONS_GATEWAY_SECRET", DEV_SECRET)
    assert "development secret" in (await refused(RoutingSettings(environment="production")))[0]
    monkeypatch.setenv("SWITCHBOARD_AUTH_SECRET", "short")
    assert "at least 32" in (await refused(RoutingSettings(environment="production")))[0]
    monkeypatch.setenv("SWITCHBOARD_AUTH_SECRET", GOOD_SECRET)
    await enforce(RoutingSettings(environment="production"), None)


async def test_an_identity_provider_needs_issuer_and_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    secure_kafka(monkeypatch)
    monkeypatch.setenv("SWITCHBOARD_OIDC_JWKS_URL", "https://idp.example/jwks")
    issuer, audience = await refused(RoutingSettings(environment="production"))
    assert "without SWITCHBOARD_OIDC_ISSUER: set it" in issuer
    assert "without SWITCHBOARD_OIDC_AUDIENCE: set it" in audience
    monkeypatch.setenv("SESSIONS_OIDC_ISSUER", "https://idp.example")  # the older name works too
    monkeypatch.setenv("SWITCHBOARD_OIDC_AUDIENCE", "switchboard")
    await enforce(RoutingSettings(environment="production"), None)  # the dev secret is unused next to OIDC


async def test_the_customer_demo_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    secure_kafka(monkeypatch)
    monkeypatch.setenv("SWITCHBOARD_AUTH_SECRET", GOOD_SECRET)
    [problem] = await refused(SessionsSettings(environment="production", customer_demo=True))
    assert "SESSIONS_CUSTOMER_DEMO" in problem


@pytest.mark.e2e
async def test_a_superuser_login_is_refused(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    secure_kafka(monkeypatch)
    monkeypatch.setenv("SWITCHBOARD_AUTH_SECRET", GOOD_SECRET)
    settings: RoutingSettings = deployment.settings(RoutingSettings, "routing", environment="production")
    conn = await asyncpg.connect(deployment.database_url)  # the stack's administrator
    try:
        with pytest.raises(ProductionRefused) as caught:
            await enforce(settings, conn)
    finally:
        await conn.close()
    [problem] = caught.value.problems
    assert "superuser" in problem and "ROUTING_DB_USER" in problem and "ROUTING_DB_PASSWORD" in problem
    own = await asyncpg.connect(
        deployment.database_url, user=settings.db_user, password=settings.db_password
    )  # the service's own role
    try:
        assert await production.database_problems(settings, own) == []
        await enforce(settings, own)
    finally:
        await own.close()


@pytest.mark.e2e
async def test_a_service_started_in_production_with_the_default_secret_exits_saying_what_to_set(
    deployment: Deployment,
) -> None:
    """A real process: `python -m routing.main` exits non-zero and says why, before serving."""
    settings: RoutingSettings = deployment.settings(RoutingSettings, "routing")
    env = {k: v for k, v in os.environ.items() if k not in (*AUTH_ENV, *SECURITY_ENV)}
    env.update(
        SWITCHBOARD_ENV="production",
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        DATABASE_URL=settings.database_url,
        SWITCHBOARD_TOPIC_PREFIX=settings.topic_prefix,
        ROUTING_DB_USER=settings.db_user,
        ROUTING_DB_PASSWORD=settings.db_password,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "routing.main",
        "--port",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("routing kept running in production with the development secret")
    said = (out + err).decode(errors="replace")
    assert proc.returncode != 0, said
    assert "SWITCHBOARD_ENV=production" in said and "SWITCHBOARD_AUTH_SECRET" in said, said
    assert "KAFKA_SECURITY_PROTOCOL" in said, said
