"""One contract for assist's store, run against the fake and against PostgreSQL.

Full-text search is checked only for what both promise: an article holding a query's words is
found, drafts and other languages are not, and the limit holds. PostgreSQL stems words and ranks
with ts_rank_cd, the fake counts plain term overlap, so the exact order of ranks is not part of it.
Time does not pass inside one PostgreSQL transaction (now() is its start), so no case waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from assist import domain, embedding
from assist.domain import Article, LibraryReply
from assist.store import (
    AssistStore,
    Claim,
    Conversation,
    FakeAssistStore,
    Hold,
    Holding,
    NewMessage,
    PgAssistStore,
    Releasing,
)
from tools import testing

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


async def hold(store: AssistStore, conversation_id: str, agent_id: str, trigger: str = "summary:new_agent:x") -> Hold:
    (held,) = await store.hold_conversations([Holding(conversation_id, agent_id, trigger)], 2.0)
    return held


async def release(
    store: AssistStore, conversation_id: str, agent_id: str | None, trigger: str, forget: bool = False
) -> bool:
    (written,) = await store.release_conversations([Releasing(conversation_id, agent_id, trigger, forget)], 2.0)
    return written


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(embedding.DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="module")
async def pool(infra: testing.Infrastructure) -> AsyncIterator[asyncpg.Pool]:
    async with testing.store_database(infra, "assist") as pool:
        yield pool


@pytest.fixture
async def pg_store(pool: asyncpg.Pool) -> AsyncIterator[AssistStore]:
    """The store in a transaction that is rolled back after the case."""
    async with testing.rolled_back(pool) as conn:
        yield PgAssistStore(conn)


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest) -> AssistStore:
    if request.param == "fake":
        return FakeAssistStore()
    pg: AssistStore = request.getfixturevalue("pg_store")
    return pg


# --- conversations and their transcripts ----------------------------------------------------------


async def test_the_first_arrival_of_a_conversation_wins(store: AssistStore) -> None:
    await store.add_conversation("c-1", "chat", "Refund", "Ada Lovelace")
    await store.add_conversation("c-1", "email", "Other", "Someone Else")
    found = await store.find_conversation("c-1")
    assert found is not None
    assert (found.channel, found.subject, found.customer_name) == ("chat", "Refund", "Ada Lovelace")
    assert await store.find_conversation("nope") is None


async def test_a_batch_of_arrivals_is_added_at_once_first_wins(store: AssistStore) -> None:
    await store.add_conversation("c-1", "chat", "Refund", None)
    await store.add_conversations(
        [
            Conversation("c-1", "email", "Other", None),
            Conversation("c-2", "voice", None, "Ada Lovelace"),
            Conversation("c-2", "chat", "Again", None),
            Conversation("c-3", "sms", "Hi", None),
        ]
    )
    await store.add_conversations([])
    found = [await store.find_conversation(f"c-{i}") for i in (1, 2, 3)]
    assert found == [
        Conversation("c-1", "chat", "Refund", None),
        Conversation("c-2", "voice", None, "Ada Lovelace"),
        Conversation("c-3", "sms", "Hi", None),
    ]


async def test_messages_are_kept_once_in_the_order_they_were_posted(store: AssistStore) -> None:
    assert await store.add_message("c-1", "m-b", "customer", "public", "second", T0 + timedelta(seconds=1), None)
    assert await store.add_message("c-1", "m-a", "agent", "public", "first", T0, "s-1")
    assert await store.add_message(
        "c-1", "m-c", "customer", "public", "same time, later id", T0 + timedelta(seconds=1), None
    )
    assert not await store.add_message("c-1", "m-a", "agent", "public", "again", T0, None)
    await store.add_message("c-2", "m-a", "customer", "public", "other conversation", T0, None)

    messages = await store.list_messages("c-1")
    assert [m.message_id for m in messages] == ["m-a", "m-b", "m-c"]
    first = messages[0]
    assert (first.sender, first.text, first.suggestion_id, first.learned, first.vector) == (
        "agent",
        "first",
        "s-1",
        False,
        None,
    )
    assert await store.count_messages("c-1") == 3
    assert await store.count_messages("nope") == 0
    # The bounded transcript: the latest messages, still in the order they were posted.
    assert [m.message_id for m in await store.list_messages("c-1", 2)] == ["m-b", "m-c"]
    assert [m.message_id for m in await store.list_messages("c-1", 10)] == ["m-a", "m-b", "m-c"]
    assert await store.list_messages("nope") == []


async def test_message_vectors_and_learned_marks_are_kept(store: AssistStore) -> None:
    await store.add_message("c-1", "m-1", "customer", "public", "hello", T0, None)
    await store.add_message("c-1", "m-2", "agent", "public", "hi", T0 + timedelta(seconds=1), None)
    await store.set_message_vectors("c-1", [("m-1", vec(1))])
    await store.mark_learned("c-1", "m-2")
    m1, m2 = await store.list_messages("c-1")
    assert m1.vector is not None and m1.vector.dtype == np.float32 and np.array_equal(m1.vector, vec(1))
    assert m2.vector is None and m2.learned and not m1.learned


async def test_a_batch_of_messages_is_added_and_schedules_its_conversations(store: AssistStore) -> None:
    await hold(store, "c-1", "agent-1", "summary:new_agent:agent-1")  # kept for a message
    assert await store.add_message("c-3", "m-1", "customer", "public", "known", T0, None)
    batch = [
        NewMessage("c-1", "m-1", "customer", "public", "hi", T0),
        NewMessage("c-1", "m-2", "agent", "public", "hello", T0 + timedelta(seconds=1), "s-1"),
        NewMessage("c-1", "m-1", "customer", "public", "hi again", T0),  # twice in the batch: the first counts
        NewMessage("c-3", "m-1", "customer", "public", "known already", T0),
    ]
    assert await store.add_messages(batch, 0.0, 2.0) == {("c-1", "m-1"), ("c-1", "m-2")}
    assert [(m.message_id, m.text, m.suggestion_id) for m in await store.list_messages("c-1")] == [
        ("m-1", "hi", None),
        ("m-2", "hello", "s-1"),
    ]
    (claim,) = await store.claim_pending(10)  # c-3 had nothing new: not scheduled
    assert (claim.conversation_id, claim.triggers) == ("c-1", ["summary:new_agent:agent-1"])
    await store.finish_pending("c-1", claim.version, claim.triggers)
    assert await store.add_messages(batch[:1], 0.0, 2.0) == set()
    assert await store.claim_pending(10) == [] and await store.next_due() is None
    assert await store.add_messages([NewMessage("c-2", "m-1", "customer", "public", "hi", T0)], 60.0, 90.0)
    wait = await store.next_due()
    assert wait is not None and 55 < wait <= 60
    assert await store.add_messages([], 0.0, 2.0) == set()


async def test_an_agent_joins_a_conversation_once(store: AssistStore) -> None:
    assert await hold(store, "c-1", "agent-1", "summary:new_agent:agent-1") == Hold(True, False)
    assert await hold(store, "c-1", "agent-1", "summary:new_agent:agent-1") == Hold(False, False)
    assert (await hold(store, "c-1", "agent-2")).first
    assert (await hold(store, "c-2", "agent-1")).first


async def test_a_first_hold_waits_for_the_first_message_or_is_due_at_once(store: AssistStore) -> None:
    await hold(store, "c-1", "agent-1", "summary:new_agent:agent-1")
    assert await store.claim_pending(10) == [] and await store.next_due() is None  # kept, never due by itself
    await store.add_message("c-2", "m-1", "customer", "public", "hello", T0, None)
    assert await hold(store, "c-2", "agent-1", "summary:new_agent:agent-1") == Hold(True, True)
    # a hold again is not a first: nothing more is scheduled
    await hold(store, "c-2", "agent-1", "summary:transferred:agent-1")
    (claim,) = await store.claim_pending(10)
    assert (claim.conversation_id, claim.triggers, claim.version) == ("c-2", ["summary:new_agent:agent-1"], 1)
    await store.schedule("c-1", 0.0, 2.0, [])  # the first message: the kept trigger comes with it
    (claim,) = await store.claim_pending(10)
    assert (claim.conversation_id, claim.triggers) == ("c-1", ["summary:new_agent:agent-1"])


async def test_a_release_drafts_when_written_and_a_silent_close_forgets(store: AssistStore) -> None:
    await hold(store, "c-1", "agent-1", "summary:new_agent:agent-1")
    assert not await release(store, "c-1", "agent-1", "case:transferred:agent-1", forget=False)
    assert await store.claim_pending(10) == []
    await store.schedule("c-1", 0.0, 2.0, [])
    (claim,) = await store.claim_pending(10)
    assert claim.triggers == ["summary:new_agent:agent-1"]  # kept through the transfer
    holder = await store.find_holder("c-1", "agent-1")
    assert holder is not None and not holder.holds
    await hold(store, "c-2", "agent-1", "summary:new_agent:agent-1")
    assert not await release(store, "c-2", None, "case:closed:", forget=True)
    await store.schedule("c-2", 0.0, 2.0, [])
    (claim,) = await store.claim_pending(10)
    assert claim.triggers == []  # forgotten: the kept trigger went with it
    await store.add_message("c-3", "m-1", "customer", "public", "hello", T0, None)
    assert await release(store, "c-3", "agent-2", "case:closed:agent-2", forget=True)
    (claim,) = await store.claim_pending(10)
    assert (claim.conversation_id, claim.triggers) == ("c-3", ["case:closed:agent-2"])
    holder = await store.find_holder("c-3", "agent-2")
    assert holder is not None and not holder.holds  # released without an assignment seen first


async def test_holds_and_releases_of_a_batch_are_answered_in_order(store: AssistStore) -> None:
    await store.add_message("c-2", "m-1", "customer", "public", "hi", T0, None)
    holds = [
        Holding("c-1", "a-1", "summary:new_agent:a-1"),
        Holding("c-2", "a-1", "summary:new_agent:a-1"),
        Holding("c-3", "a-2", "summary:transferred:a-2", previous_agent_id="a-1"),
    ]
    assert await store.hold_conversations(holds, 2.0) == [Hold(True, False), Hold(True, True), Hold(True, False)]
    before = await store.find_holder("c-3", "a-1")
    assert before is not None and not before.holds  # the transfer let the agent before go
    (claim,) = await store.claim_pending(10)
    assert (claim.conversation_id, claim.triggers) == ("c-2", ["summary:new_agent:a-1"])
    releases = [
        Releasing("c-2", "a-1", "case:closed:a-1", forget=True),
        Releasing("c-1", "a-1", "case:closed:a-1", forget=True),
        Releasing("c-3", None, "case:escalated:"),
    ]
    assert await store.release_conversations(releases, 2.0) == [True, False, False]
    assert await store.hold_conversations([], 2.0) == [] and await store.release_conversations([], 2.0) == []
    await store.schedule("c-1", 0.0, 2.0, [])
    await store.schedule("c-3", 0.0, 2.0, [])
    claims = {c.conversation_id: c.triggers for c in await store.claim_pending(10)}
    assert claims == {"c-1": [], "c-3": ["summary:transferred:a-2"]}  # c-1's kept trigger forgotten on close


async def test_holders_are_known_while_they_hold_and_after(store: AssistStore) -> None:
    assert await store.find_holder("c-1", "agent-1") is None
    await hold(store, "c-1", "agent-1")
    held = await store.find_holder("c-1", "agent-1")
    assert held is not None and held.holds and held.agent_id == "agent-1"
    await release(store, "c-1", "agent-1", "case:transferred:agent-1")  # transferred away
    released = await store.find_holder("c-1", "agent-1")
    assert released is not None and not released.holds and released.first_at == held.first_at
    assert await store.find_holder("c-1", "agent-2") is None and await store.find_holder("c-2", "agent-1") is None
    # Transferred back: holds again, and it is not its first time.
    assert not (await hold(store, "c-1", "agent-1")).first
    back = await store.find_holder("c-1", "agent-1")
    assert back is not None and back.holds
    # Released without an assignment seen first (assist started later): it held it.
    await release(store, "c-3", "agent-9", "case:closed:agent-9")
    late = await store.find_holder("c-3", "agent-9")
    assert late is not None and not late.holds


async def test_each_escalation_signal_is_flagged_once_per_conversation(store: AssistStore) -> None:
    assert await store.flag_escalation("c-1", ["upset"], "m-1") == ["upset"]
    assert await store.flag_escalation("c-1", ["asks_for_manager", "upset"], "m-2") == ["asks_for_manager"]
    assert await store.flag_escalation("c-1", ["upset", "asks_for_manager"], "m-3") == []
    assert await store.flag_escalation("c-2", ["upset", "upset"], "m-1") == ["upset"]
    with pytest.raises((ValueError, asyncpg.CheckViolationError)):
        await store.flag_escalation("c-3", ["bored"], "m-1")  # type: ignore[list-item]


# --- the debounce queue -------------------------------------------------------------------------------


async def test_a_due_conversation_is_claimed_once_with_a_lease(store: AssistStore) -> None:
    await store.schedule("c-now", 0.0, 2.0, ["summary:new_agent:a-1"])
    await store.schedule("c-later", 60.0, 120.0, [])
    claimed = await store.claim_pending(10)
    assert claimed == [Claim("c-now", ["summary:new_agent:a-1"], 1)]
    assert await store.claim_pending(10) == []  # leased
    wait = await store.next_due()  # the leased one does not count
    assert wait is not None and 55 < wait <= 60


async def test_a_burst_is_due_no_later_than_the_ceiling(store: AssistStore) -> None:
    await store.schedule("c-1", 60.0, 0.0, [])
    assert await store.claim_pending(10) == []
    await store.schedule("c-1", 60.0, 0.0, ["case:closed:a-1"])  # the ceiling: first_at + 0 s
    (claim,) = await store.claim_pending(10)
    assert claim.conversation_id == "c-1" and claim.version == 2 and claim.triggers == ["case:closed:a-1"]


async def test_finishing_a_claim_keeps_what_arrived_meanwhile(store: AssistStore) -> None:
    await store.schedule("c-1", 0.0, 2.0, ["summary:new_agent:a-1"])
    (claim,) = await store.claim_pending(10)
    await store.schedule("c-1", 0.0, 2.0, ["case:closed:a-1"])  # a message while it was processed
    await store.finish_pending("c-1", claim.version, claim.triggers)
    (again,) = await store.claim_pending(10)  # due again, the lease released, served triggers gone
    assert again.conversation_id == "c-1" and again.version == 2 and again.triggers == ["case:closed:a-1"]
    await store.finish_pending("c-1", again.version, again.triggers)
    assert await store.claim_pending(10) == [] and await store.next_due() is None


async def test_kept_triggers_wait_for_the_next_scheduling(store: AssistStore) -> None:
    await store.keep_triggers("c-1", ["summary:new_agent:a-1"])
    assert await store.claim_pending(10) == []
    assert await store.next_due() is None  # never due by itself
    await store.schedule("c-1", 0.0, 2.0, ["summary:new_agent:a-2"])
    (claim,) = await store.claim_pending(10)
    assert sorted(claim.triggers) == ["summary:new_agent:a-1", "summary:new_agent:a-2"]


async def test_claims_respect_the_limit_and_forgetting_removes(store: AssistStore) -> None:
    for i in range(3):
        await store.schedule(f"c-{i}", 0.0, 2.0, [])
    assert not await release(store, "c-2", None, "", forget=True)
    first = await store.claim_pending(1)
    assert len(first) == 1
    rest = await store.claim_pending(10)
    assert {c.conversation_id for c in first + rest} == {"c-0", "c-1"}


# --- knowledge base -------------------------------------------------------------------------------------


def article(id: str, title: str, body: str, **kw: object) -> Article:
    return Article.model_validate({"id": id, "title": title, "body": body, **kw})


async def test_articles_are_created_then_updated_and_read_back(store: AssistStore) -> None:
    version = await store.kb_version()
    assert await store.upsert_article(article("b", "Warranty", "Two years.", tags=["warranty"]), vec(1))
    assert not await store.upsert_article(article("b", "Warranty claims", "Two years of cover."), vec(2))
    await store.bump_kb_version()
    assert await store.kb_version() == version + 1
    found = await store.find_article("b")
    assert found is not None
    assert (found.title, found.body, found.tags, found.language, found.status) == (
        "Warranty claims",
        "Two years of cover.",
        [],
        "en",
        "published",
    )
    assert found.updated_at is not None
    assert await store.find_article("nope") is None


async def test_only_published_articles_with_vectors_are_listed(store: AssistStore) -> None:
    await store.upsert_article(article("b", "B", "b"), vec(2))
    await store.upsert_article(article("a", "A", "a", language="fr"), vec(1))
    await store.upsert_article(article("d", "D", "d", status="draft"), vec(3))
    await store.upsert_article(article("c", "C", "c"), None)
    listed = await store.list_article_vectors()
    assert [(a.id, a.title, a.language) for a in listed] == [("a", "A", "fr"), ("b", "B", "en")]
    assert np.array_equal(listed[1].vector, vec(2))
    (missing,) = await store.list_articles_without_vector()
    assert (missing.id, missing.title, missing.body) == ("c", "C", "c")
    await store.set_article_vectors([("c", vec(4))])
    assert [a.id for a in await store.list_article_vectors()] == ["a", "b", "c"]
    assert await store.list_articles_without_vector() == []


async def test_full_text_search_finds_articles_holding_the_words(store: AssistStore) -> None:
    await store.upsert_article(
        article(
            "refund", "Refund a duplicate charge", "When a customer is charged twice, refund it.", tags=["billing"]
        ),
        vec(1),
    )
    await store.upsert_article(article("warranty", "Warranty", "Products have a warranty."), vec(2))
    await store.upsert_article(article("draft", "Duplicate draft", "duplicate charge", status="draft"), vec(3))
    await store.upsert_article(article("fr", "Remboursement", "duplicate charge", language="fr"), vec(4))

    hits = await store.search_articles("duplicate | charge", 10, "en")
    assert [h.id for h in hits] == ["refund"] and hits[0].title == "Refund a duplicate charge"
    assert {h.id for h in await store.search_articles("duplicate | charge", 10, None)} == {"refund", "fr"}
    assert {h.id for h in await store.search_articles("warranty | duplicate", 10, "en")} == {"refund", "warranty"}
    assert len(await store.search_articles("warranty | duplicate", 1, "en")) == 1
    assert await store.search_articles("zebra", 10, None) == []


# --- replies, suggestions and feedback ----------------------------------------------------------------------


def reply(id: str, text: str = "We refund {amount} for order {order_number}.") -> LibraryReply:
    return LibraryReply(id=id, title=id.title(), text=text, examples=["refund please"])


async def test_library_and_learned_replies(store: AssistStore) -> None:
    assert await store.upsert_library_reply(reply("refund"), vec(1))
    assert not await store.upsert_library_reply(reply("refund", "We refund it."), vec(2))
    await store.upsert_library_reply(reply("apology", "Sorry about that."), vec(3))
    await store.learn_reply("h-1", "where is my parcel", "It ships tomorrow.", vec(4))
    await store.learn_reply("h-1", "ignored", "ignored", vec(5))  # one more use, a merged vector

    learned = await store.find_reply("h-1")
    assert learned is not None
    assert (learned.source, learned.text, learned.uses) == ("history", "It ships tomorrow.", 2)
    assert np.array_equal(learned.vector, vec(5))
    assert await store.find_reply("nope") is None
    vectors = await store.list_reply_vectors()
    assert [(r.id, r.source) for r in vectors] == [("apology", "library"), ("h-1", "history"), ("refund", "library")]
    assert vectors[2].text == "We refund it." and np.array_equal(vectors[2].vector, vec(2))
    listed = await store.list_replies()
    assert [r.id for r in listed] == ["apology", "refund", "h-1"]  # the library first
    assert listed[1].title == "Refund" and listed[2].uses == 2


async def test_a_suggestion_is_decided_once_and_counted_on_its_reply(store: AssistStore) -> None:
    await store.upsert_library_reply(reply("refund"), vec(1))
    await store.upsert_library_reply(reply("apology", "Sorry."), vec(2))
    await store.count_shown(["refund", "apology"])
    await store.add_suggestion("s-1", "c-1", "refund", "We refund $5 for order 1.", 0.8)
    await store.add_suggestion("s-2", "c-1", "apology", "Sorry.", 0.5)

    found = await store.find_suggestion("s-1")
    assert found is not None
    assert (found.conversation_id, found.reply_id, found.text, found.verdict) == (
        "c-1",
        "refund",
        "We refund $5 for order 1.",
        None,
    )
    assert await store.find_suggestion("nope") is None
    assert await store.decide_suggestion("s-1", "accepted", "We refund $5 for order 1.", "agent-1")
    assert not await store.decide_suggestion("s-1", "rejected", None, "agent-1")  # the second verdict is refused
    assert await store.decide_suggestion("s-2", "rejected", None, "agent-1")
    assert not await store.decide_suggestion("nope", "rejected", None, "agent-1")
    decided = await store.find_suggestion("s-1")
    assert decided is not None and decided.verdict == "accepted"

    stats = await store.list_reply_stats(["refund", "apology", "nope"])
    assert stats == {
        "refund": domain.ReplyStats(uses=0, shown=1, accepted=1, edited=0, rejected=0),
        "apology": domain.ReplyStats(uses=0, shown=1, accepted=0, edited=0, rejected=1),
    }
    rows = {r.id: r for r in await store.list_replies()}
    assert (rows["refund"].accepted, rows["apology"].rejected, rows["apology"].shown) == (1, 1, 1)


async def test_what_was_last_surfaced_and_suggested(store: AssistStore) -> None:
    assert await store.list_surfaced("c-1") == []
    await store.set_surfaced("c-1", ["a", "b"])
    await store.set_surfaced("c-1", ["b", "a"])
    assert await store.list_surfaced("c-1") == ["b", "a"]
    assert await store.find_last_suggested("c-1") is None
    await store.set_last_suggested("c-1", ["r-1"], "m-1")
    await store.set_last_suggested("c-1", ["r-2", "r-1"], "m-2")
    last = await store.find_last_suggested("c-1")
    assert last is not None and (last.reply_ids, last.for_message) == (["r-2", "r-1"], "m-2")


# --- summaries and case summaries ----------------------------------------------------------------------------


async def test_the_latest_summary_is_kept(store: AssistStore) -> None:
    assert await store.find_summary("c-1") is None
    fields = {"provider": "embedded", "model": "textrank", "intent": "refund_request", "trigger": "new_agent"}
    await store.upsert_summary("c-1", summary="first", entities={}, message_count=1, **fields)
    await store.upsert_summary(
        "c-1", summary="Charged twice.", entities={"order_numbers": ["1234"]}, message_count=3, **fields
    )
    found = await store.find_summary("c-1")
    assert found is not None
    assert (found.summary, found.entities, found.message_count, found.intent, found.trigger, found.model) == (
        "Charged twice.",
        {"order_numbers": ["1234"]},
        3,
        "refund_request",
        "new_agent",
        "textrank",
    )


async def test_a_case_summary_is_drafted_saved_and_drafted_again(store: AssistStore) -> None:
    assert not await store.save_case_summary("c-1", {"issue": "x"}, "agent-1")  # nothing drafted
    assert await store.find_case_summary("c-1") is None
    await store.upsert_case_summary(
        "c-1", {"issue": "Charged twice", "message_count": 2}, "closed", "agent-1", "embedded", "textrank+rules"
    )
    draft = await store.find_case_summary("c-1")
    assert draft is not None
    assert (draft.status, draft.trigger, draft.agent_id, draft.draft["issue"], draft.saved) == (
        "draft",
        "closed",
        "agent-1",
        "Charged twice",
        None,
    )
    assert await store.save_case_summary("c-1", {"issue": "Charged twice for order 1234."}, "agent-1")
    saved = await store.find_case_summary("c-1")
    assert saved is not None and saved.status == "saved" and saved.saved_by == "agent-1"
    assert saved.saved == {"issue": "Charged twice for order 1234."} and saved.saved_at is not None
    assert saved.draft == draft.draft

    await store.upsert_case_summary("c-1", {"issue": "Again", "message_count": 4}, "escalated", None, "embedded", "m")
    again = await store.find_case_summary("c-1")
    assert again is not None and (again.status, again.trigger, again.agent_id) == ("draft", "escalated", None)
    assert again.saved == {"issue": "Charged twice for order 1234."}  # the reviewed version stays
