"""assist's use cases: follow conversations, and emit a summary per conversation per batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assist import domain
from shared import contracts as c
from shared.db import Conn, Queries
from shared.messaging import UnitOfWork

Q = Queries("assist")
SURFACED = 3


class Article(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    product: str | None = None
    language: str = "en"
    status: Literal["draft", "published", "archived"] = "published"


async def upsert_article(conn: Conn, article: Article) -> bool:
    """Create or update an article; True when it was new."""
    return bool(
        await conn.fetchval(
            Q.upsert_article,
            article.id,
            article.title,
            article.body,
            article.tags,
            article.product,
            article.language,
            article.status,
        )
    )


async def search(conn: Conn, text: str, limit: int = 5, language: str | None = None) -> list[dict[str, Any]]:
    query = domain.search_query([text])
    if query is None:
        return []
    rows = await conn.fetch(Q.search_articles, query, limit, language)
    return [
        {"id": r["id"], "title": r["title"], "score": round(float(r["score"]), 4), "tags": list(r["tags"])}
        for r in rows
    ]


def read_articles(folder: Path) -> list[Article]:
    """Every .md / .json article of a folder, validated (errors name the file)."""
    return [
        Article.model_validate(domain.parse_article(path.name, path.read_text()))
        for path in sorted(folder.glob("*"))
        if path.suffix in (".md", ".json")
    ]


async def load_knowledge_base(conn: Conn, folder: Path) -> int:
    """Import the demo knowledge base (idempotent upserts)."""
    articles = await asyncio.to_thread(read_articles, folder)
    for article in articles:
        await upsert_article(conn, article)
    return len(articles)


TOUCHED = "touched:"


async def on_conversation_arrived(uow: UnitOfWork, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
    await uow.conn.execute(
        "INSERT INTO conversations (conversation_id, channel, subject, customer_name) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (conversation_id) DO NOTHING",
        data.conversation_id,
        data.channel,
        data.subject,
        data.customer.name if data.customer else None,
    )


async def on_message_posted(uow: UnitOfWork, ev: c.CloudEvent, data: c.MessagePosted) -> None:
    if data.visibility != "public" or not data.text.strip():
        return
    await uow.conn.execute(
        "INSERT INTO messages (conversation_id, message_id, sender, visibility, text, posted_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        data.conversation_id,
        data.message_id,
        data.sender,
        data.visibility,
        data.text,
        ev.time,
    )
    uow.flags.add(TOUCHED + data.conversation_id)


async def summarise_touched(uow: UnitOfWork) -> None:
    """Debounce: a burst of messages in one batch gives one summary per conversation."""
    for flag in sorted(f for f in uow.flags if f.startswith(TOUCHED)):
        cid = flag[len(TOUCHED) :]
        rows = await uow.conn.fetch(
            "SELECT sender, text FROM messages WHERE conversation_id = $1 ORDER BY posted_at, message_id", cid
        )
        customer = [r["text"] for r in rows if r["sender"] == "customer"] or [r["text"] for r in rows]
        summary = domain.summarise(customer)
        ents = domain.entities([r["text"] for r in rows])
        await uow.conn.execute(
            "INSERT INTO summaries (conversation_id, summary, entities, provider, message_count) "
            "VALUES ($1, $2, $3, 'embedded', $4) ON CONFLICT (conversation_id) DO UPDATE SET summary = $2, "
            "entities = $3, provider = 'embedded', message_count = $4, updated_at = now()",
            cid,
            summary,
            ents,
            len(rows),
        )
        await surface_articles(uow, cid, customer)
        uow.emit(
            c.SummaryReady(
                conversation_id=cid, summary=summary, entities=ents, provider="embedded", message_count=len(rows)
            )
        )


async def surface_articles(uow: UnitOfWork, conversation_id: str, customer_texts: list[str]) -> None:
    """As the customer writes, the most relevant articles, without the agent searching; sent only
    when the list changes."""
    subject = await uow.conn.fetchval(Q.conversation_subject, conversation_id)
    query = domain.search_query([*([subject] if subject else []), *customer_texts[-5:]])
    if query is None:
        return
    rows = await uow.conn.fetch(Q.search_articles, query, SURFACED, None)
    ids = [r["id"] for r in rows]
    if not ids or ids == list(await uow.conn.fetchval(Q.last_surfaced, conversation_id) or []):
        return
    await uow.conn.execute(Q.set_surfaced, conversation_id, ids)
    uow.emit(
        c.ArticlesSurfaced(
            conversation_id=conversation_id,
            articles=[{"id": r["id"], "title": r["title"], "score": round(float(r["score"]), 4)} for r in rows],
        )
    )
