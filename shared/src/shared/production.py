"""Production mode (SWITCHBOARD_ENV=production): a service refuses to start on an unsafe default.

`enforce(settings, conn)` runs at start, on a connection of the service's pool, and raises
`ProductionRefused` listing every problem, each with what to set: the development token secret
(and no identity provider), an identity provider without issuer or audience, a superuser database
login, plaintext Kafka, and sessions' customer demo page."""

from __future__ import annotations

from typing import Any

from shared.auth import DEV_SECRET, AuthSettings
from shared.db import Conn
from shared.kafka_security import KafkaSecurityError, load
from shared.settings import ServiceSettings

# HS256 secrets shorter than this are guessable offline from one token.
MIN_SECRET_LENGTH = 32


class ProductionRefused(RuntimeError):
    """The service must not start in production as configured; the message says what to set."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"refusing to start with SWITCHBOARD_ENV=production:\n{lines}")


def auth_problems(auth: AuthSettings | None = None) -> list[str]:
    """What is unsafe in the token configuration (shared by all four services)."""
    auth = auth or AuthSettings()
    out: list[str] = []
    if auth.oidc_jwks_url:
        if not auth.oidc_issuer:
            out.append(
                "SWITCHBOARD_OIDC_JWKS_URL is set without SWITCHBOARD_OIDC_ISSUER: set it to your identity "
                "provider's issuer (the tokens' `iss`), or any provider's token for anyone would be accepted"
            )
        if not auth.oidc_audience:
            out.append(
                "SWITCHBOARD_OIDC_JWKS_URL is set without SWITCHBOARD_OIDC_AUDIENCE: set it to the audience "
                "your identity provider puts in Switchboard's tokens (`aud`)"
            )
        if not auth.oidc_jwks_url.startswith("https://"):
            out.append(f"SWITCHBOARD_OIDC_JWKS_URL={auth.oidc_jwks_url} is not https: set the provider's https URL")
        if auth.secret and auth.secret != DEV_SECRET and len(auth.secret) < MIN_SECRET_LENGTH:
            out.append(
                f"SWITCHBOARD_AUTH_SECRET is {len(auth.secret)} characters: use at least {MIN_SECRET_LENGTH} "
                "(e.g. `openssl rand -hex 32`), or unset it to accept the identity provider's tokens only"
            )
        return out
    if not auth.secret or auth.secret == DEV_SECRET:
        out.append(
            "tokens would be checked with the development secret, which is in the source code: set "
            "SWITCHBOARD_AUTH_SECRET to a random secret of at least 32 characters (e.g. `openssl rand -hex 32`), "
            "or set SWITCHBOARD_OIDC_JWKS_URL, SWITCHBOARD_OIDC_ISSUER and SWITCHBOARD_OIDC_AUDIENCE "
            "to accept your identity provider's tokens"
        )
    elif len(auth.secret) < MIN_SECRET_LENGTH:
        out.append(
            f"SWITCHBOARD_AUTH_SECRET is {len(auth.secret)} characters: use at least {MIN_SECRET_LENGTH} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return out


def kafka_problems() -> list[str]:
    """Plaintext (or inconsistent) Kafka client security."""
    try:
        security = load()
    except KafkaSecurityError as exc:
        return [str(exc)]
    if security.plaintext:
        return [
            "Kafka is plaintext (KAFKA_SECURITY_PROTOCOL=PLAINTEXT): anyone who reaches the broker can act "
            "as any service; set KAFKA_SECURITY_PROTOCOL=SASL_SSL with KAFKA_SASL_USERNAME and "
            "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE), or SSL with KAFKA_SSL_CERTFILE and "
            "KAFKA_SSL_KEYFILE for mTLS"
        ]
    return []


async def database_problems(settings: ServiceSettings, conn: Conn) -> list[str]:
    """A superuser login: the service could read and rewrite every schema, not only its own."""
    row = await conn.fetchrow("select current_user as login, rolsuper from pg_roles where rolname = current_user")
    if row is None or not row["rolsuper"]:
        return []
    prefix = _env_prefix(settings)
    return [
        f"the database login {row['login']!r} is a PostgreSQL superuser: give the service its own role, "
        f"owner of its schema only, and set {prefix}DB_USER and {prefix}DB_PASSWORD "
        "(or a DATABASE_URL with that role)"
    ]


def settings_problems(settings: ServiceSettings) -> list[str]:
    out: list[str] = []
    if getattr(settings, "customer_demo", False):
        out.append(
            f"{_env_prefix(settings)}CUSTOMER_DEMO is on: the demo page lets anyone start conversations "
            "with tokens it mints itself; unset it in production"
        )
    return out


async def enforce(settings: ServiceSettings, conn: Conn | None) -> None:
    """Raise `ProductionRefused` (every problem, each with what to set) when `settings.production`
    and the configuration is unsafe; nothing outside production. `conn`: a connection of the
    service's own pool (None skips the database check, e.g. in handler tests)."""
    if not settings.production:
        return
    problems = [*auth_problems(), *kafka_problems(), *settings_problems(settings)]
    if conn is not None:
        problems += await database_problems(settings, conn)
    if problems:
        raise ProductionRefused(problems)


def _env_prefix(settings: Any) -> str:
    return str(getattr(settings, "model_config", {}).get("env_prefix") or "").upper()
