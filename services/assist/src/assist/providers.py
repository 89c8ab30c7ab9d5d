"""Providers: the embedded one (offline, CPU) by default, an OpenAI-compatible endpoint when configured.

Every output says which provider and model made it. A remote provider that fails, answers badly or
takes longer than its timeout is skipped for a cool-down, and the embedded path answers instead, so a
slow endpoint costs one timeout, not one per message.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import httpx
import numpy as np
import structlog
from numpy.typing import NDArray

from assist import embedding

log = structlog.get_logger("switchboard.assist.providers")
T = TypeVar("T")

EMBEDDED = "embedded"


class Provider(Protocol):
    name: str
    model: str

    async def chat(self, system: str, user: str) -> str: ...

    async def embed(self, texts: list[str]) -> NDArray[np.float32]: ...


class EmbeddedProvider:
    """Sentence vectors from all-MiniLM-L6-v2 on CPU. It writes no free text: the embedded summaries,
    replies and case drafts are extractive (see domain.py), so `chat` is not offered."""

    name = EMBEDDED
    model = embedding.MODEL

    async def chat(self, system: str, user: str) -> str:
        raise NotImplementedError("the embedded provider is extractive; it has no chat model")

    async def embed(self, texts: list[str]) -> NDArray[np.float32]:
        # numpy releases the GIL in its matrix products: the event loop keeps serving meanwhile.
        return await asyncio.to_thread(embedding.encoder().encode, texts)


class OpenAICompatible:
    """Chat completions and embeddings over HTTP (OpenAI, vLLM, llama.cpp server, Ollama, LiteLLM...)."""

    name = "openai-compatible"

    def __init__(
        self, base_url: str, model: str, api_key: str = "", embedding_model: str = "", timeout_s: float = 3.0
    ) -> None:
        self.model = model
        self.embedding_model = embedding_model or model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_s)

    async def chat(self, system: str, user: str) -> str:
        r = await self.http.post(
            "chat/completions",
            json={
                "model": self.model,
                "temperature": 0.2,
                "max_tokens": 500,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            },
        )
        r.raise_for_status()
        content = r.json()["choices"][0]["message"]["content"]
        if not isinstance(content, str) or not content.strip():
            raise ValueError("the completion was empty")
        return content

    async def embed(self, texts: list[str]) -> NDArray[np.float32]:
        r = await self.http.post("embeddings", json={"model": self.embedding_model, "input": texts})
        r.raise_for_status()
        rows = sorted(r.json()["data"], key=lambda d: d["index"])
        v = np.array([d["embedding"] for d in rows], dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    async def close(self) -> None:
        await self.http.aclose()


@dataclass
class Generated(Generic[T]):
    value: T
    provider: str
    model: str
    fallback: str | None = None  # why the embedded path answered instead of the configured provider


class Assistant:
    """Runs a generation task on the configured provider, falling back to the embedded rule."""

    def __init__(self, remote: Provider | None = None, timeout_s: float = 3.0, cooldown_s: float = 30.0) -> None:
        self.embedded = EmbeddedProvider()
        self.remote = remote
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._down_reason = ""

    @property
    def remote_available(self) -> bool:
        return self.remote is not None and time.monotonic() >= self._down_until

    async def generate(
        self,
        task: str,
        system: str,
        user: str,
        parse: Callable[[str], T],
        embedded: Callable[[], T | Awaitable[T]],
        embedded_model: str,
    ) -> Generated[T]:
        """The remote provider's answer, or `embedded`'s (a plain or an async function)."""
        reason: str | None = None
        if self.remote is not None:
            if not self.remote_available:
                reason = f"{self.remote.name} cooling down after: {self._down_reason}"
            else:
                started = time.monotonic()
                try:
                    text = await asyncio.wait_for(self.remote.chat(system, user), self.timeout_s)
                    return Generated(parse(text), self.remote.name, self.remote.model)
                except Exception as exc:  # any failure of the remote side means: answer locally
                    reason = _describe(exc, self.timeout_s)
                    self._down_until = time.monotonic() + self.cooldown_s
                    self._down_reason = reason
                    log.warning(
                        "provider_fallback",
                        task=task,
                        provider=self.remote.name,
                        model=self.remote.model,
                        reason=reason,
                        waited_ms=round((time.monotonic() - started) * 1000),
                        cooldown_s=self.cooldown_s,
                    )
        value = embedded()
        if inspect.isawaitable(value):
            value = await value
        return Generated(cast(T, value), EMBEDDED, embedded_model, reason)


def _describe(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPError):
        return f"unreachable ({type(exc).__name__})"
    return f"unusable answer ({type(exc).__name__}: {exc})"[:200]


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a completion (models like to wrap it in prose or ``` fences)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the answer")
    doc = json.loads(text[start : end + 1])
    if not isinstance(doc, dict):
        raise ValueError("the answer is not a JSON object")
    return doc
