"""assist's use cases: the knowledge base and reply library, following conversations, and the
debounced work per conversation (articles, replies, summaries, case drafts)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import structlog
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from assist import domain, embedding
from assist.index import Index, article_vectors, bump, reply_text
from assist.providers import Assistant, Generated, parse_json_object
from shared import contracts as c
from shared.db import Conn, Queries
from shared.messaging import UnitOfWork
from shared.tx import PgTx

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = structlog.get_logger("switchboard.assist")
Q = Queries("assist")
SURFACED = 3
SUGGESTED = 3
RETRIEVE = 20  # candidates from each ranking before fusion
MIN_ARTICLE_SIMILARITY = 0.2
# The full-text ranking counts half as much as the dense one in the fusion. On the evaluation set,
# which is made of paraphrases, dense alone does best (make bench, one run: recall@3 0.934 dense,
# 0.868 fused, 0.592 text); the text half is kept for exact terms (codes, product names, jargon)
# that the encoder never saw and that set does not exercise yet.
TEXT_WEIGHT = 0.5
WAKE = "assist:wake"
RETRIEVAL_MODEL = f"{embedding.MODEL}+postgres-fts (reciprocal rank fusion)"
SUMMARY_MODEL = "textrank"
CASE_MODEL = "textrank+rules"


class Article(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    product: str | None = None
    language: str = "en"
    status: Literal["draft", "published", "archived"] = "published"


class LibraryReply(BaseModel):
    """A reply template: `text` may hold {customer_name}, {first_name}, {order_number}, {amount},
    {email}, {date}; `examples` are customer messages it answers (they shape its vector)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=1000)
    examples: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    language: str = "en"


class CaseSummary(BaseModel):
    """What an agent saves after reviewing a draft."""

    model_config = ConfigDict(extra="allow")
    issue: str = Field(min_length=1, max_length=2000)
    actions: list[str] = Field(default_factory=list)
    resolution: str | None = None
    next_steps: list[str] = Field(default_factory=list)
    entities: dict[str, list[str]] = Field(default_factory=dict)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["accepted", "edited", "rejected"]
    text: str | None = None


@dataclass
class Transcript:
    conversation_id: str
    customer_name: str | None
    subject: str | None
    rows: list[dict[str, Any]]

    @property
    def messages(self) -> list[tuple[str, str]]:
        return [(r["sender"], r["text"]) for r in self.rows]

    @property
    def customer_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["sender"] == "customer"]

    def entities(self) -> dict[str, list[str]]:
        return domain.entities([r["text"] for r in self.rows if r["sender"] == "customer"] or [])


def _hash_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(domain.normalise_text(text).encode()).hexdigest()[:16]


class AssistService:
    def __init__(
        self, runtime: Runtime | None, assistant: Assistant, debounce_s: float = 0.3, max_wait_s: float = 2.0
    ) -> None:
        self.runtime = runtime
        self.assistant = assistant
        self.index = Index()
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.wake = asyncio.Event()
        self.retrieval_mode: Literal["hybrid", "text", "dense"] = (
            "hybrid"  # per processed conversation update (the bench reads them)
        )

    # --- knowledge base and reply library ----------------------------------------------------------

    async def upsert_articles(self, conn: Conn, articles: list[Article]) -> list[bool]:
        """Create or update articles with their vectors; True per article that was new."""
        vectors = await asyncio.to_thread(article_vectors, [(a.title, a.tags, a.body) for a in articles])
        created = [
            bool(
                await conn.fetchval(
                    Q.upsert_article,
                    a.id,
                    a.title,
                    a.body,
                    a.tags,
                    a.product,
                    a.language,
                    a.status,
                    embedding.to_bytes(v),
                )
            )
            for a, v in zip(articles, vectors, strict=True)
        ]
        await bump(conn)
        return created

    async def upsert_replies(self, conn: Conn, replies: list[LibraryReply]) -> list[bool]:
        vectors = await asyncio.to_thread(
            embedding.encoder().encode, [reply_text(r.title, r.examples, r.text) for r in replies]
        )
        created = [
            bool(
                await conn.fetchval(
                    Q.upsert_library_reply, r.id, r.title, r.text, r.tags, r.language, embedding.to_bytes(v)
                )
            )
            for r, v in zip(replies, vectors, strict=True)
        ]
        await bump(conn)
        return created

    async def search(
        self,
        conn: Conn,
        text: str,
        limit: int = 5,
        language: str | None = None,
        vector: NDArray[np.float32] | None = None,
        mode: Literal["hybrid", "text", "dense"] = "hybrid",
    ) -> list[dict[str, Any]]:
        """Hybrid: weighted full-text ranking and dense cosine ranking, fused by reciprocal rank
        (`mode` keeps one of the two, for comparison). The caller has refreshed the index."""
        rankings: list[list[str]] = []
        titles: dict[str, str] = {}
        if mode != "dense":
            query = domain.search_query([text])
            rows = await conn.fetch(Q.search_articles, query, RETRIEVE, language) if query else []
            rankings.append([r["id"] for r in rows])
            titles.update((r["id"], r["title"]) for r in rows)
        if mode != "text":
            if vector is None:
                vector = await asyncio.to_thread(embedding.encoder().encode_one, text)
            where = {"language": language} if language else None
            dense = [
                (i, s) for i, s in self.index.articles.nearest(vector, RETRIEVE, where) if s >= MIN_ARTICLE_SIMILARITY
            ]
            rankings.append([self.index.articles.ids[i] for i, _ in dense])
            titles.update((self.index.articles.ids[i], self.index.articles.meta[i]["title"]) for i, _ in dense)
        fused = domain.reciprocal_rank_fusion(rankings, weights=[TEXT_WEIGHT, 1.0] if len(rankings) == 2 else None)
        return [{"id": doc, "title": titles[doc], "score": round(score, 5)} for doc, score in fused[:limit]]

    async def load_knowledge_base(self, conn: Conn, folder: Path) -> int:
        articles = await asyncio.to_thread(read_articles, folder)
        await self.upsert_articles(conn, articles)
        return len(articles)

    async def load_reply_library(self, conn: Conn, path: Path) -> int:
        replies = await asyncio.to_thread(read_replies, path)
        await self.upsert_replies(conn, replies)
        return len(replies)

    # --- following conversations -----------------------------------------------------------------------

    async def on_conversation_arrived(self, uow: UnitOfWork, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
        await uow.conn.execute(
            Q.insert_conversation,
            data.conversation_id,
            data.channel,
            data.subject,
            data.customer.name if data.customer else None,
        )

    async def on_message_posted(self, uow: UnitOfWork, ev: c.CloudEvent, data: c.MessagePosted) -> None:
        if data.visibility != "public" or not data.text.strip():
            return
        inserted = await uow.conn.fetchval(
            Q.insert_message,
            data.conversation_id,
            data.message_id,
            data.sender,
            data.visibility,
            data.text,
            ev.time,
            data.suggestion_id,
        )
        if not inserted:
            return
        if data.sender == "agent" and data.suggestion_id:
            await self.record_feedback(uow.conn, data.suggestion_id, None, data.text, data.sender_id, from_message=True)
        await self.schedule(uow, data.conversation_id)

    async def on_work_assigned(self, uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkAssigned) -> None:
        """A new agent on the conversation gets a summary of it so far."""
        new = await uow.conn.fetchval(Q.add_conversation_agent, data.conversation_id, data.agent_id)
        if new:
            trigger = f"summary:{'transferred' if data.how == 'transferred' else 'new_agent'}:{data.agent_id}"
            if await uow.conn.fetchval(Q.message_count, data.conversation_id):
                await self.schedule(uow, data.conversation_id, [trigger], now=True)
            else:  # most conversations are assigned before anyone writes: wait for the first message
                await uow.conn.execute(Q.keep_triggers, data.conversation_id, [trigger])

    async def on_work_released(self, uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkReleased) -> None:
        """Hand-off (transfer) or close: the releasing agent gets a case-summary draft to review."""
        trigger = "transferred" if data.reason == "transferred" else "closed"
        await self.case_due(uow, data.conversation_id, trigger, data.agent_id)

    async def on_conversation_ended(self, uow: UnitOfWork, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
        await self.case_due(uow, data.conversation_id, "closed", "")

    async def case_due(self, uow: UnitOfWork, conversation_id: str, trigger: str, agent_id: str) -> None:
        if await uow.conn.fetchval(Q.message_count, conversation_id):
            await self.schedule(uow, conversation_id, [f"case:{trigger}:{agent_id}"], now=True)
        elif trigger == "closed":  # nothing was written (a call, say): nothing to draft or to wait for
            await uow.conn.execute(Q.forget_pending, conversation_id)

    async def on_work_overflowed(self, uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkOverflowed) -> None:
        """Escalation to another queue: a draft so the next tier starts from the story so far."""
        if data.to_queue and await uow.conn.fetchval(Q.message_count, data.conversation_id):
            await self.schedule(uow, data.conversation_id, ["case:escalated:"], now=True)

    async def schedule(
        self, uow: UnitOfWork, conversation_id: str, triggers: list[str] | None = None, now: bool = False
    ) -> None:
        """Debounce: every message pushes the conversation's turn back by the debounce, but never past
        `max_wait` from the first message of the burst; a trigger (summary, case) is due at once."""
        await uow.conn.execute(
            Q.schedule, conversation_id, 0.0 if now else self.debounce_s, self.max_wait_s, triggers or []
        )
        uow.flags.add(WAKE)

    def on_committed(self, uow: UnitOfWork) -> None:
        if WAKE in uow.flags:
            self.wake.set()

    # --- the debounced work ------------------------------------------------------------------------------

    async def run_debouncer(self) -> None:
        assert self.runtime is not None
        pool = self.runtime.pool
        while True:
            try:
                self.wake.clear()
                async with pool.acquire() as conn:
                    claimed = await conn.fetch(Q.claim_pending, 20)
                for row in claimed:
                    await self.process(row["conversation_id"], list(row["triggers"]), row["version"])
                if claimed:
                    continue
                async with pool.acquire() as conn:
                    wait = await conn.fetchval(Q.next_due)
                timeout = 1.0 if wait is None else min(max(float(wait), 0.005), 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("assist_debouncer_error", error=repr(exc))
                await asyncio.sleep(1.0)

    async def transcript(self, conn: Conn, conversation_id: str) -> Transcript:
        conv = await conn.fetchrow(Q.get_conversation, conversation_id)
        rows = [dict(r) for r in await conn.fetch(Q.transcript, conversation_id)]
        return Transcript(
            conversation_id,
            conv["customer_name"] if conv else None,
            conv["subject"] if conv else None,
            rows,
        )

    async def process(self, conversation_id: str, triggers: list[str], version: int | None = None) -> dict[str, Any]:
        """One conversation's update: vectors for new customer messages, learned replies, articles,
        suggested replies, and the summaries its triggers ask for. Model calls happen before the
        transaction; the writes and events commit together."""
        assert self.runtime is not None
        out: dict[str, Any] = {}
        async with self.runtime.pool.acquire() as conn:
            await self.index.refresh(conn)
            t = await self.transcript(conn, conversation_id)
            fresh = [r for r in t.customer_rows if r["vector"] is None]
            if fresh:
                vectors = await asyncio.to_thread(embedding.encoder().encode, [r["text"] for r in fresh])
                for r, v in zip(fresh, vectors, strict=True):
                    r["vector"] = v
            for r in t.customer_rows:
                if isinstance(r["vector"], bytes):
                    r["vector"] = embedding.from_bytes(r["vector"])
            customer_vectors = [r["vector"] for r in t.customer_rows]
            ents = t.entities()
            summary = case = None
            summary_for = [x for x in triggers if x.startswith("summary:")]
            case_for = [x for x in triggers if x.startswith("case:")]
            if t.rows and summary_for:
                summary = await self.summarise(t, customer_vectors, ents)
            if t.rows and case_for:
                case = await self.draft_case(t, customer_vectors, ents, case_for[-1].split(":")[1])
            async with conn.transaction():
                uow = self.runtime.unit_of_work(PgTx(conn))
                if fresh:
                    await conn.executemany(
                        Q.set_message_vector,
                        [(conversation_id, r["message_id"], embedding.to_bytes(r["vector"])) for r in fresh],
                    )
                await self.learn_replies(conn, t, ents)
                if customer_vectors:
                    out["articles"] = await self.surface(uow, t, customer_vectors)
                    out["replies"] = await self.suggest(uow, t, customer_vectors, ents)
                if summary is not None:
                    out["summary"] = await self.emit_summary(uow, t, summary, ents, summary_for[-1])
                if case is not None:
                    out["case"] = await self.emit_case(uow, t, case, case_for[-1])
                if version is not None:
                    await conn.execute(Q.finish_pending, conversation_id, version, triggers)
                if summary_for and not t.rows:
                    # Assigned before its first message got here: summarise when it does.
                    await conn.execute(Q.keep_triggers, conversation_id, summary_for)
                await uow.flush()
        return out

    async def surface(
        self, uow: UnitOfWork, t: Transcript, customer_vectors: list[NDArray[np.float32]]
    ) -> list[dict[str, Any]]:
        """As the customer writes, the articles most relevant to the conversation so far; sent only
        when the list changes."""
        vectors = list(customer_vectors[-5:])
        if t.subject:
            vectors.insert(0, await asyncio.to_thread(_subject_vector, t.subject))
        query_vector = domain.conversation_vector(vectors)
        texts = [*([t.subject] if t.subject else []), *[r["text"] for r in t.customer_rows[-5:]]]
        hits = await self.search(uow.conn, " ".join(texts), SURFACED, None, query_vector, self.retrieval_mode)
        ids = [h["id"] for h in hits]
        if not ids or ids == list(await uow.conn.fetchval(Q.last_surfaced, t.conversation_id) or []):
            return hits
        await uow.conn.execute(Q.set_surfaced, t.conversation_id, ids)
        uow.emit(
            c.ArticlesSurfaced(
                conversation_id=t.conversation_id, articles=hits, provider="embedded", model=RETRIEVAL_MODEL
            )
        )
        return hits

    async def suggest(
        self, uow: UnitOfWork, t: Transcript, customer_vectors: list[NDArray[np.float32]], ents: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        """Replies for the customer's last message, while it is the last word in the conversation."""
        last = t.rows[-1]
        if last["sender"] != "customer":
            return []
        ranked = await self.rank_replies(uow.conn, t, customer_vectors, ents)
        ids = [r.reply_id for r in ranked]
        previous = await uow.conn.fetchrow(Q.last_suggested, t.conversation_id)
        if not ranked or (
            previous and previous["for_message"] == last["message_id"] and list(previous["reply_ids"]) == ids
        ):
            return [r.public() for r in ranked]
        replies = []
        for r in ranked:
            suggestion_id = str(uuid.uuid4())
            await uow.conn.execute(Q.insert_suggestion, suggestion_id, t.conversation_id, r.reply_id, r.text, r.score)
            replies.append({"suggestion_id": suggestion_id, **r.public()})
        await uow.conn.execute(Q.shown, ids)
        await uow.conn.execute(Q.set_last_suggested, t.conversation_id, ids, last["message_id"])
        uow.emit(
            c.RepliesSuggested(
                conversation_id=t.conversation_id,
                replies=replies,
                for_message_id=last["message_id"],
                provider="embedded",
                model=embedding.MODEL,
            )
        )
        return replies

    async def rank_replies(
        self, conn: Conn, t: Transcript, customer_vectors: list[NDArray[np.float32]], ents: dict[str, list[str]]
    ) -> list[domain.RankedReply]:
        # The last message leads (3:1) and the conversation so far disambiguates "yes, that one".
        conversation = domain.conversation_vector(customer_vectors)
        assert conversation is not None
        query = domain.conversation_vector([conversation, *[customer_vectors[-1]] * 3], decay=1.0)
        assert query is not None
        nearest = self.index.replies.nearest(query, 12)
        ids = [self.index.replies.ids[i] for i, _ in nearest]
        stats = {
            r["id"]: domain.ReplyStats(r["uses"], r["shown"], r["accepted"], r["edited"], r["rejected"])
            for r in await conn.fetch(Q.reply_stats, ids)
        }
        candidates = [
            (self.index.replies.ids[i], self.index.replies.meta[i]["source"], self.index.replies.meta[i]["text"], s)
            for i, s in nearest
        ]
        return domain.rank_replies(candidates, stats, domain.slot_values(t.customer_name, ents), SUGGESTED)

    async def learn_replies(self, conn: Conn, t: Transcript, ents: dict[str, list[str]]) -> None:
        """Agents' replies become suggestions for later conversations: with this customer's details
        turned back into slots, and a vector from the customer messages they answered."""
        context: list[NDArray[np.float32]] = []
        learned = False
        for r in t.rows:
            if r["sender"] == "customer":
                context.append(r["vector"])
                continue
            if r["sender"] != "agent" or r["learned"]:
                context = []
                continue
            await conn.execute(Q.mark_learned, t.conversation_id, r["message_id"])
            verbatim = (
                r["suggestion_id"] and await conn.fetchval(Q.suggestion_verdict, r["suggestion_id"]) == "accepted"
            )
            text = domain.generalise_reply(r["text"], t.customer_name, ents)
            if context and not verbatim and 20 <= len(text) <= 700:
                v = domain.conversation_vector(context)
                assert v is not None
                reply_id = _hash_id("h-", text)
                old = await conn.fetchrow(Q.get_reply_vector, reply_id)
                if old is not None:
                    merged = embedding.from_bytes(old["vector"]) * old["uses"] + v
                    v = (merged / max(float(np.linalg.norm(merged)), 1e-12)).astype(np.float32)
                title = " ".join(t.customer_rows[-1]["text"].split()[:12]) if t.customer_rows else "agent reply"
                await conn.execute(Q.learn_reply, reply_id, title, text, embedding.to_bytes(v))
                learned = True
            context = []
        if learned:
            await bump(conn)

    async def record_feedback(
        self,
        conn: Conn,
        suggestion_id: str,
        verdict: str | None,
        text: str | None,
        agent_id: str | None,
        from_message: bool = False,
    ) -> tuple[bool, str]:
        """Accept, edit or reject a suggestion (once). A sent message decides by its text."""
        row = await conn.fetchrow(Q.get_suggestion, suggestion_id)
        if row is None:
            return False, f"no suggestion {suggestion_id!r}"
        if row["verdict"] is not None:
            if from_message:
                return False, "already decided"
            return False, f"suggestion {suggestion_id!r} was already {row['verdict']}"
        if verdict is None:
            verdict = (
                "accepted" if domain.normalise_text(text or "") == domain.normalise_text(row["text"]) else "edited"
            )
        await conn.execute(Q.decide_suggestion, suggestion_id, verdict, text, agent_id)
        await conn.execute(Q.count_verdict, row["reply_id"], verdict)
        return True, verdict

    # --- summaries -------------------------------------------------------------------------------------------

    async def summarise(
        self, t: Transcript, customer_vectors: list[NDArray[np.float32]], ents: dict[str, list[str]]
    ) -> tuple[Generated[str], str]:
        intent = self.index.intent(np.stack(customer_vectors)) if customer_vectors else "general_inquiry"
        generated = await self.assistant.generate(
            "summary",
            "You summarise customer-service conversations for the next agent. Answer with at most three "
            "plain sentences. Keep order numbers, amounts, emails and dates exactly as written.",
            _transcript_prompt(t),
            lambda text: text.strip()[:600],
            lambda: domain.summarise(t.messages),
            SUMMARY_MODEL,
        )
        return generated, intent

    async def emit_summary(
        self,
        uow: UnitOfWork,
        t: Transcript,
        result: tuple[Generated[str], str],
        ents: dict[str, list[str]],
        trigger: str,
    ) -> str:
        generated, intent = result
        _, kind, agent_id = _parts(trigger)
        await uow.conn.execute(
            Q.upsert_summary,
            t.conversation_id,
            generated.value,
            ents,
            generated.provider,
            len(t.rows),
            intent,
            generated.model,
            kind,
        )
        uow.emit(
            c.SummaryReady(
                conversation_id=t.conversation_id,
                summary=generated.value,
                entities=ents,
                provider=generated.provider,
                model=generated.model,
                intent=intent,
                trigger=kind,
                message_count=len(t.rows),
                **({"agent_id": agent_id} if agent_id else {}),
                **({"fallback": generated.fallback} if generated.fallback else {}),
            )
        )
        return generated.value

    async def draft_case(
        self, t: Transcript, customer_vectors: list[NDArray[np.float32]], ents: dict[str, list[str]], kind: str
    ) -> Generated[dict[str, Any]]:
        intent = self.index.intent(np.stack(customer_vectors)) if customer_vectors else "general_inquiry"
        embedded = domain.case_summary(t.messages, intent, ents, kind, t.customer_name)

        def parse(text: str) -> dict[str, Any]:
            doc = parse_json_object(text)
            return {
                **embedded,
                "issue": str(doc["issue"])[:400],
                "actions": [str(a) for a in doc.get("actions") or []][:6],
                "resolution": doc.get("resolution") or None,
                "next_steps": [str(a) for a in doc.get("next_steps") or []][:6],
            }

        return await self.assistant.generate(
            "case_summary",
            "You draft case notes from a customer-service conversation. Answer with one JSON object with the "
            'keys "issue" (one sentence), "actions" (list of what the agent did), "resolution" (string or '
            'null) and "next_steps" (list). Keep order numbers and amounts exactly as written.',
            _transcript_prompt(t),
            parse,
            lambda: embedded,
            CASE_MODEL,
        )

    async def emit_case(
        self, uow: UnitOfWork, t: Transcript, generated: Generated[dict[str, Any]], trigger: str
    ) -> dict[str, Any]:
        _, kind, agent_id = _parts(trigger)
        draft = {**generated.value, "message_count": len(t.rows)}
        previous = await uow.conn.fetchrow(Q.get_case_summary, t.conversation_id)
        if previous and previous["draft"].get("message_count") == len(t.rows) and previous["trigger"] == kind:
            return dict(previous["draft"])  # the same transcript, drafted already (e.g. released, then ended)
        await uow.conn.execute(
            Q.upsert_case_summary, t.conversation_id, draft, kind, agent_id or None, generated.provider, generated.model
        )
        uow.emit(
            c.CaseSummaryDrafted(
                conversation_id=t.conversation_id,
                draft=draft,
                trigger=kind,
                agent_id=agent_id or None,
                provider=generated.provider,
                model=generated.model,
                **({"fallback": generated.fallback} if generated.fallback else {}),
            )
        )
        return draft


@functools.lru_cache(maxsize=1024)
def _subject_vector(subject: str) -> NDArray[np.float32]:
    return embedding.encoder().encode_one(subject)


def _parts(trigger: str) -> tuple[str, str, str]:
    """'case:closed:agent-1' → ('case', 'closed', 'agent-1')."""
    what, _, rest = trigger.partition(":")
    kind, _, agent_id = rest.partition(":")
    return what, kind, agent_id


def _transcript_prompt(t: Transcript, max_chars: int = 6000) -> str:
    lines = [f"{sender}: {text}" for sender, text in t.messages]
    body = "\n".join(lines)
    return ("Subject: " + t.subject + "\n" if t.subject else "") + body[-max_chars:]


def read_articles(folder: Path) -> list[Article]:
    """Every .md / .json article of a folder (or one file), validated (errors name the file)."""
    files = sorted(folder.glob("*")) if folder.is_dir() else [folder]
    return [
        Article.model_validate(domain.parse_article(path.name, path.read_text()))
        for path in files
        if path.suffix in (".md", ".json")
    ]


def read_replies(path: Path) -> list[LibraryReply]:
    """A YAML (or JSON) list of reply templates."""
    doc = yaml.safe_load(path.read_text())
    items = doc.get("replies") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of replies (id, title, text, examples)")
    return [LibraryReply.model_validate(item) for item in items]
