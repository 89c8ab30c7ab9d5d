"""assist's storage: the `AssistStore` interface, on PostgreSQL (named queries in sql/) and in memory.

Vectors are float32 numpy arrays at this interface; both stores keep them as the same little-endian
bytes (`embedding.to_bytes`). Full-text search differs by nature: PostgreSQL ranks with stemming and
`ts_rank_cd`, the fake by plain term overlap with the same field weights. The contract suite checks
only what both guarantee (an article holding a query's words is found, filters and limits hold),
not the exact order of ranks.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from assist import domain, embedding
from assist.embedding import Vector
from shared.db import Conn, Queries, columns
from shared.tx import Tx

Q = Queries("assist")
LEASE = timedelta(seconds=30)  # a claimed conversation is due again after this if never finished
NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    channel: str | None
    subject: str | None
    customer_name: str | None


@dataclass(frozen=True)
class NewMessage:
    """A message as the projection receives it."""

    conversation_id: str
    message_id: str
    sender: str
    visibility: str
    text: str
    posted_at: datetime
    suggestion_id: str | None = None


@dataclass(frozen=True, eq=False)
class Message:
    message_id: str
    sender: str
    text: str
    vector: Vector | None
    learned: bool
    suggestion_id: str | None


@dataclass(frozen=True)
class StoredArticle:
    id: str
    title: str
    body: str
    tags: list[str]
    product: str | None
    language: str
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class ArticleText:
    """What an article's vector is made from."""

    id: str
    title: str
    tags: list[str]
    body: str


@dataclass(frozen=True, eq=False)
class ArticleVector:
    id: str
    title: str
    language: str
    vector: Vector


@dataclass(frozen=True)
class TextHit:
    id: str
    title: str


@dataclass(frozen=True, eq=False)
class ReplyVector:
    id: str
    source: str
    text: str
    language: str
    vector: Vector
    uses: int


@dataclass(frozen=True)
class ReplyRecord:
    """A reply with what agents did with it."""

    id: str
    source: str
    title: str
    text: str
    uses: int
    shown: int
    accepted: int
    edited: int
    rejected: int


@dataclass(frozen=True)
class Suggestion:
    suggestion_id: str
    conversation_id: str
    reply_id: str
    text: str
    verdict: str | None


@dataclass(frozen=True)
class LastSuggested:
    reply_ids: list[str]
    for_message: str


@dataclass(frozen=True)
class Holder:
    """An agent who holds (`released_at` None) or held a conversation."""

    agent_id: str
    first_at: datetime
    released_at: datetime | None

    @property
    def holds(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True)
class Holding:
    """An assignment to record: the agent holds the conversation (`previous_agent_id`, on a
    transfer, no longer does); `trigger` is the update its first hold asks for."""

    conversation_id: str
    agent_id: str
    trigger: str
    previous_agent_id: str | None = None


@dataclass(frozen=True)
class Hold:
    """What an assignment found: the agent's first hold on the conversation, and whether the
    conversation has messages."""

    first: bool
    written: bool


@dataclass(frozen=True)
class Releasing:
    """A release to record: the agent (if any) no longer holds the conversation; `trigger` is due
    if something was written, else with `forget` the conversation's pending update is dropped."""

    conversation_id: str
    agent_id: str | None
    trigger: str
    forget: bool = False


@dataclass(frozen=True)
class Claim:
    conversation_id: str
    triggers: list[str]
    version: int


@dataclass(frozen=True)
class Summary:
    summary: str
    entities: dict[str, list[str]]
    provider: str
    model: str | None
    intent: str | None
    trigger: str | None
    message_count: int
    updated_at: datetime


@dataclass(frozen=True)
class CaseSummaryRecord:
    conversation_id: str
    draft: dict[str, Any]
    trigger: str
    agent_id: str | None
    provider: str
    model: str
    status: str
    drafted_at: datetime
    saved: dict[str, Any] | None
    saved_by: str | None
    saved_at: datetime | None


class AssistStore(Protocol):
    # --- knowledge base and replies
    async def upsert_article(self, article: domain.Article, vector: Vector | None) -> bool:
        """True when the article is new."""
        ...

    async def find_article(self, article_id: str) -> StoredArticle | None: ...
    async def list_article_vectors(self) -> list[ArticleVector]:
        """Published articles that have a vector, by id."""
        ...

    async def list_articles_without_vector(self) -> list[ArticleText]: ...
    async def set_article_vectors(self, vectors: list[tuple[str, Vector]]) -> None: ...
    async def search_articles(self, query: str, limit: int, language: str | None) -> list[TextHit]:
        """Published articles matching any term of `query` ("a | b | c"), best first."""
        ...

    async def kb_version(self) -> int: ...
    async def bump_kb_version(self) -> None: ...
    async def upsert_library_reply(self, reply: domain.LibraryReply, vector: Vector) -> bool: ...
    async def learn_reply(self, reply_id: str, title: str, text: str, vector: Vector) -> None:
        """A reply an agent sent: new, or one more use of it (with `vector` replacing its vector)."""
        ...

    async def find_reply(self, reply_id: str) -> ReplyVector | None: ...
    async def list_reply_vectors(self) -> list[ReplyVector]: ...
    async def list_replies(self) -> list[ReplyRecord]:
        """The library first, then learned replies, each by id."""
        ...

    async def list_reply_stats(self, reply_ids: list[str]) -> dict[str, domain.ReplyStats]: ...
    async def count_shown(self, reply_ids: list[str]) -> None: ...
    async def add_suggestion(
        self, suggestion_id: str, conversation_id: str, reply_id: str, text: str, score: float
    ) -> None: ...
    async def find_suggestion(self, suggestion_id: str) -> Suggestion | None: ...
    async def decide_suggestion(
        self, suggestion_id: str, verdict: str, final_text: str | None, agent_id: str | None
    ) -> bool:
        """Record the verdict and count it on the reply; False if it was decided already."""
        ...

    async def find_last_suggested(self, conversation_id: str) -> LastSuggested | None: ...
    async def set_last_suggested(self, conversation_id: str, reply_ids: list[str], for_message: str) -> None: ...
    async def list_surfaced(self, conversation_id: str) -> list[str]: ...
    async def set_surfaced(self, conversation_id: str, article_ids: list[str]) -> None: ...

    # --- conversations followed
    async def add_conversation(
        self, conversation_id: str, channel: str | None, subject: str | None, customer_name: str | None
    ) -> None:
        """The first arrival wins; a repeat is ignored."""
        ...

    async def add_conversations(self, conversations: list[Conversation]) -> None:
        """Several arrivals at once, in order (as `add_conversation` each)."""
        ...

    async def find_conversation(self, conversation_id: str) -> Conversation | None: ...
    async def add_message(
        self,
        conversation_id: str,
        message_id: str,
        sender: str,
        visibility: str,
        text: str,
        posted_at: datetime,
        suggestion_id: str | None,
    ) -> bool:
        """False if the message is known already."""
        ...

    async def add_messages(
        self, messages: list[NewMessage], debounce_s: float, max_wait_s: float
    ) -> set[tuple[str, str]]:
        """Several messages at once, in order (as `add_message` each), each conversation with a new
        one scheduled (as `schedule` with no trigger); the (conversation, message) ids that were new."""
        ...

    async def list_messages(self, conversation_id: str, limit: int | None = None) -> list[Message]:
        """The transcript, by time posted (then id): its latest `limit` messages, or all."""
        ...

    async def count_messages(self, conversation_id: str) -> int: ...
    async def set_message_vectors(self, conversation_id: str, vectors: list[tuple[str, Vector]]) -> None: ...
    async def mark_learned(self, conversation_id: str, message_id: str) -> None: ...
    async def hold_conversations(self, holds: list[Holding], max_wait_s: float) -> list[Hold]:
        """Record assignments (each conversation once), in order. The first time an agent holds a
        conversation, its trigger is due at once when the conversation has messages (as `schedule`
        with no debounce), else kept for its first message (as `keep_triggers`)."""
        ...

    async def release_conversations(self, releases: list[Releasing], max_wait_s: float) -> list[bool]:
        """Record releases (each conversation once), in order; per release, whether the conversation
        has messages (then its trigger is due at once, as `schedule` with no debounce)."""
        ...

    async def find_holder(self, conversation_id: str, agent_id: str) -> Holder | None:
        """The agent's hold on the conversation, current or past; None if it never held it."""
        ...

    # --- the debounce queue
    async def schedule(self, conversation_id: str, debounce_s: float, max_wait_s: float, triggers: list[str]) -> None:
        """Due `debounce_s` from now, but no later than `max_wait_s` after the burst began; new
        triggers join the ones waiting."""
        ...

    async def keep_triggers(self, conversation_id: str, triggers: list[str]) -> None:
        """Triggers that wait (never due by themselves) for the conversation's next scheduling."""
        ...

    async def claim_pending(self, limit: int) -> list[Claim]:
        """Due conversations not leased, earliest first, leased for a while."""
        ...

    async def next_due(self) -> float | None:
        """Seconds until the next unleased conversation is due (negative when overdue)."""
        ...

    async def finish_pending(self, conversation_id: str, version: int, served: list[str]) -> None:
        """Done with a claim: gone, unless it was scheduled again meanwhile (then it stays due
        without the triggers served)."""
        ...

    # --- escalation signals
    async def flag_escalation(
        self, conversation_id: str, signals: list[domain.Signal], message_id: str
    ) -> list[domain.Signal]:
        """Flag the signals on the conversation, each once: those not flagged before, in the order given."""
        ...

    # --- summaries and case summaries
    async def upsert_summary(
        self,
        conversation_id: str,
        *,
        summary: str,
        entities: dict[str, list[str]],
        provider: str,
        model: str,
        intent: str,
        trigger: str,
        message_count: int,
    ) -> None: ...

    async def find_summary(self, conversation_id: str) -> Summary | None: ...
    async def upsert_case_summary(
        self,
        conversation_id: str,
        draft: dict[str, Any],
        trigger: str,
        agent_id: str | None,
        provider: str,
        model: str,
    ) -> None:
        """A new draft (status back to draft; a saved version is kept)."""
        ...

    async def find_case_summary(self, conversation_id: str) -> CaseSummaryRecord | None: ...
    async def save_case_summary(self, conversation_id: str, saved: dict[str, Any], saved_by: str) -> bool:
        """The agent's reviewed version; False when nothing was drafted."""
        ...


# --- PostgreSQL -----------------------------------------------------------------------------------


def _vector(b: bytes | None) -> Vector | None:
    return None if b is None else embedding.from_bytes(b)


def _bytes(v: Vector | None) -> bytes | None:
    return None if v is None else embedding.to_bytes(v)


class PgAssistStore:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def upsert_article(self, article: domain.Article, vector: Vector | None) -> bool:
        a = article
        return bool(
            await self.conn.fetchval(
                Q.upsert_article, a.id, a.title, a.body, a.tags, a.product, a.language, a.status, _bytes(vector)
            )
        )

    async def find_article(self, article_id: str) -> StoredArticle | None:
        r = await self.conn.fetchrow(Q.get_article, article_id)
        return None if r is None else StoredArticle(**{**dict(r), "tags": list(r["tags"])})

    async def list_article_vectors(self) -> list[ArticleVector]:
        return [
            ArticleVector(r["id"], r["title"], r["language"], embedding.from_bytes(r["vector"]))
            for r in await self.conn.fetch(Q.list_article_vectors)
        ]

    async def list_articles_without_vector(self) -> list[ArticleText]:
        return [
            ArticleText(r["id"], r["title"], list(r["tags"]), r["body"])
            for r in await self.conn.fetch(Q.list_articles_without_vector)
        ]

    async def set_article_vectors(self, vectors: list[tuple[str, Vector]]) -> None:
        await self.conn.executemany(Q.set_article_vector, [(i, embedding.to_bytes(v)) for i, v in vectors])

    async def search_articles(self, query: str, limit: int, language: str | None) -> list[TextHit]:
        return [TextHit(r["id"], r["title"]) for r in await self.conn.fetch(Q.search_articles, query, limit, language)]

    async def kb_version(self) -> int:
        return int(await self.conn.fetchval(Q.kb_version))

    async def bump_kb_version(self) -> None:
        await self.conn.execute(Q.bump_kb_version)

    async def upsert_library_reply(self, reply: domain.LibraryReply, vector: Vector) -> bool:
        r = reply
        return bool(
            await self.conn.fetchval(
                Q.upsert_library_reply, r.id, r.title, r.text, r.tags, r.language, embedding.to_bytes(vector)
            )
        )

    async def learn_reply(self, reply_id: str, title: str, text: str, vector: Vector) -> None:
        await self.conn.execute(Q.learn_reply, reply_id, title, text, embedding.to_bytes(vector))

    @staticmethod
    def _reply_vector(r: asyncpg.Record) -> ReplyVector:
        return ReplyVector(r["id"], r["source"], r["text"], r["language"], embedding.from_bytes(r["vector"]), r["uses"])

    async def find_reply(self, reply_id: str) -> ReplyVector | None:
        r = await self.conn.fetchrow(Q.get_reply, reply_id)
        return None if r is None else self._reply_vector(r)

    async def list_reply_vectors(self) -> list[ReplyVector]:
        return [self._reply_vector(r) for r in await self.conn.fetch(Q.list_reply_vectors)]

    async def list_replies(self) -> list[ReplyRecord]:
        return [ReplyRecord(**dict(r)) for r in await self.conn.fetch(Q.list_replies)]

    async def list_reply_stats(self, reply_ids: list[str]) -> dict[str, domain.ReplyStats]:
        return {
            r["id"]: domain.ReplyStats(r["uses"], r["shown"], r["accepted"], r["edited"], r["rejected"])
            for r in await self.conn.fetch(Q.reply_stats, reply_ids)
        }

    async def count_shown(self, reply_ids: list[str]) -> None:
        await self.conn.execute(Q.count_shown, reply_ids)

    async def add_suggestion(
        self, suggestion_id: str, conversation_id: str, reply_id: str, text: str, score: float
    ) -> None:
        await self.conn.execute(Q.insert_suggestion, suggestion_id, conversation_id, reply_id, text, score)

    async def find_suggestion(self, suggestion_id: str) -> Suggestion | None:
        r = await self.conn.fetchrow(Q.get_suggestion, suggestion_id)
        return None if r is None else Suggestion(**dict(r))

    async def decide_suggestion(
        self, suggestion_id: str, verdict: str, final_text: str | None, agent_id: str | None
    ) -> bool:
        reply_id = await self.conn.fetchval(Q.decide_suggestion, suggestion_id, verdict, final_text, agent_id)
        if reply_id is None:
            return False
        await self.conn.execute(Q.count_verdict, reply_id, verdict)
        return True

    async def find_last_suggested(self, conversation_id: str) -> LastSuggested | None:
        r = await self.conn.fetchrow(Q.last_suggested, conversation_id)
        return None if r is None else LastSuggested(list(r["reply_ids"]), r["for_message"])

    async def set_last_suggested(self, conversation_id: str, reply_ids: list[str], for_message: str) -> None:
        await self.conn.execute(Q.set_last_suggested, conversation_id, reply_ids, for_message)

    async def list_surfaced(self, conversation_id: str) -> list[str]:
        return list(await self.conn.fetchval(Q.last_surfaced, conversation_id) or [])

    async def set_surfaced(self, conversation_id: str, article_ids: list[str]) -> None:
        await self.conn.execute(Q.set_surfaced, conversation_id, article_ids)

    async def add_conversation(
        self, conversation_id: str, channel: str | None, subject: str | None, customer_name: str | None
    ) -> None:
        await self.conn.execute(Q.insert_conversation, conversation_id, channel, subject, customer_name)

    async def add_conversations(self, conversations: list[Conversation]) -> None:
        fields = ("conversation_id", "channel", "subject", "customer_name")
        await self.conn.execute(Q.insert_conversations, *columns(conversations, *fields))

    async def find_conversation(self, conversation_id: str) -> Conversation | None:
        r = await self.conn.fetchrow(Q.get_conversation, conversation_id)
        return None if r is None else Conversation(**dict(r))

    async def add_message(
        self,
        conversation_id: str,
        message_id: str,
        sender: str,
        visibility: str,
        text: str,
        posted_at: datetime,
        suggestion_id: str | None,
    ) -> bool:
        return bool(
            await self.conn.fetchval(
                Q.insert_message, conversation_id, message_id, sender, visibility, text, posted_at, suggestion_id
            )
        )

    async def add_messages(
        self, messages: list[NewMessage], debounce_s: float, max_wait_s: float
    ) -> set[tuple[str, str]]:
        rows = await self.conn.fetch(
            Q.insert_messages_scheduled,
            [m.conversation_id for m in messages],
            [m.message_id for m in messages],
            [m.sender for m in messages],
            [m.visibility for m in messages],
            [m.text for m in messages],
            [m.posted_at for m in messages],
            [m.suggestion_id for m in messages],
            debounce_s,
            max_wait_s,
        )
        return {(r["conversation_id"], r["message_id"]) for r in rows}

    async def list_messages(self, conversation_id: str, limit: int | None = None) -> list[Message]:
        return [
            Message(r["message_id"], r["sender"], r["text"], _vector(r["vector"]), r["learned"], r["suggestion_id"])
            for r in await self.conn.fetch(Q.transcript, conversation_id, limit)
        ]

    async def count_messages(self, conversation_id: str) -> int:
        return int(await self.conn.fetchval(Q.message_count, conversation_id))

    async def set_message_vectors(self, conversation_id: str, vectors: list[tuple[str, Vector]]) -> None:
        await self.conn.executemany(
            Q.set_message_vector, [(conversation_id, m, embedding.to_bytes(v)) for m, v in vectors]
        )

    async def mark_learned(self, conversation_id: str, message_id: str) -> None:
        await self.conn.execute(Q.mark_learned, conversation_id, message_id)

    async def hold_conversations(self, holds: list[Holding], max_wait_s: float) -> list[Hold]:
        rows = await self.conn.fetch(
            Q.hold_conversations,
            [h.conversation_id for h in holds],
            [h.agent_id for h in holds],
            [h.previous_agent_id for h in holds],
            [h.trigger for h in holds],
            max_wait_s,
        )
        return [Hold(r["first"], r["written"]) for r in rows]

    async def release_conversations(self, releases: list[Releasing], max_wait_s: float) -> list[bool]:
        rows = await self.conn.fetch(
            Q.release_conversations,
            [r.conversation_id for r in releases],
            [r.agent_id for r in releases],
            [r.trigger for r in releases],
            [r.forget for r in releases],
            max_wait_s,
        )
        return [r["written"] for r in rows]

    async def find_holder(self, conversation_id: str, agent_id: str) -> Holder | None:
        r = await self.conn.fetchrow(Q.get_conversation_agent, conversation_id, agent_id)
        return None if r is None else Holder(**dict(r))

    async def schedule(self, conversation_id: str, debounce_s: float, max_wait_s: float, triggers: list[str]) -> None:
        await self.conn.execute(Q.schedule, conversation_id, debounce_s, max_wait_s, triggers)

    async def keep_triggers(self, conversation_id: str, triggers: list[str]) -> None:
        await self.conn.execute(Q.keep_triggers, conversation_id, triggers)

    async def claim_pending(self, limit: int) -> list[Claim]:
        return [
            Claim(r["conversation_id"], list(r["triggers"]), r["version"])
            for r in await self.conn.fetch(Q.claim_pending, limit)
        ]

    async def next_due(self) -> float | None:
        wait = await self.conn.fetchval(Q.next_due)
        return None if wait is None else float(wait)

    async def finish_pending(self, conversation_id: str, version: int, served: list[str]) -> None:
        await self.conn.execute(Q.finish_pending, conversation_id, version, served)

    async def flag_escalation(
        self, conversation_id: str, signals: list[domain.Signal], message_id: str
    ) -> list[domain.Signal]:
        flagged = {r["signal"] for r in await self.conn.fetch(Q.flag_escalation, conversation_id, signals, message_id)}
        return [s for s in dict.fromkeys(signals) if s in flagged]

    async def upsert_summary(
        self,
        conversation_id: str,
        *,
        summary: str,
        entities: dict[str, list[str]],
        provider: str,
        model: str,
        intent: str,
        trigger: str,
        message_count: int,
    ) -> None:
        await self.conn.execute(
            Q.upsert_summary, conversation_id, summary, entities, provider, message_count, intent, model, trigger
        )

    async def find_summary(self, conversation_id: str) -> Summary | None:
        r = await self.conn.fetchrow(Q.get_summary, conversation_id)
        return None if r is None else Summary(**dict(r))

    async def upsert_case_summary(
        self,
        conversation_id: str,
        draft: dict[str, Any],
        trigger: str,
        agent_id: str | None,
        provider: str,
        model: str,
    ) -> None:
        await self.conn.execute(Q.upsert_case_summary, conversation_id, draft, trigger, agent_id, provider, model)

    async def find_case_summary(self, conversation_id: str) -> CaseSummaryRecord | None:
        r = await self.conn.fetchrow(Q.get_case_summary, conversation_id)
        return None if r is None else CaseSummaryRecord(**dict(r))

    async def save_case_summary(self, conversation_id: str, saved: dict[str, Any], saved_by: str) -> bool:
        return await self.conn.fetchval(Q.save_case_summary, conversation_id, saved, saved_by) is not None


def pg_store(tx: Tx) -> PgAssistStore:
    return PgAssistStore(tx.conn)  # type: ignore[attr-defined]


# --- in memory -------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
# ts_rank_cd's weights for title (A), tags (B) and body (C), as sql/queries.sql gives them.
_WEIGHTS = (1.0, 0.6, 0.2)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class _Pending:
    due_at: datetime
    first_at: datetime
    triggers: list[str]
    version: int = 1
    leased_until: datetime | None = None


@dataclass
class FakeAssistStore:
    """The same contract in plain Python objects (for handler tests; MemoryDatabase gives it
    transactions). `clock_s` moves its clock forward, as time passing would (`advance`)."""

    articles: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 1
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    suggestions: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_suggested: dict[str, LastSuggested] = field(default_factory=dict)
    surfaced: dict[str, list[str]] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    agents: dict[tuple[str, str], Holder] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    cases: dict[str, CaseSummaryRecord] = field(default_factory=dict)
    escalations: dict[str, dict[str, str]] = field(default_factory=dict)  # conversation → signal → message
    clock_s: float = 0.0

    def advance(self, seconds: float) -> None:
        self.clock_s += seconds

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_s)

    # --- knowledge base and replies

    async def upsert_article(self, article: domain.Article, vector: Vector | None) -> bool:
        created = article.id not in self.articles
        self.articles[article.id] = {
            **article.model_dump(),
            "tags": list(article.tags),
            "vector": _bytes(vector),
            "updated_at": self.now(),
        }
        return created

    async def find_article(self, article_id: str) -> StoredArticle | None:
        a = self.articles.get(article_id)
        if a is None:
            return None
        return StoredArticle(**{k: v for k, v in a.items() if k != "vector"})

    async def list_article_vectors(self) -> list[ArticleVector]:
        return [
            ArticleVector(a["id"], a["title"], a["language"], embedding.from_bytes(a["vector"]))
            for _, a in sorted(self.articles.items())
            if a["status"] == "published" and a["vector"] is not None
        ]

    async def list_articles_without_vector(self) -> list[ArticleText]:
        return [
            ArticleText(a["id"], a["title"], list(a["tags"]), a["body"])
            for _, a in sorted(self.articles.items())
            if a["vector"] is None
        ]

    async def set_article_vectors(self, vectors: list[tuple[str, Vector]]) -> None:
        for article_id, v in vectors:
            if article_id in self.articles:
                self.articles[article_id]["vector"] = embedding.to_bytes(v)

    async def search_articles(self, query: str, limit: int, language: str | None) -> list[TextHit]:
        terms = {t.strip() for t in query.lower().split("|") if t.strip()}
        scored: list[tuple[float, str]] = []
        for a in self.articles.values():
            if a["status"] != "published" or (language is not None and a["language"] != language):
                continue
            fields = (_words(a["title"]), _words(" ".join(a["tags"])), _words(a["body"]))
            score = sum(w * sum(word in terms for word in words) for w, words in zip(_WEIGHTS, fields, strict=True))
            if score > 0:
                scored.append((score, a["id"]))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [TextHit(i, self.articles[i]["title"]) for _, i in scored[:limit]]

    async def kb_version(self) -> int:
        return self.version

    async def bump_kb_version(self) -> None:
        self.version += 1

    def _new_reply(self, reply_id: str, source: str, title: str, text: str, vector: Vector) -> dict[str, Any]:
        return {
            "id": reply_id,
            "source": source,
            "title": title,
            "text": text,
            "tags": [],
            "language": "en",
            "vector": embedding.to_bytes(vector),
            "uses": 0,
            "shown": 0,
            "accepted": 0,
            "edited": 0,
            "rejected": 0,
        }

    async def upsert_library_reply(self, reply: domain.LibraryReply, vector: Vector) -> bool:
        r = self.replies.get(reply.id)
        created = r is None
        if r is None:
            r = self.replies[reply.id] = self._new_reply(reply.id, "library", reply.title, reply.text, vector)
        r.update(
            title=reply.title, text=reply.text, tags=list(reply.tags), language=reply.language, vector=_bytes(vector)
        )
        return created

    async def learn_reply(self, reply_id: str, title: str, text: str, vector: Vector) -> None:
        r = self.replies.get(reply_id)
        if r is None:
            r = self.replies[reply_id] = self._new_reply(reply_id, "history", title, text, vector)
        r["vector"] = embedding.to_bytes(vector)
        r["uses"] += 1

    @staticmethod
    def _reply_vector(r: dict[str, Any]) -> ReplyVector:
        return ReplyVector(r["id"], r["source"], r["text"], r["language"], embedding.from_bytes(r["vector"]), r["uses"])

    async def find_reply(self, reply_id: str) -> ReplyVector | None:
        r = self.replies.get(reply_id)
        return None if r is None else self._reply_vector(r)

    async def list_reply_vectors(self) -> list[ReplyVector]:
        return [self._reply_vector(r) for _, r in sorted(self.replies.items())]

    async def list_replies(self) -> list[ReplyRecord]:
        rows = sorted(self.replies.values(), key=lambda r: r["id"])
        rows.sort(key=lambda r: r["source"], reverse=True)
        keys = ReplyRecord.__dataclass_fields__
        return [ReplyRecord(**{k: r[k] for k in keys}) for r in rows]

    async def list_reply_stats(self, reply_ids: list[str]) -> dict[str, domain.ReplyStats]:
        return {
            i: domain.ReplyStats(r["uses"], r["shown"], r["accepted"], r["edited"], r["rejected"])
            for i in reply_ids
            if (r := self.replies.get(i)) is not None
        }

    async def count_shown(self, reply_ids: list[str]) -> None:
        for i in set(reply_ids):
            if i in self.replies:
                self.replies[i]["shown"] += 1

    async def add_suggestion(
        self, suggestion_id: str, conversation_id: str, reply_id: str, text: str, score: float
    ) -> None:
        if suggestion_id in self.suggestions:
            raise ValueError(f"duplicate suggestion {suggestion_id!r}")
        self.suggestions[suggestion_id] = {
            "suggestion_id": suggestion_id,
            "conversation_id": conversation_id,
            "reply_id": reply_id,
            "text": text,
            "score": score,
            "verdict": None,
            "final_text": None,
            "agent_id": None,
        }

    async def find_suggestion(self, suggestion_id: str) -> Suggestion | None:
        s = self.suggestions.get(suggestion_id)
        if s is None:
            return None
        return Suggestion(s["suggestion_id"], s["conversation_id"], s["reply_id"], s["text"], s["verdict"])

    async def decide_suggestion(
        self, suggestion_id: str, verdict: str, final_text: str | None, agent_id: str | None
    ) -> bool:
        s = self.suggestions.get(suggestion_id)
        if s is None or s["verdict"] is not None:
            return False
        s.update(verdict=verdict, final_text=final_text, agent_id=agent_id)
        if (r := self.replies.get(s["reply_id"])) is not None:
            r[verdict] += 1
        return True

    async def find_last_suggested(self, conversation_id: str) -> LastSuggested | None:
        return self.last_suggested.get(conversation_id)

    async def set_last_suggested(self, conversation_id: str, reply_ids: list[str], for_message: str) -> None:
        self.last_suggested[conversation_id] = LastSuggested(list(reply_ids), for_message)

    async def list_surfaced(self, conversation_id: str) -> list[str]:
        return list(self.surfaced.get(conversation_id, []))

    async def set_surfaced(self, conversation_id: str, article_ids: list[str]) -> None:
        self.surfaced[conversation_id] = list(article_ids)

    # --- conversations followed

    async def add_conversation(
        self, conversation_id: str, channel: str | None, subject: str | None, customer_name: str | None
    ) -> None:
        self.conversations.setdefault(conversation_id, Conversation(conversation_id, channel, subject, customer_name))

    async def add_conversations(self, conversations: list[Conversation]) -> None:
        for x in conversations:
            self.conversations.setdefault(x.conversation_id, x)

    async def find_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    async def add_message(
        self,
        conversation_id: str,
        message_id: str,
        sender: str,
        visibility: str,
        text: str,
        posted_at: datetime,
        suggestion_id: str | None,
    ) -> bool:
        messages = self.messages.setdefault(conversation_id, {})
        if message_id in messages:
            return False
        messages[message_id] = {
            "message_id": message_id,
            "sender": sender,
            "visibility": visibility,
            "text": text,
            "posted_at": posted_at,
            "suggestion_id": suggestion_id,
            "vector": None,
            "learned": False,
        }
        return True

    async def add_messages(
        self, messages: list[NewMessage], debounce_s: float, max_wait_s: float
    ) -> set[tuple[str, str]]:
        added: set[tuple[str, str]] = set()
        for m in messages:
            new = await self.add_message(
                m.conversation_id, m.message_id, m.sender, m.visibility, m.text, m.posted_at, m.suggestion_id
            )
            if new:
                added.add((m.conversation_id, m.message_id))
        for conversation_id in dict.fromkeys(cid for cid, _ in added):
            await self.schedule(conversation_id, debounce_s, max_wait_s, [])
        return added

    async def list_messages(self, conversation_id: str, limit: int | None = None) -> list[Message]:
        rows = sorted(self.messages.get(conversation_id, {}).values(), key=lambda m: (m["posted_at"], m["message_id"]))
        if limit is not None:
            rows = rows[max(len(rows) - limit, 0) :]
        return [
            Message(m["message_id"], m["sender"], m["text"], _vector(m["vector"]), m["learned"], m["suggestion_id"])
            for m in rows
        ]

    async def count_messages(self, conversation_id: str) -> int:
        return len(self.messages.get(conversation_id, {}))

    async def set_message_vectors(self, conversation_id: str, vectors: list[tuple[str, Vector]]) -> None:
        messages = self.messages.get(conversation_id, {})
        for message_id, v in vectors:
            if message_id in messages:
                messages[message_id]["vector"] = embedding.to_bytes(v)

    async def mark_learned(self, conversation_id: str, message_id: str) -> None:
        if (m := self.messages.get(conversation_id, {}).get(message_id)) is not None:
            m["learned"] = True

    async def hold_conversations(self, holds: list[Holding], max_wait_s: float) -> list[Hold]:
        out = []
        for h in holds:
            if h.previous_agent_id and h.previous_agent_id != h.agent_id:
                self._let_go(h.conversation_id, h.previous_agent_id)
            old = self.agents.get((h.conversation_id, h.agent_id))
            now = self.now()
            self.agents[(h.conversation_id, h.agent_id)] = Holder(h.agent_id, old.first_at if old else now, None)
            written = bool(self.messages.get(h.conversation_id))
            if old is None:
                if written:
                    await self.schedule(h.conversation_id, 0.0, max_wait_s, [h.trigger])
                else:
                    await self.keep_triggers(h.conversation_id, [h.trigger])
            out.append(Hold(old is None, written))
        return out

    async def release_conversations(self, releases: list[Releasing], max_wait_s: float) -> list[bool]:
        out = []
        for r in releases:
            if r.agent_id is not None:
                self._let_go(r.conversation_id, r.agent_id)
            written = bool(self.messages.get(r.conversation_id))
            if written:
                await self.schedule(r.conversation_id, 0.0, max_wait_s, [r.trigger])
            elif r.forget:
                self.pending.pop(r.conversation_id, None)
            out.append(written)
        return out

    def _let_go(self, conversation_id: str, agent_id: str) -> None:
        old = self.agents.get((conversation_id, agent_id))
        now = self.now()
        self.agents[(conversation_id, agent_id)] = Holder(agent_id, old.first_at if old else now, now)

    async def find_holder(self, conversation_id: str, agent_id: str) -> Holder | None:
        return self.agents.get((conversation_id, agent_id))

    # --- the debounce queue

    async def schedule(self, conversation_id: str, debounce_s: float, max_wait_s: float, triggers: list[str]) -> None:
        now = self.now()
        p = self.pending.get(conversation_id)
        if p is None:
            self.pending[conversation_id] = _Pending(now + timedelta(seconds=debounce_s), now, list(triggers))
            return
        p.due_at = min(now + timedelta(seconds=debounce_s), p.first_at + timedelta(seconds=max_wait_s))
        p.triggers = sorted(set(p.triggers) | set(triggers))
        p.version += 1

    async def keep_triggers(self, conversation_id: str, triggers: list[str]) -> None:
        p = self.pending.get(conversation_id)
        if p is None:
            self.pending[conversation_id] = _Pending(NEVER, self.now(), list(triggers))
            return
        p.triggers = sorted(set(p.triggers) | set(triggers))
        p.leased_until = None

    def _free(self, p: _Pending, now: datetime) -> bool:
        return p.leased_until is None or p.leased_until < now

    async def claim_pending(self, limit: int) -> list[Claim]:
        now = self.now()
        due = sorted((p.due_at, cid) for cid, p in self.pending.items() if p.due_at <= now and self._free(p, now))[
            :limit
        ]
        out = []
        for _, cid in due:
            p = self.pending[cid]
            p.leased_until = now + LEASE
            out.append(Claim(cid, list(p.triggers), p.version))
        return out

    async def next_due(self) -> float | None:
        now = self.now()
        due = [p.due_at for p in self.pending.values() if self._free(p, now) and p.due_at != NEVER]
        return (min(due) - now).total_seconds() if due else None

    async def finish_pending(self, conversation_id: str, version: int, served: list[str]) -> None:
        p = self.pending.get(conversation_id)
        if p is None:
            return
        if p.version == version:
            del self.pending[conversation_id]
            return
        p.leased_until = None
        p.triggers = [t for t in p.triggers if t not in served]

    # --- escalation signals

    async def flag_escalation(
        self, conversation_id: str, signals: list[domain.Signal], message_id: str
    ) -> list[domain.Signal]:
        if unknown := set(signals) - set(domain.SIGNALS):
            raise ValueError(f"unknown escalation signals {sorted(unknown)}")  # as the table's CHECK refuses
        flagged = self.escalations.setdefault(conversation_id, {})
        new = [s for s in dict.fromkeys(signals) if s not in flagged]
        flagged.update((s, message_id) for s in new)
        return new

    # --- summaries and case summaries

    async def upsert_summary(
        self,
        conversation_id: str,
        *,
        summary: str,
        entities: dict[str, list[str]],
        provider: str,
        model: str,
        intent: str,
        trigger: str,
        message_count: int,
    ) -> None:
        self.summaries[conversation_id] = Summary(
            summary, copy.deepcopy(entities), provider, model, intent, trigger, message_count, self.now()
        )

    async def find_summary(self, conversation_id: str) -> Summary | None:
        return self.summaries.get(conversation_id)

    async def upsert_case_summary(
        self,
        conversation_id: str,
        draft: dict[str, Any],
        trigger: str,
        agent_id: str | None,
        provider: str,
        model: str,
    ) -> None:
        old = self.cases.get(conversation_id)
        self.cases[conversation_id] = CaseSummaryRecord(
            conversation_id,
            copy.deepcopy(draft),
            trigger,
            agent_id,
            provider,
            model,
            "draft",
            self.now(),
            old.saved if old else None,
            old.saved_by if old else None,
            old.saved_at if old else None,
        )

    async def find_case_summary(self, conversation_id: str) -> CaseSummaryRecord | None:
        return self.cases.get(conversation_id)

    async def save_case_summary(self, conversation_id: str, saved: dict[str, Any], saved_by: str) -> bool:
        old = self.cases.get(conversation_id)
        if old is None:
            return False
        self.cases[conversation_id] = CaseSummaryRecord(
            old.conversation_id,
            old.draft,
            old.trigger,
            old.agent_id,
            old.provider,
            old.model,
            "saved",
            old.drafted_at,
            copy.deepcopy(saved),
            saved_by,
            self.now(),
        )
        return True
