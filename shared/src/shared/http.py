"""HTTP edges shared by the services' Starlette apps: bounded JSON bodies and the caller's principal,
failing with an `HttpError` that `install(app)` turns into `{"error": ...}` with its status."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.auth import Auth, Principal, Unauthorised, token_of

MAX_BODY = 64 * 1024


class HttpError(Exception):
    """An answer to the client: its HTTP status and a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status)


async def read_body(request: Request, *, max_bytes: int = MAX_BODY) -> bytes:
    """The request body, refused with 413 beyond `max_bytes` (before reading it when the client
    declares its length, else as soon as the stream passes the limit)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, f"Content-Length {declared[:40]!r} is not a number of bytes")
        if int(declared) > max_bytes:
            raise HttpError(413, f"a body of {int(declared)} bytes is refused: at most {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(413, f"a body over {max_bytes} bytes is refused: send at most {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, max_bytes: int = MAX_BODY) -> Any:
    """The request's JSON body: 413 beyond `max_bytes`, 400 when it is empty or not JSON."""
    body = await read_body(request, max_bytes=max_bytes)
    if not body.strip():
        raise HttpError(400, "send a JSON body (Content-Type: application/json)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"the body is not valid JSON: {exc}") from exc


def service_auth(runtime: Any) -> Auth:
    """The one auth configuration (`Auth.from_env()`), its identity provider's keys kept fresh by
    a background loop of `runtime` (a `shared.runtime.Runtime`) when OIDC is configured."""
    auth = Auth.from_env()
    if auth.oidc:
        runtime.background(auth.refresh_loop)
    return auth


def principal_of(request: Request, auth: Auth) -> Principal:
    """The request's verified caller; HttpError 401 without a valid token, 403 for a customer's
    token (customers' tokens open the demo chat only, never the services' data)."""
    try:
        principal = auth.verify(token_of(request.headers, request.query_params))
    except Unauthorised as exc:
        raise HttpError(401, str(exc)) from exc
    if principal.is_customer:
        raise HttpError(403, "a customer's token opens its own chat only")
    return principal


def supervisor_of(request: Request, auth: Auth, action: str) -> Principal:
    """The request's caller, who must hold the supervisor role for `action` (403 otherwise)."""
    principal = principal_of(request, auth)
    if not principal.is_supervisor:
        raise HttpError(403, f"{action} needs the supervisor role ({principal.subject} does not have it)")
    return principal


def reader_of(request: Request, auth: Auth, agent_id: str, what: str) -> Principal:
    """The caller, who must be `agent_id` itself or a supervisor to read `what` (403 otherwise)."""
    principal = principal_of(request, auth)
    if not principal.can_read(agent_id):
        raise HttpError(
            403,
            f"{principal.subject} may not read {agent_id}'s {what}: "
            f"that needs {agent_id}'s own token or the supervisor role",
        )
    return principal


async def http_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return exc.response()


def install(app: Starlette) -> Starlette:
    """Answer every `HttpError` raised by the app's endpoints as `{"error": message}`."""
    app.add_exception_handler(HttpError, http_error_handler)
    return app
