"""Who is calling: one token configuration for all four services (PyJWT).

- HS256 with a shared secret for the embedded default (`SWITCHBOARD_AUTH_SECRET`, alias
  `SESSIONS_GATEWAY_SECRET`); the development secret in this file is refused in production
  (`shared.production`).
- An OIDC provider's tokens in production (`SWITCHBOARD_OIDC_JWKS_URL`, `_ISSUER`, `_AUDIENCE`;
  the older `SESSIONS_OIDC_*` names still work). The provider's keys are fetched in the
  background (`Auth.refresh`, `Auth.refresh_loop`); `verify` only reads the cached keys, so it
  never blocks the event loop: a token signed with a key not fetched yet schedules a refresh and
  is answered 401 "signing key not known yet; retry".

`sub` (or the configured subject claim) is the agent id; the roles claim may hold "supervisor"."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import structlog
from jwt.types import Options
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = structlog.get_logger("switchboard.auth")

DEV_SECRET = "switchboard-embedded-dev-secret-change-me"
SUPERVISOR = "supervisor"
CUSTOMER = "customer"
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class Unauthorised(Exception):
    """No token, or one that does not prove who is calling (HTTP 401)."""


class Forbidden(Exception):
    """A known caller asking for something its roles do not allow (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]

    @property
    def is_supervisor(self) -> bool:
        return SUPERVISOR in self.roles

    @property
    def is_customer(self) -> bool:
        return CUSTOMER in self.roles

    def can_read(self, agent_id: str) -> bool:
        """An agent reads its own data, a supervisor anyone's; a customer's token reads no agent."""
        return not self.is_customer and (self.subject == agent_id or self.is_supervisor)

    def can_act(self, agent_id: str) -> bool:
        return not self.is_customer and self.subject == agent_id


class AuthSettings(BaseSettings):
    """The one auth configuration every service reads (no service prefix: all four share it)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    secret: str = Field(DEV_SECRET, validation_alias=AliasChoices("SWITCHBOARD_AUTH_SECRET", "SESSIONS_GATEWAY_SECRET"))
    oidc_jwks_url: str = Field("", validation_alias=AliasChoices("SWITCHBOARD_OIDC_JWKS_URL", "SESSIONS_OIDC_JWKS_URL"))
    oidc_issuer: str = Field("", validation_alias=AliasChoices("SWITCHBOARD_OIDC_ISSUER", "SESSIONS_OIDC_ISSUER"))
    oidc_audience: str = Field("", validation_alias=AliasChoices("SWITCHBOARD_OIDC_AUDIENCE", "SESSIONS_OIDC_AUDIENCE"))
    # where the provider puts the agent id and the roles (dotted paths, e.g. realm_access.roles)
    oidc_subject_claim: str = Field("sub", validation_alias=AliasChoices("SWITCHBOARD_OIDC_SUBJECT_CLAIM"))
    oidc_roles_claim: str = Field("roles", validation_alias=AliasChoices("SWITCHBOARD_OIDC_ROLES_CLAIM"))
    # keys are re-fetched this often, and at most this often on an unknown key id
    jwks_refresh_s: float = Field(300.0, validation_alias=AliasChoices("SWITCHBOARD_OIDC_JWKS_REFRESH_S"))
    jwks_min_refresh_s: float = Field(10.0, validation_alias=AliasChoices("SWITCHBOARD_OIDC_JWKS_MIN_REFRESH_S"))
    jwks_timeout_s: float = Field(5.0, validation_alias=AliasChoices("SWITCHBOARD_OIDC_JWKS_TIMEOUT_S"))


class Auth:
    """Verifies (and, with the shared secret, mints) tokens.

    With a JWKS URL, RS*/PS*/ES*/EdDSA tokens are checked against the provider's keys; HS256 tokens
    are then accepted only when a secret other than the development one is set (the CLI's and
    tests' tokens), never with the development secret."""

    @classmethod
    def from_env(cls) -> Auth:
        s = AuthSettings()
        return cls(
            s.secret,
            s.oidc_jwks_url,
            s.oidc_issuer,
            s.oidc_audience,
            subject_claim=s.oidc_subject_claim,
            roles_claim=s.oidc_roles_claim,
            refresh_s=s.jwks_refresh_s,
            min_refresh_s=s.jwks_min_refresh_s,
            timeout_s=s.jwks_timeout_s,
        )

    def __init__(
        self,
        secret: str,
        jwks_url: str = "",
        issuer: str = "",
        audience: str = "",
        *,
        subject_claim: str = "sub",
        roles_claim: str = "roles",
        refresh_s: float = 300.0,
        min_refresh_s: float = 10.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.secret = secret
        self.jwks_url = jwks_url
        self.issuer = issuer or None
        self.audience = audience or None
        self.subject_claim = subject_claim
        self.roles_claim = roles_claim
        self.refresh_s = refresh_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self._keys: dict[str, Any] = {}  # kid -> PyJWK
        self._fetched_at = 0.0
        self._attempted_at = float("-inf")
        self._refreshing: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self.last_error = ""

    @property
    def oidc(self) -> bool:
        return bool(self.jwks_url)

    @property
    def accepts_secret(self) -> bool:
        """HS256 tokens: always without OIDC; with OIDC only under a real (non-development) secret."""
        return bool(self.secret) and (not self.oidc or self.secret != DEV_SECRET)

    def mint(self, agent_id: str, roles: tuple[str, ...] = ("agent",), ttl_s: int = 12 * 3600) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": agent_id, "roles": list(roles), "iat": now, "exp": now + ttl_s}
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str | None) -> Principal:
        """The token's principal, or Unauthorised with a reason a person can act on. Never blocks
        a running event loop: the provider's keys come from the cache."""
        if not token:
            raise Unauthorised("a token is required: Authorization: Bearer TOKEN, or ?token=TOKEN")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorised(f"invalid token: {exc}") from exc
        alg = header.get("alg")
        options: Options = {"require": ["exp", "sub"] if self.subject_claim == "sub" else ["exp"]}
        try:
            if alg == "HS256":
                if not self.accepts_secret:
                    raise Unauthorised(
                        "invalid token: HS256 tokens are not accepted here; use a token from the identity provider"
                    )
                claims = jwt.decode(
                    token,
                    self.secret,
                    algorithms=["HS256"],
                    issuer=self.issuer,
                    audience=self.audience,
                    options=options,
                )
            elif alg in ASYMMETRIC:
                if not self.oidc:
                    raise Unauthorised(
                        f"invalid token: {alg} tokens need an identity provider (SWITCHBOARD_OIDC_JWKS_URL is not set)"
                    )
                key = self._signing_key(header.get("kid"))
                claims = jwt.decode(
                    token, key, algorithms=[str(alg)], issuer=self.issuer, audience=self.audience, options=options
                )
            else:
                raise Unauthorised(f"invalid token: signing algorithm {alg!r} is not accepted")
        except jwt.PyJWTError as exc:
            raise Unauthorised(f"invalid token: {exc}") from exc
        subject = _claim(claims, self.subject_claim)
        if not isinstance(subject, str | int) or not str(subject):
            raise Unauthorised(f"invalid token: no {self.subject_claim!r} claim naming the agent")
        roles = _claim(claims, self.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        elif not isinstance(roles, list | tuple):
            roles = []
        return Principal(str(subject), frozenset(str(r) for r in roles if isinstance(r, str | int)))

    def _signing_key(self, kid: Any) -> Any:
        with self._lock:
            keys = self._keys
        if kid is not None and str(kid) in keys:
            return keys[str(kid)].key
        if kid is None and len(keys) == 1:
            return next(iter(keys.values())).key
        if not _loop_running():
            # no event loop on this thread (a CLI, a synchronous test): fetching here blocks no one
            self._fetch_sync()
            with self._lock:
                keys = self._keys
            if kid is not None and str(kid) in keys:
                return keys[str(kid)].key
            if kid is None and len(keys) == 1:
                return next(iter(keys.values())).key
            raise Unauthorised(f"invalid token: the identity provider has no signing key {kid!r}{self._why()}")
        self.schedule_refresh()
        raise Unauthorised(f"signing key not known yet; retry (key id {kid!r}){self._why()}")

    def _why(self) -> str:
        return f"; fetching {self.jwks_url} failed: {self.last_error}" if self.last_error else ""

    # --- the provider's keys ----------------------------------------------------------------

    def schedule_refresh(self) -> None:
        """Fetch the keys in the background, unless a fetch runs or ran less than min_refresh_s ago."""
        if not self.oidc or (self._refreshing is not None and not self._refreshing.done()):
            return
        if time.monotonic() - self._attempted_at < self.min_refresh_s:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next verify fetches
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh(), name="jwks-refresh")

    async def refresh(self) -> None:
        """Fetch the provider's JWKS now (without blocking the loop); keeps the old keys on failure."""
        if not self.oidc:
            return
        self._attempted_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                self._install(response.json())
        except Exception as exc:
            self.last_error = repr(exc)
            log.warning("jwks_fetch_failed", url=self.jwks_url, error=repr(exc))

    async def refresh_loop(self) -> None:
        """A service's background loop: keys fetched at start, then every refresh_s (key rotation)."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s if not self.last_error else min(self.refresh_s, self.min_refresh_s))

    def _fetch_sync(self) -> None:
        if time.monotonic() - self._attempted_at < self.min_refresh_s and self._keys:
            return
        self._attempted_at = time.monotonic()
        try:
            response = httpx.get(self.jwks_url, timeout=self.timeout_s)
            response.raise_for_status()
            self._install(response.json())
        except Exception as exc:
            self.last_error = repr(exc)

    def _install(self, document: Any) -> None:
        keys: dict[str, Any] = {}
        for i, jwk in enumerate(jwt.PyJWKSet.from_dict(document).keys):
            if jwk.public_key_use in (None, "sig"):
                keys[str(jwk.key_id) if jwk.key_id is not None else f"#{i}"] = jwk
        if not keys:
            raise ValueError("the JWKS holds no signing keys")
        with self._lock:
            self._keys = keys
        self._fetched_at = time.monotonic()
        self.last_error = ""
        log.info("jwks_fetched", url=self.jwks_url, keys=sorted(keys))

    @staticmethod
    def verify_unsigned_subject(token: str) -> str:
        """The token's subject without checking the signature: for a client naming itself only."""
        return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def token_of(headers: Any, query: Any) -> str | None:
    """The bearer token of a request or WebSocket: the Authorization header, else ?token=."""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        return str(auth[7:].strip()) or None
    token = query.get("token")
    return str(token) if token else None


def supervisor_or_error(auth: Auth, headers: Any, query: Any, action: str) -> tuple[Principal | None, str, int]:
    """The request's supervisor, or (None, a message a person can act on, the HTTP status)."""
    try:
        principal = auth.verify(token_of(headers, query))
    except Unauthorised as exc:
        return None, str(exc), 401
    if not principal.is_supervisor:
        return None, f"{action} needs the supervisor role", 403
    return principal, "", 200
