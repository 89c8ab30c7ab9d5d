"""One contract for sessions' store: the same cases against the fake and against PostgreSQL.

Each PostgreSQL case runs in a transaction rolled back after it; time does not pass inside it (now()
is its start), so no case depends on the order of rows written in one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from sessions.config import OfferNotifications, SessionProfile
from sessions.domain import (
    Assigned,
    Assignment,
    ConversationInfo,
    Disposition,
    Draft,
    Message,
    Offer,
    Posted,
    Presence,
    Session,
    SupervisorAction,
    Tab,
    WaitingWork,
)
from sessions.store import FakeSessionsStore, PgSessionsStore, SessionsStore
from tools import testing

EXPIRES = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(infra: testing.Infrastructure) -> AsyncIterator[asyncpg.Pool]:
    async with testing.store_database(infra, "sessions") as pool:
        yield pool


@pytest.fixture
async def pg_store(pool: asyncpg.Pool) -> AsyncIterator[SessionsStore]:
    async with testing.rolled_back(pool) as conn:
        yield PgSessionsStore(conn)


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest) -> SessionsStore:
    if request.param == "fake":
        return FakeSessionsStore()
    pg: SessionsStore = request.getfixturevalue("pg_store")
    return pg


def conversation_session(agent_id: str, cid: str, title: str = "Ada Lovelace") -> Session:
    return Session(agent_id, f"conv-{cid}", "conversation", title, title[:2], cid, "chat", focused_tab="anchor")


def anchor_of(session: Session) -> Tab:
    return Tab(
        session.session_id, "anchor", "conversation", session.title, True, {"conversation_id": session.conversation_id}
    )


async def open_with_anchor(store: SessionsStore, agent_id: str, cid: str) -> Session:
    session = conversation_session(agent_id, cid)
    assert not await store.open_session(session, anchor_of(session))  # opened, not reopened
    return session


async def said(store: SessionsStore, cid: str) -> dict[str, Any]:
    """What the conversation keeps of assist's latest outputs, read as an assignment reads it."""
    return (await store.assign(Assignment(cid, "a-reader", "chat"), None, 0)).said


async def pane_of(store: SessionsStore, cid: str, patch: dict[str, Any]) -> dict[str, Any]:
    change = await store.merge_open_pane(cid, patch)
    assert change is not None
    return change.session.pane


# --- agents, focus, sequence numbers ------------------------------------------------------------------


async def test_an_agent_starts_with_home_in_focus(store: SessionsStore) -> None:
    assert await store.find_focus("a-1") is None
    assert await store.next_visitor_number("a-1") is None  # unknown agents have no numbers
    await store.ensure_agent("a-1")
    await store.ensure_agent("a-1")
    assert await store.find_focus("a-1") == "home"
    home = await store.find_session("a-1", "home")
    assert home is not None
    assert (home.kind, home.title, home.icon, home.status, home.unread, home.pane) == (
        "home",
        "Home",
        "Ho",
        "open",
        0,
        {},
    )
    assert [s.session_id for s in await store.list_sessions("a-1")] == ["home"]
    assert await store.count_open_sessions("a-1") == 0  # Home does not count
    await store.set_focus("a-1", "conv-c-1")
    assert await store.find_focus("a-1") == "conv-c-1"
    assert [await store.next_visitor_number("a-1") for _ in range(3)] == [1, 2, 3]


async def test_sequence_numbers_are_reserved_per_agent(store: SessionsStore) -> None:
    assert await store.get_seq("a-1") == 0
    assert await store.bump_seqs({"a-1": 3}) == {"a-1": 3}
    assert await store.bump_seqs({"a-1": 2}) == {"a-1": 5}
    assert await store.bump_seqs({"a-2": 1}) == {"a-2": 1}
    assert (await store.get_seq("a-1"), await store.get_seq("a-2")) == (5, 1)


# --- offers --------------------------------------------------------------------------------------


async def test_an_offer_is_recorded_once_and_its_status_changes(store: SessionsStore) -> None:
    offer = Offer("o-1", "a-1", "c-1", "chat", EXPIRES, "general", "Ada", {"customer": {"name": "Ada"}})
    assert await store.receive_offer(offer, EXPIRES) is not None
    assert await store.receive_offer(Offer("o-1", "a-2", "c-9", "email", EXPIRES, "billing"), EXPIRES) is None
    assert await store.find_offer("o-1") == offer  # the first one stays
    assert await store.find_offer("o-9") is None
    await store.receive_offer(Offer("o-2", "a-1", "c-2", "chat", EXPIRES, "general"), EXPIRES)
    await store.receive_offer(Offer("o-3", "a-1", "c-3", "chat", EXPIRES, "general"), EXPIRES)
    await store.receive_offer(Offer("o-4", "a-2", "c-4", "chat", EXPIRES, "general"), EXPIRES)
    before = EXPIRES - timedelta(seconds=1)
    await store.answer_offer("o-1", "a-1", "accepted", before)
    await store.answer_offer("o-2", "a-1", "rejected", before)
    found = await store.find_offer("o-1")
    assert found is not None and found.status == "accepted"
    pending = await store.list_pending_offers("a-1")
    assert sorted(o.offer_id for o in pending) == ["o-1", "o-3"]  # pending or accepted, this agent's
    await store.assign(Assignment("c-1", "a-1", "chat"), "o-1", 0)
    found = await store.find_offer("o-1")
    assert found is not None and found.status == "assigned"
    assert sorted(o.offer_id for o in await store.list_pending_offers("a-1")) == ["o-3"]
    await store.withdraw_offer("o-3")
    assert await store.list_pending_offers("a-1") == []
    assert [o.offer_id for o in await store.list_pending_offers("a-2")] == ["o-4"]


# --- sessions ------------------------------------------------------------------------------------


async def test_sessions_open_close_and_reopen(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    session = await open_with_anchor(store, "a-1", "c-1")
    anchor = anchor_of(session)
    found = await store.find_session("a-1", "conv-c-1")
    assert found is not None
    assert (found.kind, found.title, found.icon, found.conversation_id, found.channel) == (
        "conversation",
        "Ada Lovelace",
        "Ad",
        "c-1",
        "chat",
    )
    assert (found.status, found.unread, found.focused_tab, found.record, found.pane, found.closed_at) == (
        "open",
        0,
        "anchor",
        None,
        {},
        None,
    )
    assert not await store.open_session(session, anchor)  # open already: not reopened, nothing changes
    assert await store.find_session("a-1", "conv-c-1") == found
    assert await store.list_tabs("a-1") == [anchor]
    elsewhere = conversation_session("a-2", "c-1")
    assert not await store.open_session(elsewhere, anchor_of(elsewhere))  # the conversation is open elsewhere
    assert await store.find_session("a-2", "conv-c-1") is None
    assert await store.list_tabs("a-2") == []
    held = await store.find_open_session("c-1")
    assert held is not None and (held.agent_id, held.session_id) == ("a-1", "conv-c-1")
    assert await store.count_open_sessions("a-1") == 1

    await store.close_session("a-1", "conv-c-1")
    closed = await store.find_session("a-1", "conv-c-1")
    assert closed is not None and closed.status == "closed" and closed.closed_at is not None
    assert await store.find_open_session("c-1") is None
    assert await store.count_open_sessions("a-1") == 0
    listed = {s.session_id: s.status for s in await store.list_sessions("a-1")}
    assert listed == {"home": "open", "conv-c-1": "closed"}  # closed today: still listed

    assert await store.open_session(session, anchor)
    reopened = await store.find_session("a-1", "conv-c-1")
    assert reopened is not None and (reopened.status, reopened.closed_at) == ("open", None)
    assert await store.count_open_sessions("a-1") == 1


async def test_a_session_does_not_reopen_while_its_conversation_is_open_elsewhere(store: SessionsStore) -> None:
    session = await open_with_anchor(store, "a-1", "c-1")
    await store.close_session("a-1", "conv-c-1")
    await open_with_anchor(store, "a-2", "c-1")
    with pytest.raises(Exception):  # noqa: B017 - PostgreSQL and the fake raise their own errors
        await store.open_session(session, anchor_of(session))


async def test_a_session_is_retitled_focused_and_fills_its_pane(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    record = {"type": "contact", "id": "42", "title": "Katherine Johnson"}
    await store.retitle_session("a-1", "conv-c-1", "Katherine Johnson", "Ka", record)
    await store.set_focused_tab("a-1", "conv-c-1", "kb-1")
    assert await pane_of(store, "c-1", {"summary": {"summary": "one"}}) == {"summary": {"summary": "one"}}
    await pane_of(store, "c-1", {"articles": {"articles": []}})
    pane = await pane_of(store, "c-1", {"summary": {"summary": "two"}})
    assert pane == {"summary": {"summary": "two"}, "articles": {"articles": []}}
    session = await store.find_session("a-1", "conv-c-1")
    assert session is not None
    assert (session.title, session.icon, session.record, session.focused_tab, session.pane) == (
        "Katherine Johnson",
        "Ka",
        record,
        "kb-1",
        pane,
    )


async def test_unread_counts_rise_and_clear(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    assert [await store.bump_unread("a-1", "conv-c-1") for _ in range(3)] == [1, 2, 3]
    await store.clear_unread("a-1", "conv-c-1")
    session = await store.find_session("a-1", "conv-c-1")
    assert session is not None and session.unread == 0
    assert await store.bump_unread("a-1", "conv-c-1") == 1


# --- tabs ----------------------------------------------------------------------------------------


async def test_tabs_insert_focus_count_and_delete(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    await open_with_anchor(store, "a-1", "c-2")
    kb = Tab("conv-c-1", "kb-1", "knowledge", "KB", False, {"query": "refund"})
    await store.insert_tab("a-1", kb)
    await store.insert_tab("a-1", Tab("conv-c-1", "customer-1", "customer"))
    assert await store.find_tab("a-1", "conv-c-1", "kb-1") == kb
    assert await store.find_tab("a-1", "conv-c-1", "nope") is None
    assert await store.find_tab("a-2", "conv-c-1", "kb-1") is None
    assert (await store.count_tabs("a-1", "conv-c-1"), await store.count_tabs("a-1", "conv-c-2")) == (3, 1)
    listed = await store.list_tabs("a-1")
    assert sorted((t.session_id, t.tab_id) for t in listed) == [
        ("conv-c-1", "anchor"),
        ("conv-c-1", "customer-1"),
        ("conv-c-1", "kb-1"),
        ("conv-c-2", "anchor"),
    ]
    anchor = next(t for t in listed if (t.session_id, t.tab_id) == ("conv-c-1", "anchor"))
    assert (anchor.kind, anchor.anchor, anchor.target) == ("conversation", True, {"conversation_id": "c-1"})
    customer = next(t for t in listed if t.tab_id == "customer-1")
    assert (customer.title, customer.anchor, customer.target) == (None, False, {})

    await store.delete_tab("a-1", "conv-c-1", "kb-1")
    assert await store.count_tabs("a-1", "conv-c-1") == 2
    await store.insert_tab("a-1", Tab("conv-c-1", "kb-2", "knowledge"))
    await store.forget_app_tabs("a-1", "conv-c-1")
    assert [t.tab_id for t in await store.list_tabs("a-1") if t.session_id == "conv-c-1"] == ["anchor"]
    assert await store.count_tabs("a-1", "conv-c-2") == 1


async def test_a_tab_needs_its_session_and_a_free_id(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    with pytest.raises(Exception):  # noqa: B017 - PostgreSQL and the fake raise their own errors
        await store.insert_tab("a-1", Tab("conv-c-1", "anchor", "conversation"))


async def test_a_tab_of_no_session_is_refused(store: SessionsStore) -> None:
    with pytest.raises(Exception):  # noqa: B017 - PostgreSQL and the fake raise their own errors
        await store.insert_tab("a-1", Tab("conv-c-9", "kb-1", "knowledge"))


# --- drafts --------------------------------------------------------------------------------------


async def test_drafts_are_versioned_and_follow_their_conversation(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await store.ensure_agent("a-2")
    assert await store.find_draft("conv:c-1:anchor") is None
    await store.upsert_draft(Draft("conv:c-1:anchor", "a-1", "conv-c-1", "anchor", "c-1", {"text": "Dear"}, 1))
    await store.upsert_draft(Draft("sess:a-1:rec-case-1:anchor", "a-1", "rec-case-1", "anchor", None, {"n": 1}, 1))
    draft = await store.find_draft("conv:c-1:anchor")
    assert draft is not None
    assert (draft.agent_id, draft.session_id, draft.tab_id, draft.conversation_id, draft.fields, draft.version) == (
        "a-1",
        "conv-c-1",
        "anchor",
        "c-1",
        {"text": "Dear"},
        1,
    )
    assert draft.updated_at is not None
    # another device (or the agent the conversation went to) saves version 2
    await store.upsert_draft(Draft("conv:c-1:anchor", "a-2", "conv-c-1", "anchor", "c-1", {"text": "Dear Ada"}, 2))
    draft = await store.find_draft("conv:c-1:anchor")
    assert draft is not None and (draft.agent_id, draft.fields, draft.version) == ("a-2", {"text": "Dear Ada"}, 2)
    # a-1 keeps its record session's draft; the conversation's follows whoever has it open
    assert [d.draft_key for d in await store.list_drafts("a-1")] == ["sess:a-1:rec-case-1:anchor"]
    assert [d.draft_key for d in await store.list_drafts("a-2")] == ["conv:c-1:anchor"]
    await open_with_anchor(store, "a-1", "c-1")
    assert sorted(d.draft_key for d in await store.list_drafts("a-1")) == [
        "conv:c-1:anchor",
        "sess:a-1:rec-case-1:anchor",
    ]
    await store.close_session("a-1", "conv-c-1")
    assert [d.draft_key for d in await store.list_drafts("a-1")] == ["sess:a-1:rec-case-1:anchor"]


# --- assignments ---------------------------------------------------------------------------------


async def test_an_assignment_is_upserted_and_released_by_its_holder_only(store: SessionsStore) -> None:
    assert await store.find_assignment("c-1") is None
    conversation = {"customer": {"name": "Ada"}}
    await store.assign(Assignment("c-1", "a-1", "chat", conversation), None, 0)
    assert await store.find_assignment("c-1") == Assignment("c-1", "a-1", "chat", conversation, False)
    await store.release_assignment("c-1", "a-2")  # not a-2's: nothing happens
    assert (await store.find_assignment("c-1")) == Assignment("c-1", "a-1", "chat", conversation, False)
    await store.release_assignment("c-1", "a-1")
    assert (await store.find_assignment("c-1")) == Assignment("c-1", "a-1", "chat", conversation, True)
    await store.assign(Assignment("c-1", "a-2", "email", {}, released=True), None, 0)  # one per conversation
    assert (await store.find_assignment("c-1")) == Assignment("c-1", "a-2", "email", {}, False)
    assert await store.list_assignments("a-1") == []


async def test_an_agents_assignments_are_listed_with_their_queue(store: SessionsStore) -> None:
    await store.assign(Assignment("c-2", "a-1", "chat", {}, queue="billing"), None, 0)
    await store.assign(Assignment("c-1", "a-1", "email", {}, queue="general"), None, 0)
    await store.assign(Assignment("c-3", "a-2", "chat", {}), None, 0)
    await store.assign(Assignment("c-4", "a-1", "chat", {}), None, 0)
    await store.release_assignment("c-4", "a-1")
    assert [(a.conversation_id, a.queue) for a in await store.list_assignments("a-1")] == [
        ("c-1", "general"),
        ("c-2", "billing"),
    ]
    assert await store.list_assignments("a-9") == []


# --- experience profiles -------------------------------------------------------------------------


async def test_profiles_are_stored_as_given_and_read_with_their_defaults(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    assert await store.find_profile("a-1") is None  # the default profile is not stored yet
    assert await store.find_profile("a-9") is None
    await store.upsert_profile("default", SessionProfile())
    tight = SessionProfile.model_validate({"max_tabs": 2, "offer_notifications": {"sound": "bell"}})
    await store.upsert_profile("tight", tight)
    assert await store.find_profile("a-1") == SessionProfile()
    await store.assign_profile("a-1", "tight")
    await store.assign_profile("a-2", "tight")  # an agent not seen yet
    for agent in ("a-1", "a-2"):
        profile = await store.find_profile(agent)
        assert profile is not None
        assert (profile.max_tabs, profile.max_sessions, profile.offer_notifications) == (
            2,
            10,
            OfferNotifications(show_timeout=True, sound="bell"),
        )
    assert {n: p.stored() for n, p in (await store.list_profiles()).items()} == {
        "default": {},
        "tight": {"max_tabs": 2, "offer_notifications": {"sound": "bell"}},
    }
    await store.upsert_profile("tight", SessionProfile(max_tabs=3))
    profile = await store.find_profile("a-1")
    assert profile is not None and (profile.max_tabs, profile.offer_notifications.sound) == (3, "chime")
    await store.assign_profile("a-1", "missing")
    assert await store.find_profile("a-1") is None
    assert list(await store.list_profiles()) == ["default", "tight"]


async def test_expiry_times_round_trip(store: SessionsStore) -> None:
    later = EXPIRES + timedelta(microseconds=123)
    await store.receive_offer(Offer("o-1", "a-1", "c-1", "chat", later, "general"), EXPIRES)
    found = await store.find_offer("o-1")
    assert found is not None and found.expires_at == later


# --- wrap-up -------------------------------------------------------------------------------------


async def test_a_close_keeps_its_wrap_up_until_the_session_reopens(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    await store.close_session("a-1", "conv-c-1", disposition="resolved", note="refunded", reason="forced")
    closed = await store.find_session("a-1", "conv-c-1")
    assert closed is not None and (closed.disposition, closed.note, closed.close_reason) == (
        "resolved",
        "refunded",
        "forced",
    )
    await store.close_session("a-1", "conv-c-1", disposition="spam")  # closed already: unchanged
    again = await store.find_session("a-1", "conv-c-1")
    assert again is not None and again.disposition == "resolved"
    session = conversation_session("a-1", "c-1")
    assert await store.open_session(session, anchor_of(session))
    reopened = await store.find_session("a-1", "conv-c-1")
    assert reopened is not None and (reopened.disposition, reopened.note, reopened.close_reason) == (None,) * 3


async def test_dispositions_are_replaced_as_a_whole_in_order(store: SessionsStore) -> None:
    assert await store.list_dispositions() == []
    await store.replace_dispositions([Disposition("spam", "Spam"), Disposition("resolved", "Resolved")])
    assert await store.list_dispositions() == [Disposition("spam", "Spam"), Disposition("resolved", "Resolved")]
    await store.replace_dispositions([Disposition("resolved", "Done")])
    assert await store.list_dispositions() == [Disposition("resolved", "Done")]
    await store.replace_dispositions([])
    assert await store.list_dispositions() == []


# --- presence ------------------------------------------------------------------------------------


async def test_the_agents_presence_is_kept_as_last_announced(store: SessionsStore) -> None:
    assert await store.find_presence("a-1") is None
    first = Presence("a-1", "available", "manual", EXPIRES, base="available", colour="green")
    await store.upsert_presences([first])
    assert await store.find_presence("a-1") == first
    later = Presence("a-1", "Lunch", "automatic", EXPIRES + timedelta(minutes=5), "away", ["voice"], None)
    await store.upsert_presences([later])
    assert await store.find_presence("a-1") == later
    assert await store.find_presence("a-2") is None


async def test_a_batchs_presences_and_arrivals_are_stored_together(store: SessionsStore) -> None:
    """One call per batch: several agents (new ones get their Home), several conversations (a repeated
    arrival keeps its first arrival time), in any order."""
    await store.upsert_presences([Presence("a-1", "available", "manual", EXPIRES)])
    b = Presence("b-2", "busy", "automatic", EXPIRES, base="busy", closed_channels=["chat", "voice"])
    a = Presence("a-1", "Lunch", "manual", EXPIRES + timedelta(minutes=1), "away", [], "#ff8800")
    await store.upsert_presences([b, a])
    assert (await store.find_presence("a-1"), await store.find_presence("b-2")) == (a, b)
    assert await store.find_focus("b-2") == "home" and await store.find_session("b-2", "home") is not None

    t0 = EXPIRES
    await store.upsert_waiting_work("c-1", "chat", "general", "waiting", t0)
    await store.upsert_waiting_work("c-2", "chat", "general", "waiting", t0 + timedelta(seconds=1))
    await store.upsert_conversations([ConversationInfo("c-2", "chat", t0, "Ada", 1)])
    await store.upsert_conversations(
        [
            ConversationInfo("c-2", "chat", t0 + timedelta(hours=1), "Ada Lovelace", 2),
            ConversationInfo("c-1", "chat", t0, None, 0),
        ]
    )
    assert await store.list_waiting_work(None) == [
        WaitingWork("c-2", "chat", "general", "waiting", t0 + timedelta(seconds=1), "Ada Lovelace", 2),
        WaitingWork("c-1", "chat", "general", "waiting", t0),
    ]


# --- transcripts ---------------------------------------------------------------------------------


def message(cid: str, mid: str, text: str = "hi", seconds: int = 0, **kw: object) -> Message:
    return Message(cid, mid, "customer", text, EXPIRES + timedelta(seconds=seconds), **kw)  # type: ignore[arg-type]


async def test_messages_are_stored_once_in_their_conversations_order(store: SessionsStore) -> None:
    first = await store.post_message(message("c-1", "m-1", sender_id="cust-1"))
    assert first == Posted(message("c-1", "m-1", sender_id="cust-1", ordinal=1), None, None)
    assert await store.post_message(message("c-1", "m-1", "again")) is None
    second = await store.post_message(
        Message(
            "c-1",
            "m-2",
            "agent",
            "Hello",
            EXPIRES,
            sender_id="a-1",
            visibility="internal",
            suggestion_id="s-1",
            command_id="cmd-1",
        )
    )
    assert second is not None and second.message.ordinal == 2
    other = await store.post_message(message("c-2", "m-1"))  # ids are per conversation
    assert other is not None and other.message.ordinal == 1
    stored = await store.list_messages_before("c-1", None, 10)
    assert stored == [
        message("c-1", "m-1", sender_id="cust-1", ordinal=1),
        Message("c-1", "m-2", "agent", "Hello", EXPIRES, "a-1", "internal", "s-1", "cmd-1", 2),
    ]


async def test_transcripts_are_read_newest_page_first(store: SessionsStore) -> None:
    for i in range(1, 8):
        await store.post_message(message("c-1", f"m-{i}", f"text {i}", i))
    await store.post_message(message("c-2", "x-1"))

    def ids(messages: list[Message]) -> list[str]:
        return [m.message_id for m in messages]

    assert ids(await store.list_messages_before("c-1", None, 3)) == ["m-5", "m-6", "m-7"]
    assert ids(await store.list_messages_before("c-1", "m-5", 3)) == ["m-2", "m-3", "m-4"]
    assert ids(await store.list_messages_before("c-1", "m-2", 3)) == ["m-1"]
    assert await store.list_messages_before("c-1", "m-1", 3) == []
    assert await store.list_messages_before("c-1", "x-1", 3) == []  # not a message of c-1
    assert await store.list_messages_before("c-9", None, 3) == []
    recent = await store.list_recent_messages(["c-2", "c-1", "c-9"], 2)
    assert {cid: ids(ms) for cid, ms in recent.items()} == {"c-1": ["m-6", "m-7"], "c-2": ["x-1"]}
    assert await store.list_recent_messages([], 2) == {}


async def test_an_agent_may_read_conversations_it_holds_or_held(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    assert await store.held_conversation("a-1", "c-1")
    assert not await store.held_conversation("a-2", "c-1")
    assert not await store.held_conversation("a-1", "c-2")
    await store.close_session("a-1", "conv-c-1")
    assert await store.held_conversation("a-1", "c-1")


# --- waiting work --------------------------------------------------------------------------------


async def test_waiting_work_follows_the_queues_with_its_arrivals_details(store: SessionsStore) -> None:
    t0 = EXPIRES
    await store.upsert_waiting_work("c-1", "chat", "general", "waiting", t0)
    await store.upsert_waiting_work("c-2", "email", "billing", None, t0 + timedelta(seconds=1))
    await store.upsert_conversations([ConversationInfo("c-2", "email", t0, "Invoice question", 5)])
    await store.upsert_conversations([ConversationInfo("c-3", "chat", t0, "Not queued", 9)])
    assert await store.list_waiting_work(None) == [
        WaitingWork("c-2", "email", "billing", "waiting", t0 + timedelta(seconds=1), "Invoice question", 5),
        WaitingWork("c-1", "chat", "general", "waiting", t0),
    ]
    # offered, re-announced (state kept), moved: it keeps waiting since it was first queued
    await store.upsert_waiting_work("c-1", "chat", "general", "offered", t0 + timedelta(seconds=5))
    await store.upsert_waiting_work("c-1", "chat", "general", None, t0 + timedelta(seconds=6))
    await store.move_waiting_work("c-1", "billing")
    await store.move_waiting_work("c-9", "billing")  # not waiting: nothing happens
    assert await store.list_waiting_work(["billing"]) == [
        WaitingWork("c-2", "email", "billing", "waiting", t0 + timedelta(seconds=1), "Invoice question", 5),
        WaitingWork("c-1", "chat", "billing", "offered", t0),
    ]
    assert await store.list_waiting_work(["general"]) == []
    assert await store.list_waiting_work([]) == []
    await store.upsert_conversations([ConversationInfo("c-2", "email", t0 + timedelta(hours=1), "Invoice", 1)])
    await store.assign(Assignment("c-1", "a-1", "chat"), None, 0)  # assigned: it waits no more
    assert await store.list_waiting_work(None) == [
        WaitingWork("c-2", "email", "billing", "waiting", t0 + timedelta(seconds=1), "Invoice", 1)
    ]
    await store.add_escalation("c-2", ["upset"])
    await store.forget_conversation("c-2")
    assert await store.list_waiting_work(None) == []
    assert await store.list_escalations() == {}


# --- supervisor actions and escalations ------------------------------------------------------------


async def test_supervisor_actions_are_listed_newest_first(store: SessionsStore) -> None:
    actions = [
        SupervisorAction("sup-1", "a-1", "observe", EXPIRES, "c-1", "conv-c-1", "sup-1 is observing Ada"),
        SupervisorAction("sup-1", "a-1", "whisper", EXPIRES, "c-1", "conv-c-1", "psst"),
        SupervisorAction("sup-2", "a-2", "set_presence", EXPIRES, None, None, "sup-2 set your status to away"),
    ]
    for action in actions:
        await store.insert_supervisor_action(action)
    assert await store.list_supervisor_actions(None, 10) == actions[::-1]
    assert await store.list_supervisor_actions("c-1", 10) == actions[1::-1]
    assert await store.list_supervisor_actions(None, 1) == actions[2:]
    assert await store.list_supervisor_actions("c-9", 10) == []


async def test_escalation_signals_accumulate_per_conversation(store: SessionsStore) -> None:
    assert await store.list_escalations() == {}
    assert await store.add_escalation("c-1", ["upset"]) == ["upset"]
    assert await store.add_escalation("c-1", ["upset", "asks_for_manager"]) == ["asks_for_manager", "upset"]
    assert await store.add_escalation("c-2", ["asks_for_manager", "asks_for_manager"]) == ["asks_for_manager"]
    assert await store.list_escalations() == {"c-1": ["asks_for_manager", "upset"], "c-2": ["asks_for_manager"]}


async def test_open_conversation_sessions_are_listed_for_every_agent(store: SessionsStore) -> None:
    for agent in ("a-2", "a-1"):
        await store.ensure_agent(agent)
    await open_with_anchor(store, "a-2", "c-3")
    await open_with_anchor(store, "a-1", "c-1")
    await open_with_anchor(store, "a-1", "c-2")
    await store.close_session("a-1", "conv-c-2")
    await store.open_session(
        Session("a-1", "rec-case-1", "record", "Case 1", "Ca"), Tab("rec-case-1", "anchor", "record")
    )
    listed = [(s.agent_id, s.session_id) for s in await store.list_open_conversation_sessions()]
    assert listed == [("a-1", "conv-c-1"), ("a-2", "conv-c-3")]


async def test_an_assignment_comes_with_its_conversations_escalation_signals(store: SessionsStore) -> None:
    assert (await store.assign(Assignment("c-1", "a-1", "chat"), None, 0)).signals == []
    await store.add_escalation("c-1", ["upset"])
    await store.add_escalation("c-1", ["asks_for_manager"])
    assert (await store.assign(Assignment("c-1", "a-2", "chat"), None, 0)).signals == ["asks_for_manager", "upset"]
    assert (await store.assign(Assignment("c-2", "a-2", "chat"), None, 0)).signals == []


async def test_assist_output_is_remembered_per_conversation_until_it_ends(store: SessionsStore) -> None:
    assert await said(store, "c-1") == {}
    for patch in ({"replies": {"replies": [1]}}, {"summary": {"summary": "a"}}, {"replies": {"replies": [2]}}):
        assert await store.merge_open_pane("c-1", patch, remember=True) is None  # held by nobody
    assert await said(store, "c-1") == {"replies": {"replies": [2]}, "summary": {"summary": "a"}}
    assert await said(store, "c-2") == {}
    await store.forget_conversation("c-1")
    assert await said(store, "c-1") == {}


# --- the hot path's combined statements (issue 13) ------------------------------------------------------


async def test_sequence_numbers_of_several_agents_are_reserved_at_once(store: SessionsStore) -> None:
    await store.bump_seqs({"a-2": 4})
    assert await store.bump_seqs({"a-2": 2, "a-1": 3}) == {"a-1": 3, "a-2": 6}
    assert await store.bump_seqs({}) == {}
    assert (await store.get_seq("a-1"), await store.get_seq("a-2")) == (3, 6)


async def test_a_received_offer_shows_the_work_offered_and_answers_the_agents_profile(store: SessionsStore) -> None:
    await store.upsert_profile("default", SessionProfile(max_tabs=7))
    await store.upsert_profile("quiet", SessionProfile(offer_notifications=OfferNotifications(sound="none")))
    await store.assign_profile("a-2", "quiet")
    await store.upsert_waiting_work("c-1", "chat", "general", "waiting", EXPIRES)
    offer = Offer("o-1", "a-1", "c-1", "chat", EXPIRES, "billing", "Ada", {"customer": {"name": "Ada"}})
    profile = await store.receive_offer(offer, EXPIRES + timedelta(seconds=5))
    assert profile == SessionProfile(max_tabs=7)  # a new agent has the default profile
    assert await store.find_offer("o-1") == offer
    assert await store.find_focus("a-1") == "home"  # the agent exists, with its Home
    home = await store.find_session("a-1", "home")
    assert home is not None and home.status == "open"
    [work] = await store.list_waiting_work(None)
    assert (work.queue, work.state, work.queued_at) == ("billing", "offered", EXPIRES)  # waiting since queued
    assert await store.receive_offer(offer, EXPIRES) is None  # recorded already
    quiet = await store.receive_offer(Offer("o-2", "a-2", "c-2", "chat", EXPIRES, "general"), EXPIRES)
    assert quiet is not None and quiet.offer_notifications.sound == "none"
    [new] = [w for w in await store.list_waiting_work(None) if w.conversation_id == "c-2"]
    assert (new.state, new.queued_at) == ("offered", EXPIRES)


async def test_only_the_agents_pending_unexpired_offer_is_answered(store: SessionsStore) -> None:
    await store.receive_offer(Offer("o-1", "a-1", "c-1", "chat", EXPIRES, "general"), EXPIRES)
    before = EXPIRES - timedelta(seconds=1)
    assert await store.answer_offer("o-1", "a-2", "accepted", before) is None  # not a-2's
    assert await store.answer_offer("o-1", "a-1", "accepted", EXPIRES) is None  # expired
    assert await store.answer_offer("o-9", "a-1", "accepted", before) is None
    found = await store.find_offer("o-1")
    assert found is not None and found.status == "pending"
    answered = await store.answer_offer("o-1", "a-1", "accepted", before)
    assert answered == Offer("o-1", "a-1", "c-1", "chat", EXPIRES, "general", status="accepted")
    assert await store.answer_offer("o-1", "a-1", "rejected", before) is None  # no longer pending


async def test_an_assignment_is_recorded_with_what_is_known_of_the_conversation(store: SessionsStore) -> None:
    await store.receive_offer(Offer("o-1", "a-2", "c-1", "chat", EXPIRES, "general"), EXPIRES)
    empty = await store.assign(Assignment("c-9", "a-2", "chat", queue="general"), None, 50)
    assert empty == Assigned(None, {}, [], [])
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    await store.merge_open_pane("c-1", {"summary": {"summary": "a"}}, remember=True)
    await store.add_escalation("c-1", ["upset"])
    for i in range(1, 4):
        await store.post_message(message("c-1", f"m-{i}", f"text {i}", seconds=i))
    held = await store.assign(Assignment("c-1", "a-2", "chat", {"customer": {}}, queue="general"), "o-1", 2)
    assert held.session is not None and (held.session.agent_id, held.session.session_id) == ("a-1", "conv-c-1")
    assert (held.said, held.signals) == ({"summary": {"summary": "a"}}, ["upset"])
    assert held.earlier == [message("c-1", f"m-{i}", f"text {i}", i, ordinal=i) for i in (2, 3)]
    offer = await store.find_offer("o-1")
    assert offer is not None and offer.status == "assigned"
    assert await store.list_waiting_work(None) == []
    assert await store.find_assignment("c-1") == Assignment("c-1", "a-2", "chat", {"customer": {}}, queue="general")
    assert await store.find_focus("a-2") == "home"  # the agent exists


async def test_a_session_opens_or_reopens_in_focus_with_its_anchor(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    session = conversation_session("a-1", "c-1")
    anchor = Tab(session.session_id, "anchor", "conversation", "Ada Lovelace", True, {"conversation_id": "c-1"})
    assert not await store.open_session(session, anchor)
    found = await store.find_session("a-1", "conv-c-1")
    assert found is not None and (found.status, found.focused_tab, found.title) == ("open", "anchor", "Ada Lovelace")
    assert await store.list_tabs("a-1") == [anchor]
    assert await store.find_focus("a-1") == "conv-c-1"
    await store.set_focused_tab("a-1", "conv-c-1", "kb-1")
    await store.set_focus("a-1", "home")
    closed = await store.close_session("a-1", "conv-c-1", disposition="resolved", note="done")
    assert closed is not None and (closed.status, closed.disposition, closed.note) == ("closed", "resolved", "done")
    assert await store.close_session("a-1", "conv-c-1") is None  # not open
    assert await store.open_session(session, anchor)  # reopened
    reopened = await store.find_session("a-1", "conv-c-1")
    assert reopened is not None
    assert (reopened.status, reopened.focused_tab, reopened.disposition) == ("open", "anchor", None)
    assert await store.list_tabs("a-1") == [anchor]  # the anchor once
    assert await store.find_focus("a-1") == "conv-c-1"


async def test_a_posted_message_comes_with_its_holder_and_the_holders_focus(store: SessionsStore) -> None:
    alone = await store.post_message(message("c-1", "m-1"))
    assert alone == Posted(message("c-1", "m-1", ordinal=1), None, None)
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    await store.set_focus("a-1", "conv-c-1")
    posted = await store.post_message(message("c-1", "m-2", seconds=1))
    assert posted is not None and posted.message == message("c-1", "m-2", seconds=1, ordinal=2)
    assert posted.session is not None and (posted.session.agent_id, posted.session.session_id) == ("a-1", "conv-c-1")
    assert posted.focus == "conv-c-1"
    assert await store.post_message(message("c-1", "m-2")) is None  # stored already


async def test_a_release_ends_the_waiting_and_presence_makes_the_agent(store: SessionsStore) -> None:
    await store.upsert_waiting_work("c-1", "chat", "general", "waiting", EXPIRES)
    await store.release_assignment("c-1", "a-1")  # held by nobody: the waiting ends all the same
    assert await store.list_waiting_work(None) == []
    await store.upsert_presences([Presence("a-1", "available", "manual", EXPIRES)])
    assert await store.find_focus("a-1") == "home"
    assert await store.find_session("a-1", "home") is not None


async def test_only_an_open_offer_is_withdrawn(store: SessionsStore) -> None:
    for offer_id in ("o-1", "o-2", "o-3"):
        await store.receive_offer(Offer(offer_id, "a-1", f"c-{offer_id}", "chat", EXPIRES, "general"), EXPIRES)
    before = EXPIRES - timedelta(seconds=1)
    await store.answer_offer("o-2", "a-1", "accepted", before)
    await store.answer_offer("o-3", "a-1", "rejected", before)
    withdrawn = await store.withdraw_offer("o-1")
    assert withdrawn is not None and (withdrawn.agent_id, withdrawn.status) == ("a-1", "withdrawn")
    assert await store.withdraw_offer("o-1") is None  # withdrawn already
    assert await store.withdraw_offer("o-2") is not None
    assert await store.withdraw_offer("o-3") is None
    assert await store.withdraw_offer("o-9") is None
    found = await store.find_offer("o-3")
    assert found is not None and found.status == "rejected"


async def test_closing_the_session_in_focus_gives_home_the_focus(store: SessionsStore) -> None:
    await store.ensure_agent("a-1")
    await open_with_anchor(store, "a-1", "c-1")
    await open_with_anchor(store, "a-1", "c-2")
    await store.set_focus("a-1", "conv-c-2")
    closed = await store.close_and_unfocus("a-1", "conv-c-1", disposition="resolved", note="n", reason="forced")
    assert closed is not None and not closed.unfocused  # c-2 has the focus: it stays there
    assert (closed.session.session_id, closed.session.conversation_id, closed.session.status) == (
        "conv-c-1",
        "c-1",
        "closed",
    )
    assert (closed.session.disposition, closed.session.note, closed.session.close_reason) == ("resolved", "n", "forced")
    assert await store.find_focus("a-1") == "conv-c-2"
    assert await store.close_and_unfocus("a-1", "conv-c-1") is None  # not open: nothing changes
    again = await store.close_and_unfocus("a-1", "conv-c-2")
    assert again is not None and again.unfocused
    assert await store.find_focus("a-1") == "home"
    assert await store.close_and_unfocus("a-9", "home") is None  # an agent never seen


async def test_a_pane_change_reaches_the_open_session_holding_the_conversation(store: SessionsStore) -> None:
    assert await store.merge_open_pane("c-1", {"summary": {"summary": "a"}}, remember=True) is None  # held by nobody
    assert await store.merge_open_pane("c-1", {"replies": {"replies": [1]}}) is None
    assert await said(store, "c-1") == {"summary": {"summary": "a"}}  # remembered only when asked
    await store.upsert_profile("tight", SessionProfile(pane_tools=["summary"]))
    await store.assign_profile("a-1", "tight")
    await open_with_anchor(store, "a-1", "c-1")
    change = await store.merge_open_pane("c-1", {"articles": {"articles": []}}, remember=True)
    assert change is not None
    assert (change.session.agent_id, change.session.session_id) == ("a-1", "conv-c-1")
    assert change.session.pane == {"articles": {"articles": []}}
    assert (change.tools, change.focused_kind) == (["summary"], "conversation")
    again = await store.merge_open_pane("c-1", {"summary": {"summary": "b"}})
    assert again is not None and again.session.pane == {"articles": {"articles": []}, "summary": {"summary": "b"}}
    assert await said(store, "c-1") == {"summary": {"summary": "a"}, "articles": {"articles": []}}
    await open_with_anchor(store, "a-2", "c-2")
    other = await store.merge_open_pane("c-2", {"summary": {}})
    assert other is not None and other.tools == list(SessionProfile().pane_tools)  # the defaults without a profile


async def test_a_batchs_statements_in_one_round_trip_answer_each_record_in_its_place(store: SessionsStore) -> None:
    """What runs ahead of a batch's handlers (`receive_offers`, `answer_offers`, `assign_many`,
    `open_sessions`, `close_and_unfocus_many`, `upsert_waiting_works`, `release_assignments`) answers as the one-by-one
    calls do, each in its input's place: nothing to answer included."""
    before = EXPIRES - timedelta(seconds=1)
    await store.upsert_waiting_works([])
    await store.upsert_waiting_works(
        [("c-1", "chat", "general", "waiting", EXPIRES), ("c-2", "chat", "vip", None, EXPIRES)]
    )
    assert {(w.conversation_id, w.queue, w.state) for w in await store.list_waiting_work(None)} == {
        ("c-1", "general", "waiting"),
        ("c-2", "vip", "waiting"),
    }
    await store.receive_offer(Offer("o-0", "a-3", "c-3", "chat", EXPIRES, "general"), EXPIRES)  # received before
    offers = [Offer(f"o-{i}", f"a-{i}", f"c-{i}", "chat", EXPIRES, "general") for i in (1, 0, 2)]
    profiles = await store.receive_offers([(o, EXPIRES) for o in offers])
    assert profiles == [SessionProfile(), None, SessionProfile()]  # o-0: recorded already
    assert {w.state for w in await store.list_waiting_work(None)} == {"offered"}

    answers = [
        ("o-1", "a-1", "accepted", before),
        ("o-2", "a-9", "accepted", before),
        ("o-0", "a-3", "accepted", before),
    ]
    answered = await store.answer_offers(answers)
    assert [o.offer_id if o else None for o in answered] == ["o-1", None, "o-0"]  # o-2 is not a-9's

    assignments = [(Assignment(f"c-{i}", f"a-{i}", "chat", queue="general"), f"o-{i}", 5) for i in (1, 2)]
    assert await store.assign_many(assignments) == [Assigned(None, {}, [], []), Assigned(None, {}, [], [])]
    assert {w.conversation_id for w in await store.list_waiting_work(None)} == {"c-0", "c-3"}  # c-1, c-2 taken
    first, second = conversation_session("a-1", "c-1"), conversation_session("a-2", "c-2")
    assert await store.open_sessions([(first, anchor_of(first)), (second, anchor_of(second))]) == [False, False]
    assert await store.find_focus("a-2") == second.session_id
    closes = [("a-1", first.session_id, "called back"), ("a-2", "conv-c-9", None), ("a-2", second.session_id, None)]
    closed = await store.close_and_unfocus_many(closes)
    assert [c.session.session_id if c else None for c in closed] == ["conv-c-1", None, "conv-c-2"]
    assert closed[0] is not None and closed[0].session.note == "called back" and closed[0].unfocused
    assert await store.find_focus("a-1") == "home"

    assert await store.open_sessions([(first, anchor_of(first))]) == [True]  # reopened
    await store.release_assignments([("c-1", "a-1"), ("c-2", "a-9")])  # c-2 is a-2's: still held
    assert (await store.list_assignments("a-1")) == []
    assert [a.conversation_id for a in await store.list_assignments("a-2")] == ["c-2"]
