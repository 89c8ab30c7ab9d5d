"""One token configuration for every service: the shared secret, the identity provider's JWKS
fetched in the background (never on the event loop), and the environment names (and aliases)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.auth import DEV_SECRET, Auth, Principal, Unauthorised, supervisor_or_error, token_of
from tools.testing import served

ISSUER = "https://idp.example"
AUDIENCE = "switchboard"
ENV = (
    "SWITCHBOARD_AUTH_SECRET",
    "SESSIONS_GATEWAY_SECRET",
    "SWITCHBOARD_OIDC_JWKS_URL",
    "SESSIONS_OIDC_JWKS_URL",
    "SWITCHBOARD_OIDC_ISSUER",
    "SESSIONS_OIDC_ISSUER",
    "SWITCHBOARD_OIDC_AUDIENCE",
    "SESSIONS_OIDC_AUDIENCE",
    "SWITCHBOARD_OIDC_ROLES_CLAIM",
    "SWITCHBOARD_OIDC_SUBJECT_CLAIM",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


def claims(**extra: Any) -> dict[str, Any]:
    return {
        "sub": "agent-7",
        "roles": ["agent"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 600,
        **extra,
    }


def signed(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> str:
    return jwt.encode(claims(**extra), key, algorithm="RS256", headers={"kid": kid})


class Provider:
    """A JWKS endpoint whose keys the test changes (rotation), counting fetches; `hold` keeps
    every answer waiting until released (a slow provider)."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.keys = list(jwks)
        self.fetches = 0
        self.fetched = asyncio.Event()
        self.hold = asyncio.Event()
        self.hold.set()

    async def endpoint(self, _: Request) -> JSONResponse:
        self.fetches += 1
        self.fetched.set()
        await self.hold.wait()
        return JSONResponse({"keys": self.keys})


@asynccontextmanager
async def provider(*jwks: dict[str, Any]) -> AsyncIterator[tuple[Provider, str]]:
    p = Provider(*jwks)
    async with served(Starlette(routes=[Route("/jwks", p.endpoint)])) as host:
        yield p, f"http://{host}/jwks"


async def eventually_verified(auth: Auth, token: str) -> Principal:
    """What a client does on 401 "retry": try again shortly."""
    async with asyncio.timeout(10):
        while True:
            try:
                return auth.verify(token)
            except Unauthorised as exc:
                if "retry" not in str(exc):
                    raise
            await asyncio.sleep(0.02)


# --- the shared secret ------------------------------------------------------------------------


def test_a_minted_token_names_its_agent_and_roles() -> None:
    auth = Auth("s" * 40)
    lead = auth.verify(auth.mint("lead-1", ("agent", "supervisor")))
    assert lead == Principal("lead-1", frozenset({"agent", "supervisor"}))
    assert lead.is_supervisor and lead.can_read("agent-2") and not lead.can_act("agent-2")
    agent = auth.verify(auth.mint("agent-1"))
    assert not agent.is_supervisor and agent.can_act("agent-1") and not agent.can_read("agent-2")


def test_a_customers_token_reads_no_agent() -> None:
    auth = Auth("s" * 40)
    customer = auth.verify(auth.mint("agent-1", ("customer", "supervisor")))
    assert not customer.can_read("agent-1") and not customer.can_act("agent-1")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "a token is required"),
        ("", "a token is required"),
        ("nonsense", "invalid token"),
        (Auth("other-secret-" * 4).mint("agent-1"), "Signature verification failed"),
        (Auth("s" * 40).mint("agent-1", ttl_s=-10), "expired"),
        (jwt.encode({"sub": "agent-1", "exp": 4102444800}, "s" * 64, algorithm="HS512"), "not accepted"),
        (jwt.encode({"sub": "agent-1"}, "s" * 40, algorithm="HS256"), '"exp"'),
        (jwt.encode({"exp": 4102444800}, "s" * 40, algorithm="HS256"), '"sub"'),
    ],
)
def test_a_bad_token_is_refused_with_its_reason(token: str | None, reason: str) -> None:
    with pytest.raises(Unauthorised, match=reason):
        Auth("s" * 40).verify(token)


def test_an_rs256_token_without_an_identity_provider_is_refused() -> None:
    token = signed(rsa_key(), "k1")
    with pytest.raises(Unauthorised, match="SWITCHBOARD_OIDC_JWKS_URL is not set"):
        Auth("s" * 40).verify(token)


def test_the_secret_comes_from_the_environment_with_the_sessions_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Auth.from_env().secret == DEV_SECRET
    monkeypatch.setenv("SESSIONS_GATEWAY_SECRET", "from-sessions-" * 3)
    assert Auth.from_env().secret == "from-sessions-" * 3
    monkeypatch.setenv("SWITCHBOARD_AUTH_SECRET", "shared-" * 6)
    auth = Auth.from_env()
    assert auth.secret == "shared-" * 6
    with pytest.raises(Unauthorised):
        auth.verify(Auth(DEV_SECRET).mint("agent-1", ("supervisor",)))  # the default secret mints nothing now


def test_oidc_settings_from_the_environment_and_the_sessions_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_OIDC_JWKS_URL", "https://idp.example/old/jwks")
    monkeypatch.setenv("SESSIONS_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("SESSIONS_OIDC_AUDIENCE", "old")
    auth = Auth.from_env()
    assert (auth.jwks_url, auth.issuer, auth.audience) == ("https://idp.example/old/jwks", ISSUER, "old")
    monkeypatch.setenv("SWITCHBOARD_OIDC_JWKS_URL", "https://idp.example/jwks")
    monkeypatch.setenv("SWITCHBOARD_OIDC_AUDIENCE", AUDIENCE)
    auth = Auth.from_env()
    assert (auth.jwks_url, auth.audience) == ("https://idp.example/jwks", AUDIENCE)
    assert not auth.accepts_secret  # the development secret never signs tokens next to a provider


def test_token_of_reads_the_bearer_header_then_the_query() -> None:
    assert token_of({"authorization": "Bearer abc"}, {"token": "q"}) == "abc"
    assert token_of({"authorization": "bearer  abc "}, {}) == "abc"
    assert token_of({}, {"token": "q"}) == "q"
    assert token_of({"authorization": "Basic x"}, {}) is None


def test_supervisor_or_error_says_what_is_missing() -> None:
    auth = Auth("s" * 40)
    assert supervisor_or_error(auth, {}, {}, "reading queues")[1:] == (
        "a token is required: Authorization: Bearer TOKEN, or ?token=TOKEN",
        401,
    )
    agent = {"authorization": f"Bearer {auth.mint('agent-1')}"}
    assert supervisor_or_error(auth, agent, {}, "reading queues")[1:] == (
        "reading queues needs the supervisor role",
        403,
    )
    lead = {"authorization": f"Bearer {auth.mint('lead-1', ('supervisor',))}"}
    principal, _, status = supervisor_or_error(auth, lead, {}, "reading queues")
    assert principal is not None and principal.subject == "lead-1" and status == 200


# --- the identity provider --------------------------------------------------------------------


async def test_an_unknown_key_is_fetched_in_the_background_and_the_client_retries() -> None:
    key = rsa_key()
    async with provider(jwk_of(key, "k1")) as (idp, url):
        auth = Auth(DEV_SECRET, url, ISSUER, AUDIENCE)
        idp.hold.clear()  # the provider is slow: verify must answer at once all the same
        with pytest.raises(Unauthorised, match=r"signing key not known yet; retry"):
            auth.verify(signed(key, "k1"))
        await asyncio.wait_for(idp.fetched.wait(), 10)  # the refresh it scheduled reached the provider
        with pytest.raises(Unauthorised, match="retry"):
            auth.verify(signed(key, "k1"))  # still fetching: no second fetch, no waiting
        idp.hold.set()
        principal = await eventually_verified(auth, signed(key, "k1", roles=["agent", "supervisor"]))
        assert principal.subject == "agent-7" and principal.is_supervisor
        assert idp.fetches == 1


async def test_keys_are_refreshed_in_the_background_and_rotation_is_picked_up() -> None:
    old, new = rsa_key(), rsa_key()
    async with provider(jwk_of(old, "k1")) as (idp, url):
        auth = Auth(DEV_SECRET, url, ISSUER, AUDIENCE, refresh_s=3600, min_refresh_s=0.0)
        await auth.refresh()
        assert auth.verify(signed(old, "k1")).subject == "agent-7"  # cached: no fetch per token
        assert idp.fetches == 1
        idp.keys = [jwk_of(old, "k1"), jwk_of(new, "k2")]
        assert (await eventually_verified(auth, signed(new, "k2"))).subject == "agent-7"
        assert idp.fetches == 2


async def test_the_provider_being_down_is_said_and_old_keys_keep_working() -> None:
    key = rsa_key()
    async with provider(jwk_of(key, "k1")) as (_, url):
        auth = Auth(DEV_SECRET, url, ISSUER, AUDIENCE, min_refresh_s=0.0)
        await auth.refresh()
    await auth.refresh()  # the provider is gone now
    assert auth.last_error
    assert auth.verify(signed(key, "k1")).subject == "agent-7"
    with pytest.raises(Unauthorised, match=r"signing key not known yet; retry.*fetching http://"):
        auth.verify(signed(rsa_key(), "k9"))


async def test_issuer_audience_and_signature_are_checked() -> None:
    key = rsa_key()
    async with provider(jwk_of(key, "k1")) as (_, url):
        auth = Auth(DEV_SECRET, url, ISSUER, AUDIENCE)
        await auth.refresh()
        with pytest.raises(Unauthorised, match=r"(?i)audience"):
            auth.verify(signed(key, "k1", aud="someone-else"))
        with pytest.raises(Unauthorised, match=r"(?i)issuer"):
            auth.verify(signed(key, "k1", iss="https://evil.example"))
        forged = jwt.encode(claims(), rsa_key(), algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(Unauthorised, match="Signature verification failed"):
            auth.verify(forged)
        with pytest.raises(Unauthorised, match="HS256 tokens are not accepted"):
            auth.verify(Auth(DEV_SECRET).mint("agent-7", ("supervisor",)))
        # an operator's own secret (the CLI's tokens) still works next to the provider
        both = Auth("operator-secret-" * 3, url, ISSUER, AUDIENCE)
        assert both.verify(both.mint("switchboard-cli", ("supervisor",))).is_supervisor


async def test_the_subject_and_roles_can_come_from_the_providers_own_claims() -> None:
    key = rsa_key()
    async with provider(jwk_of(key, "k1")) as (_, url):
        auth = Auth(
            DEV_SECRET, url, ISSUER, AUDIENCE, subject_claim="preferred_username", roles_claim="realm_access.roles"
        )
        await auth.refresh()
        token = signed(key, "k1", preferred_username="agent-3", realm_access={"roles": ["supervisor"]})
        assert auth.verify(token) == Principal("agent-3", frozenset({"supervisor"}))
        with pytest.raises(Unauthorised, match="preferred_username"):
            auth.verify(signed(key, "k1"))


@contextmanager
def threaded_provider(jwks: dict[str, Any]) -> Iterator[str]:
    body = json.dumps({"keys": [jwks]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks"
    finally:
        server.shutdown()


def test_without_an_event_loop_the_keys_are_fetched_at_once() -> None:
    """A command-line tool has no loop to block: it fetches the keys when it needs them."""
    key = rsa_key()
    with threaded_provider(jwk_of(key, "k1")) as url:
        assert Auth(DEV_SECRET, url, ISSUER, AUDIENCE).verify(signed(key, "k1")).subject == "agent-7"
