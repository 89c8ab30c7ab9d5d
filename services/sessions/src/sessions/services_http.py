"""The gateway's reads of routing, presence and assist over HTTP, with the person's own token.

One `httpx.AsyncClient` per app, short timeouts; a service that does not answer becomes a
`ServiceError` whose message names it ("routing did not answer: ..."), never a hang."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from sessions.settings import SessionsSettings

# A failed read is remembered this long, so a service that is down costs one timeout, not one per frame.
FAILURE_MEMORY_S = 5.0
# A service's refusals the gateway passes on as they are; any other failure is a 502.
REFUSALS = (400, 401, 403, 404, 409, 422)


class ServiceError(Exception):
    """Another service did not answer, or refused; `status` is what the gateway answers with."""

    def __init__(self, service: str, detail: str, status: int = 502, reason: str | None = None) -> None:
        self.service = service
        self.status = status
        self.reason = reason or detail  # the service's own words, when it answered
        verb = "did not answer" if status == 502 else "refused"
        super().__init__(f"{service} {verb}: {detail}")


class Services:
    def __init__(self, settings: SessionsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls = {
            "routing": settings.routing_url.rstrip("/"),
            "presence": settings.presence_url.rstrip("/"),
            "assist": settings.assist_url.rstrip("/"),
        }
        self.cache_s = settings.read_cache_s
        self.http = httpx.AsyncClient(timeout=settings.http_timeout_s, transport=transport)
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}

    async def close(self) -> None:
        await self.http.aclose()

    async def get(self, service: str, path: str, token: str | None, params: dict[str, Any] | None = None) -> Any:
        """The JSON body of GET `path` on `service`, or a ServiceError saying why not."""
        return await self.call("GET", service, path, token, params=params)

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        token: str | None,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """The JSON answer of `method path` on `service` (with `body` as JSON), or a ServiceError
        saying why not: `detail` holds the service's own reason."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            r = await self.http.request(method, self.urls[service] + path, headers=headers, params=params, json=body)
        except httpx.TimeoutException:
            raise ServiceError(service, f"no answer within {self.http.timeout.read}s ({path})") from None
        except httpx.HTTPError as exc:
            raise ServiceError(service, f"{type(exc).__name__} on {path}: {exc or 'connection failed'}") from None
        if r.status_code != 200:
            try:
                detail = str(r.json().get("error") or r.text)
            except (ValueError, AttributeError):
                detail = r.text[:300] or r.reason_phrase
            status = r.status_code if r.status_code in REFUSALS else 502
            raise ServiceError(service, f"HTTP {r.status_code} on {path}: {detail}", status, reason=detail)
        try:
            return r.json()
        except ValueError:
            raise ServiceError(service, f"{path} answered with something other than JSON") from None

    async def cached(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[Any]]) -> Any:
        """`fetch()`'s answer, kept `read_cache_s`; a failure is kept briefly and raised again."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], ServiceError):
                raise hit[1]
            return hit[1]
        try:
            value = await fetch()
        except ServiceError as exc:
            self._cache[key] = (now + FAILURE_MEMORY_S, exc)
            raise
        self._cache[key] = (now + self.cache_s, value)
        return value

    async def agent_queues(self, agent_id: str, token: str | None) -> list[str] | None:
        """The queues routing has the agent in (kept a while); None when routing cannot say."""

        async def fetch() -> list[str]:
            body = await self.get("routing", f"/agents/{agent_id}", token)
            return [str(q) for q in body.get("queues") or []]

        try:
            queues: list[str] = await self.cached(("queues", agent_id), fetch)
        except ServiceError:
            return None
        return queues

    async def statuses(self, token: str | None) -> list[dict[str, Any]]:
        """The statuses an agent may choose (kept a while); [] when presence cannot say."""

        async def fetch() -> list[dict[str, Any]]:
            return list((await self.get("presence", "/statuses", token)).get("statuses") or [])

        try:
            statuses: list[dict[str, Any]] = await self.cached(("statuses",), fetch)
        except ServiceError:
            return []
        return statuses
