"""The articles' and replies' vectors, held in memory per process for a dot product per query.

The store is the truth (vectors are bytea columns); its knowledge-base version is bumped by every
change, so a replica reloads when it is behind. A few thousand articles of 384 floats each is a few MB.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from assist import domain, embedding
from assist.store import AssistStore


@dataclass
class Matrix:
    ids: list[str] = field(default_factory=list)
    meta: list[dict[str, str]] = field(default_factory=list)
    vectors: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, embedding.DIM), dtype=np.float32))

    def nearest(
        self, query: NDArray[np.float32], limit: int, where: dict[str, str] | None = None
    ) -> list[tuple[int, float]]:
        if not self.ids:
            return []
        sims = self.vectors @ query
        order = np.argsort(-sims)
        out: list[tuple[int, float]] = []
        for i in order:
            if where and any(self.meta[i].get(k) != v for k, v in where.items()):
                continue
            out.append((int(i), float(sims[i])))
            if len(out) == limit:
                break
        return out


def article_vectors(articles: list[tuple[str, list[str], str]]) -> NDArray[np.float32]:
    """An article's vector: its title, tags and body as one text (the encoder reads 256 tokens).
    Side by side on the evaluation set this beat the mean of a title vector and a body vector
    (dense recall@3 0.934 against 0.895), though that one ranks titles like "Reset a forgotten
    password" higher for short queries."""
    if not articles:
        return np.zeros((0, embedding.DIM), dtype=np.float32)
    return embedding.encoder().encode([f"{title}. {', '.join(tags)}. {body}" for title, tags, body in articles])


def reply_text(title: str, examples: list[str], text: str) -> str:
    """What a library reply's vector is made of: what it answers, then the reply without its slots."""
    plain = domain.fill_slots(text, {})[0]
    return " ".join([title + ".", *examples, plain])


class Index:
    def __init__(self) -> None:
        self.version = -1
        self.articles = Matrix()
        self.replies = Matrix()
        self.intent_labels: list[str] = []
        self.intent_vectors: NDArray[np.float32] = np.zeros((0, embedding.DIM), dtype=np.float32)
        self._lock = asyncio.Lock()

    async def refresh(self, store: AssistStore) -> None:
        version = await store.kb_version()
        if version == self.version:
            return
        async with self._lock:
            if version == self.version:
                return
            await self._backfill(store)
            articles = await store.list_article_vectors()
            self.articles = _matrix(
                [a.id for a in articles],
                [{"title": a.title, "language": a.language} for a in articles],
                [a.vector for a in articles],
            )
            replies = await store.list_reply_vectors()
            self.replies = _matrix(
                [r.id for r in replies],
                [{"source": r.source, "text": r.text, "language": r.language} for r in replies],
                [r.vector for r in replies],
            )
            if not self.intent_labels:
                self.intent_labels, self.intent_vectors = await asyncio.to_thread(_intent_examples)
            self.version = version

    async def _backfill(self, store: AssistStore) -> None:
        """Articles written before vectors existed (or by hand in SQL) get theirs now."""
        missing = await store.list_articles_without_vector()
        if not missing:
            return
        vectors = await asyncio.to_thread(article_vectors, [(a.title, a.tags, a.body) for a in missing])
        await store.set_article_vectors([(a.id, v) for a, v in zip(missing, vectors, strict=True)])

    def intent(self, message_vectors: NDArray[np.float32]) -> str:
        return domain.intent_of(message_vectors, self.intent_vectors, self.intent_labels)


@functools.cache
def _intent_examples() -> tuple[list[str], NDArray[np.float32]]:
    """The intents' example sentences, encoded (once per process: they are constants)."""
    labels = [label for label, examples in domain.INTENTS.items() for _ in examples]
    texts = [e for examples in domain.INTENTS.values() for e in examples]
    return labels, embedding.encoder().encode(texts)


def _matrix(ids: list[str], meta: list[dict[str, str]], vectors: list[NDArray[np.float32]]) -> Matrix:
    if not ids:
        return Matrix()
    return Matrix(ids=ids, meta=meta, vectors=np.stack(vectors).astype(np.float32))
