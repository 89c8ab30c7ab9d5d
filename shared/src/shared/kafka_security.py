"""How every Kafka client of Switchboard authenticates: one set of unprefixed environment variables
(`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`), the same for services, the gateway's
consumers, the CLI and the tools, as Strimzi's TLS and SCRAM listeners need.

`aiokafka_options()` gives the keyword arguments of `AIOKafkaProducer`/`AIOKafkaConsumer`/
`AIOKafkaAdminClient`; `faststream_security()` gives the object for `KafkaBroker(security=...)`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSecurityError(ValueError):
    """The Kafka security settings are inconsistent; the message says which variable to set."""


def _env(name: str) -> Any:
    return Field(None, validation_alias=AliasChoices(name.lower(), name))


class KafkaSecurity(BaseSettings):
    """Kafka client security, read from unprefixed environment variables."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    security_protocol: Protocol = Field(
        "PLAINTEXT", validation_alias=AliasChoices("security_protocol", "KAFKA_SECURITY_PROTOCOL")
    )
    sasl_mechanism: Mechanism = Field(
        "SCRAM-SHA-512", validation_alias=AliasChoices("sasl_mechanism", "KAFKA_SASL_MECHANISM")
    )
    sasl_username: str | None = _env("KAFKA_SASL_USERNAME")
    sasl_password: SecretStr | None = _env("KAFKA_SASL_PASSWORD")
    # a mounted secret (Kubernetes, systemd credentials) instead of the password in the environment
    sasl_password_file: Path | None = _env("KAFKA_SASL_PASSWORD_FILE")
    ssl_cafile: Path | None = _env("KAFKA_SSL_CAFILE")
    # mTLS: the client's certificate (chain) and key, e.g. a Strimzi KafkaUser with `tls` authentication
    ssl_certfile: Path | None = _env("KAFKA_SSL_CERTFILE")
    ssl_keyfile: Path | None = _env("KAFKA_SSL_KEYFILE")
    ssl_key_password: SecretStr | None = _env("KAFKA_SSL_KEY_PASSWORD")
    ssl_key_password_file: Path | None = _env("KAFKA_SSL_KEY_PASSWORD_FILE")
    ssl_check_hostname: bool = Field(
        True, validation_alias=AliasChoices("ssl_check_hostname", "KAFKA_SSL_CHECK_HOSTNAME")
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        # "sasl_ssl" and "scram-sha-512" are what people type; Kafka's names are upper case.
        if isinstance(data, dict):
            data = dict(data)
            for key, value in list(data.items()):
                if not isinstance(value, str):
                    continue
                if value.strip() == "":
                    del data[key]  # an empty variable means "not set": the default applies
                elif key.lower().endswith(("security_protocol", "sasl_mechanism")):
                    data[key] = value.strip().upper()
        return data

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def explicit(cls, **values: Any) -> KafkaSecurity:
        """These settings only, whatever the environment says (tools that give a child its own)."""
        return cls(**{**{name: f.default for name, f in cls.model_fields.items()}, **values})

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @property
    def plaintext(self) -> bool:
        """Neither encrypted nor authenticated: what production mode refuses."""
        return self.security_protocol == "PLAINTEXT"

    def problems(self) -> list[str]:
        """Every inconsistency, each as a sentence that names the variable to set or unset."""
        out: list[str] = []
        proto = self.security_protocol
        if self.uses_sasl:
            if not self.sasl_username:
                out.append(f"KAFKA_SECURITY_PROTOCOL={proto} needs KAFKA_SASL_USERNAME")
            if self.sasl_password is None and self.sasl_password_file is None:
                out.append(f"KAFKA_SECURITY_PROTOCOL={proto} needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE")
            if self.sasl_password is not None and self.sasl_password_file is not None:
                out.append("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
        elif self.sasl_username or self.sasl_password is not None or self.sasl_password_file is not None:
            out.append(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL={proto} does not "
                "use SASL: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or unset the credentials)"
            )
        tls_files = {
            "KAFKA_SSL_CAFILE": self.ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.ssl_keyfile,
        }
        if not self.uses_tls:
            given = [name for name, value in tls_files.items() if value is not None]
            if given:
                out.append(
                    f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL={proto} does not use TLS: "
                    "set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
                )
            return out
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            out.append("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE (the client certificate for mTLS)")
        if self.ssl_key_password is not None and self.ssl_key_password_file is not None:
            out.append("set KAFKA_SSL_KEY_PASSWORD or KAFKA_SSL_KEY_PASSWORD_FILE, not both")
        files = {
            **tls_files,
            "KAFKA_SASL_PASSWORD_FILE": self.sasl_password_file,
            "KAFKA_SSL_KEY_PASSWORD_FILE": self.ssl_key_password_file,
        }
        for name, path in files.items():
            if path is not None and not path.is_file():
                out.append(f"{name}={path}: no such file")
        return out

    def password(self) -> str | None:
        """The SASL password, read from its file when it is mounted as one."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            return _read_secret(self.sasl_password_file, "KAFKA_SASL_PASSWORD_FILE")
        return None

    def key_password(self) -> str | None:
        if self.ssl_key_password is not None:
            return self.ssl_key_password.get_secret_value()
        if self.ssl_key_password_file is not None:
            return _read_secret(self.ssl_key_password_file, "KAFKA_SSL_KEY_PASSWORD_FILE")
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL and SASL_SSL (the system's CAs unless a CA file is given)."""
        if not self.uses_tls:
            return None
        from aiokafka.helpers import create_ssl_context

        try:
            ctx = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=self.key_password(),
            )
        except (ssl.SSLError, OSError) as exc:
            raise KafkaSecurityError(
                f"cannot load the Kafka TLS files (KAFKA_SSL_CAFILE={self.ssl_cafile}, "
                f"KAFKA_SSL_CERTFILE={self.ssl_certfile}, KAFKA_SSL_KEYFILE={self.ssl_keyfile}): {exc}"
            ) from exc
        if not self.ssl_check_hostname:
            ctx.check_hostname = False  # the certificate chain is still verified
        return ctx

    def describe(self) -> str:
        """One line for logs, without secrets."""
        parts: list[str] = [self.security_protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        if self.uses_tls:
            parts.append(f"CA {self.ssl_cafile or 'system'}")
            if self.ssl_certfile:
                parts.append(f"client certificate {self.ssl_certfile}")
        return ", ".join(parts)

    def env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for child processes)."""
        out: dict[str, str] = {"KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        if self.uses_sasl:
            out["KAFKA_SASL_MECHANISM"] = self.sasl_mechanism
            out["KAFKA_SASL_USERNAME"] = self.sasl_username or ""
            if self.sasl_password_file is not None:
                out["KAFKA_SASL_PASSWORD_FILE"] = str(self.sasl_password_file)
            else:
                out["KAFKA_SASL_PASSWORD"] = self.password() or ""
        for name, path in (
            ("KAFKA_SSL_CAFILE", self.ssl_cafile),
            ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
            ("KAFKA_SSL_KEYFILE", self.ssl_keyfile),
        ):
            if path is not None:
                out[name] = str(path)
        if self.uses_tls and not self.ssl_check_hostname:
            out["KAFKA_SSL_CHECK_HOSTNAME"] = "false"
        return out


def _read_secret(path: Path, variable: str) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise KafkaSecurityError(f"{variable}={path}: cannot read it: {exc}") from exc


def load(**overrides: Any) -> KafkaSecurity:
    """The Kafka security settings from the environment (overrides win), or a readable error."""
    try:
        return KafkaSecurity(**overrides)
    except ValidationError as exc:
        reasons = "; ".join(_reason(e) for e in exc.errors())
        raise KafkaSecurityError(f"Kafka security settings: {reasons}") from None


def _reason(error: Any) -> str:
    if error.get("ctx", {}).get("error") is not None:  # our own consistency check
        return str(error["ctx"]["error"])
    field = str(error["loc"][0]).upper() if error.get("loc") else ""
    name = field if field.startswith("KAFKA_") else f"KAFKA_{field}"
    return f"{name}: {error['msg']}" if field else str(error["msg"])


def aiokafka_options(sec: KafkaSecurity | None = None) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    sec = sec or load()
    opts: dict[str, Any] = {"security_protocol": sec.security_protocol}
    if sec.uses_tls:
        opts["ssl_context"] = sec.ssl_context()
    if sec.uses_sasl:
        opts["sasl_mechanism"] = sec.sasl_mechanism
        opts["sasl_plain_username"] = sec.sasl_username
        opts["sasl_plain_password"] = sec.password()
    return opts


def faststream_security(sec: KafkaSecurity | None = None) -> Any:
    """The `security=` object of FastStream's `KafkaBroker` (None for PLAINTEXT)."""
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    sec = sec or load()
    if sec.plaintext:
        return None
    ctx = sec.ssl_context()
    use_ssl = sec.uses_tls
    if not sec.uses_sasl:
        return BaseSecurity(ssl_context=ctx, use_ssl=True)
    user, password = sec.sasl_username or "", sec.password() or ""
    kinds = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
    return kinds[sec.sasl_mechanism](username=user, password=password, ssl_context=ctx, use_ssl=use_ssl)
