"""Kafka client security from the environment: what each client gets, and the errors a person
sees for settings that cannot work."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512

from shared.kafka_security import KafkaSecurity, KafkaSecurityError, aiokafka_options, faststream_security, load

VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_KEY_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD_FILE",
    "KAFKA_SSL_CHECK_HOSTNAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate signed by it, as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "routing")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "client.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-secret"),
        )
    )
    (d / "garbage.pem").write_text("not a certificate\n")
    return {"ca": d / "ca.pem", "cert": d / "client.pem", "key": d / "client.key", "garbage": d / "garbage.pem"}


def test_default_is_plaintext_everywhere() -> None:
    sec = load()
    assert sec.plaintext
    assert aiokafka_options(sec) == {"security_protocol": "PLAINTEXT"}
    assert faststream_security(sec) is None


def test_sasl_ssl_from_the_environment(monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")  # as people type it
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "routing")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(pki["ca"]))
    opts = aiokafka_options()
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("routing", "s3cret")
    ctx = opts["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert "s3cret" not in load().describe()

    security = faststream_security()
    assert isinstance(security, SASLScram512)
    assert parse_security(security)["security_protocol"] == "SASL_SSL"
    assert parse_security(security)["sasl_mechanism"] == "SCRAM-SHA-512"
    assert parse_security(security)["sasl_plain_password"] == "s3cret"


def test_password_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-the-file\n")
    sec = load(security_protocol="SASL_PLAINTEXT", sasl_username="assist", sasl_password_file=secret)
    opts = aiokafka_options(sec)
    assert opts["sasl_plain_password"] == "from-the-file"
    assert "ssl_context" not in opts
    fs = faststream_security(sec)
    assert parse_security(fs)["security_protocol"] == "SASL_PLAINTEXT"


def test_plain_mechanism_and_tls_without_sasl(pki: dict[str, Path]) -> None:
    plain = faststream_security(
        load(security_protocol="SASL_SSL", sasl_mechanism="plain", sasl_username="u", sasl_password="p")
    )
    assert isinstance(plain, SASLPlaintext) and plain.use_ssl
    tls = faststream_security(load(security_protocol="SSL", ssl_cafile=pki["ca"]))
    assert type(tls) is BaseSecurity and tls.use_ssl and tls.ssl_context is not None
    assert parse_security(tls)["security_protocol"] == "SSL"


def test_mutual_tls_loads_the_client_certificate(pki: dict[str, Path]) -> None:
    sec = load(
        security_protocol="SSL",
        ssl_cafile=pki["ca"],
        ssl_certfile=pki["cert"],
        ssl_keyfile=pki["key"],
        ssl_key_password="key-secret",
        ssl_check_hostname="false",
    )
    ctx = aiokafka_options(sec)["ssl_context"]
    assert ctx.check_hostname is False
    assert ctx.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified
    with pytest.raises(KafkaSecurityError, match="KAFKA_SSL_CERTFILE"):
        load(security_protocol="SSL", ssl_certfile=pki["cert"], ssl_keyfile=pki["key"]).ssl_context()


def test_unreadable_tls_file_is_named(pki: dict[str, Path]) -> None:
    with pytest.raises(KafkaSecurityError, match="KAFKA_SSL_CAFILE"):
        aiokafka_options(load(security_protocol="SSL", ssl_cafile=pki["garbage"]))


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_password": "p"}, "needs KAFKA_SASL_USERNAME"),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u"},
            "needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_username": "u",
                "sasl_password": "p",
                "sasl_password_file": "/x",
            },
            "not both",
        ),
        ({"sasl_username": "u", "sasl_password": "p"}, "set KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        ({"ssl_cafile": "/etc/hostname"}, "does not use TLS"),
        (
            {"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"},
            "KAFKA_SSL_CAFILE=/no/such/ca.pem: no such file",
        ),
        ({"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"}, "KAFKA_SSL_KEYFILE is set without"),
        ({"security_protocol": "KERBEROS"}, "KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT'"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"},
            "KAFKA_SASL_MECHANISM: Input should be .SCRAM-SHA-512.",
        ),
    ],
)
def test_inconsistent_settings_say_what_to_set(settings: dict[str, str], says: str) -> None:
    with pytest.raises(KafkaSecurityError, match=says):
        load(**settings)


def test_env_reproduces_the_settings(monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]) -> None:
    sec = load(
        security_protocol="SASL_SSL",
        sasl_username="sessions",
        sasl_password="pw",
        ssl_cafile=pki["ca"],
        ssl_check_hostname=False,
    )
    for name, value in sec.env().items():
        monkeypatch.setenv(name, value)
    again = KafkaSecurity()
    assert again.model_dump() == sec.model_dump()
    assert again.password() == "pw"


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "")
    monkeypatch.setenv("KAFKA_SSL_CHECK_HOSTNAME", "")
    sec = load()
    assert sec.plaintext and sec.ssl_cafile is None and sec.ssl_check_hostname


def test_explicit_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", "/run/secrets/kafka")
    sec = KafkaSecurity.explicit(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    assert sec.sasl_password_file is None and sec.password() == "p"
    assert KafkaSecurity.explicit().plaintext
