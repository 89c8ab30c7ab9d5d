"""Agent and supervisor tokens for the gateway and the CLI (PyJWT).

HS256 with a shared secret for the embedded default; an OIDC provider's JWKS in production.
`sub` is the agent id; `roles` may hold "supervisor"."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import jwt

DEV_SECRET = "switchboard-embedded-dev-secret-change-me"


class Unauthorised(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]

    def can_read(self, agent_id: str) -> bool:
        return self.subject == agent_id or "supervisor" in self.roles

    def can_act(self, agent_id: str) -> bool:
        return self.subject == agent_id


class Auth:
    @classmethod
    def from_env(cls) -> Auth:
        return cls(os.environ.get("SESSIONS_GATEWAY_SECRET", DEV_SECRET))

    def __init__(self, secret: str, jwks_url: str = "", issuer: str = "", audience: str = "") -> None:
        self.secret = secret
        self.issuer = issuer or None
        self.audience = audience or None
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None

    def mint(self, agent_id: str, roles: tuple[str, ...] = ("agent",), ttl_s: int = 12 * 3600) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": agent_id, "roles": list(roles), "iat": now, "exp": now + ttl_s}
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorised("a token is required: Authorization: Bearer TOKEN, or ?token=TOKEN")
        try:
            if self.jwks is not None:
                key = self.jwks.get_signing_key_from_jwt(token).key
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256", "ES256"],
                    issuer=self.issuer,
                    audience=self.audience,
                    options={"require": ["exp", "sub"]},
                )
            else:
                claims = jwt.decode(
                    token,
                    self.secret,
                    algorithms=["HS256"],
                    issuer=self.issuer,
                    audience=self.audience,
                    options={"require": ["exp", "sub"]},
                )
        except jwt.PyJWTError as exc:
            raise Unauthorised(f"invalid token: {exc}") from exc
        roles = claims.get("roles") or []
        return Principal(str(claims["sub"]), frozenset(roles if isinstance(roles, list) else [roles]))

    @staticmethod
    def verify_unsigned_subject(token: str) -> str:
        """The token's subject without checking the signature: for a client naming itself only."""
        return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def token_of(headers: Any, query: Any) -> str | None:
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        return str(auth[7:].strip())
    token = query.get("token")
    return str(token) if token else None


def supervisor_or_error(auth: Auth, headers: Any, query: Any, action: str) -> tuple[Principal | None, str, int]:
    """The request's supervisor, or (None, a message a person can act on, the HTTP status)."""
    try:
        principal = auth.verify(token_of(headers, query))
    except Unauthorised as exc:
        return None, str(exc), 401
    if "supervisor" not in principal.roles:
        return None, f"{action} needs the supervisor role", 403
    return principal, "", 200
