"""sessions' state: the store interface, its PostgreSQL implementation (named queries in sql/) and an
in-memory fake for handler tests, with the same semantics (the contract suite runs both)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from sessions.config import SessionProfile
from sessions.domain import (
    HOME,
    Assigned,
    Assignment,
    Closed,
    ConversationInfo,
    Disposition,
    Draft,
    Message,
    Offer,
    PaneChange,
    Posted,
    Presence,
    Session,
    SupervisorAction,
    Tab,
    WaitingWork,
)
from shared.db import Conn, Queries, columns

Q = Queries("sessions")
# Closed sessions stay listed in the workspace this long.
CLOSED_KEPT = timedelta(days=1)


class StoreConflict(Exception):
    """The fake's counterpart of a constraint violation (PostgreSQL raises its own)."""


class SessionsStore(Protocol):
    # agents
    async def ensure_agent(self, agent_id: str) -> None:
        """The agent exists, with its Home session."""
        ...

    async def upsert_presences(self, presences: list[Presence]) -> None:
        """The agents' presences, one per agent (each agent, with its Home, exists from then on)."""
        ...

    async def find_presence(self, agent_id: str) -> Presence | None: ...

    async def next_visitor_number(self, agent_id: str) -> int | None:
        """The agent's next "Visitor N" number (None for an agent never seen)."""
        ...

    async def set_focus(self, agent_id: str, session_id: str) -> None: ...

    async def find_focus(self, agent_id: str) -> str | None: ...

    async def get_seq(self, agent_id: str) -> int:
        """The agent's last sequence number (0 before its first event)."""
        ...

    async def bump_seqs(self, counts: dict[str, int]) -> dict[str, int]:
        """Reserve `counts[agent]` sequence numbers for each agent's events, locking the agents in sorted
        order; returns each agent's last one."""
        ...

    # offers
    async def find_offer(self, offer_id: str) -> Offer | None: ...

    async def receive_offer(self, offer: Offer, queued_at: datetime) -> SessionProfile | None:
        """work.offered: the agent (with its Home) exists, the work shows as offered since `queued_at`
        (if it was not waiting already), the offer is recorded once. Returns the agent's profile when
        the offer is new (the defaults without one), None when it was recorded already."""
        ...

    async def answer_offer(self, offer_id: str, agent_id: str, status: str, now: datetime) -> Offer | None:
        """The agent's offer, pending and not expired at `now`, takes `status`; returns it (None when
        there is no such offer: nothing changed)."""
        ...

    async def withdraw_offer(self, offer_id: str) -> Offer | None:
        """A pending or accepted offer is withdrawn; returns it (None when there is no such offer open)."""
        ...

    async def list_pending_offers(self, agent_id: str) -> list[Offer]:
        """Offers pending or accepted (not yet assigned), oldest first."""
        ...

    # sessions
    async def open_session(self, session: Session, anchor: Tab) -> bool:
        """Reopen the closed session (its wrap-up cleared) or insert it with its `anchor` tab (nothing when
        it is open, or its conversation is open elsewhere); either way the anchor has the session's focus
        and the session the agent's. True when it was reopened."""
        ...

    async def find_session(self, agent_id: str, session_id: str) -> Session | None: ...

    async def find_open_session(self, conversation_id: str) -> Session | None:
        """The one open session holding the conversation, whoever's it is."""
        ...

    async def list_sessions(self, agent_id: str) -> list[Session]:
        """Open sessions and those closed within a day, oldest first."""
        ...

    async def count_open_sessions(self, agent_id: str) -> int:
        """Open sessions other than Home."""
        ...

    async def list_open_conversation_sessions(self) -> list[Session]:
        """Every agent's open conversation sessions, by agent, oldest first."""
        ...

    async def close_session(
        self,
        agent_id: str,
        session_id: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> Session | None:
        """Close an open session, with the wrap-up (disposition, note) and why, if not the agent's choice;
        returns it closed (None when it was not open)."""
        ...

    async def close_and_unfocus(
        self,
        agent_id: str,
        session_id: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> Closed | None:
        """`close_session`, and Home takes the agent's focus if the closed session had it."""
        ...

    async def retitle_session(
        self, agent_id: str, session_id: str, title: str, icon: str, record: dict[str, Any] | None
    ) -> None: ...

    async def set_focused_tab(self, agent_id: str, session_id: str, tab_id: str) -> None: ...

    async def bump_unread(self, agent_id: str, session_id: str) -> int: ...

    async def clear_unread(self, agent_id: str, session_id: str) -> None: ...

    async def merge_open_pane(
        self, conversation_id: str, patch: dict[str, Any], *, remember: bool = False
    ) -> PaneChange | None:
        """Replace the tools named in `patch` in the pane of the open session holding the conversation
        (and, when `remember`, in what the conversation keeps of assist's latest outputs, for `assign`);
        returns that session with its whole pane, its agent's pane tools and its focused tab's kind (None
        when no session holds the conversation)."""
        ...

    # tabs
    async def insert_tab(self, agent_id: str, tab: Tab) -> None: ...

    async def find_tab(self, agent_id: str, session_id: str, tab_id: str) -> Tab | None: ...

    async def list_tabs(self, agent_id: str) -> list[Tab]: ...

    async def count_tabs(self, agent_id: str, session_id: str) -> int: ...

    async def delete_tab(self, agent_id: str, session_id: str, tab_id: str) -> None: ...

    async def forget_app_tabs(self, agent_id: str, session_id: str) -> None:
        """Delete a session's tabs but its anchor."""
        ...

    # drafts
    async def find_draft(self, draft_key: str) -> Draft | None: ...

    async def upsert_draft(self, draft: Draft) -> None: ...

    async def list_drafts(self, agent_id: str) -> list[Draft]:
        """The agent's drafts and those of the conversations in its open sessions."""
        ...

    # assignments
    async def find_assignment(self, conversation_id: str) -> Assignment | None: ...

    async def release_assignment(self, conversation_id: str, agent_id: str) -> None:
        """Released, if that agent still holds it; the conversation's work no longer waits either way."""
        ...

    async def assign(self, assignment: Assignment, offer_id: str | None, earlier: int) -> Assigned:
        """work.assigned: the agent (with its Home) exists, its offer is assigned, the work no longer
        waits, the conversation is now held by `assignment.agent_id` (not released, whoever held it);
        returns the conversation's open session, what assist said of it, its escalation signals and its
        newest `earlier` messages."""
        ...

    async def list_assignments(self, agent_id: str) -> list[Assignment]:
        """The conversations the agent holds (not released), by conversation id."""
        ...

    # transcripts
    async def post_message(self, message: Message) -> Posted | None:
        """Store a message as its conversation's next one (`ordinal` set), with the open session holding
        the conversation and its agent's focus; None when it was stored already."""
        ...

    async def list_recent_messages(self, conversation_ids: list[str], limit: int) -> dict[str, list[Message]]:
        """The newest `limit` messages of each conversation (those with any), oldest first."""
        ...

    async def list_messages_before(
        self, conversation_id: str, before_message_id: str | None, limit: int
    ) -> list[Message]:
        """The newest `limit` messages older than `before_message_id` (of all, when None), oldest first;
        none when `before_message_id` is not one of the conversation's messages."""
        ...

    async def held_conversation(self, agent_id: str, conversation_id: str) -> bool:
        """The agent holds or held a session on the conversation."""
        ...

    # conversations waiting in queues
    async def upsert_conversations(self, infos: list[ConversationInfo]) -> None:
        """What the arrivals said, one per conversation (a repeated arrival updates all but the
        arrival time)."""
        ...

    async def forget_conversation(self, conversation_id: str) -> None:
        """The conversation ended: its arrival, waiting work, escalation flags and pane go."""
        ...

    async def upsert_waiting_work(
        self, conversation_id: str, channel: str, queue: str, state: str | None, queued_at: datetime
    ) -> None:
        """Waiting (or offered) in `queue`; `queued_at` only counts when it was not waiting already;
        state None keeps the current state (a new item waits)."""
        ...

    async def move_waiting_work(self, conversation_id: str, queue: str) -> None:
        """Overflowed to another queue (if it is waiting)."""
        ...

    async def list_waiting_work(self, queues: list[str] | None) -> list[WaitingWork]:
        """Waiting and offered work of `queues` (all when None): highest priority, then longest waiting first."""
        ...

    # wrap-up, supervisor actions, escalations
    async def replace_dispositions(self, dispositions: list[Disposition]) -> None: ...

    async def list_dispositions(self) -> list[Disposition]:
        """In the configuration's order."""
        ...

    async def insert_supervisor_action(self, action: SupervisorAction) -> None: ...

    async def list_supervisor_actions(self, conversation_id: str | None, limit: int) -> list[SupervisorAction]:
        """The newest first, of one conversation or of all."""
        ...

    async def add_escalation(self, conversation_id: str, signals: list[str]) -> list[str]:
        """Add signals to the conversation's; returns all seen so far, sorted."""
        ...

    async def list_escalations(self) -> dict[str, list[str]]: ...

    # experience profiles
    async def upsert_profile(self, name: str, profile: SessionProfile) -> None: ...

    async def assign_profile(self, agent_id: str, name: str) -> None: ...

    async def find_profile(self, agent_id: str) -> SessionProfile | None:
        """The agent's profile, None for an agent without one stored."""
        ...

    async def list_profiles(self) -> dict[str, SessionProfile]: ...

    # several records' statements in one round trip, each answered in its input's place (run ahead of
    # a batch's handlers: the records' offers, conversations and sessions are distinct)
    async def receive_offers(self, offers: Sequence[tuple[Offer, datetime]]) -> list[SessionProfile | None]: ...
    async def answer_offers(self, answers: Sequence[tuple[str, str, str, datetime]]) -> list[Offer | None]: ...
    async def close_and_unfocus_many(self, closes: Sequence[tuple[str, str, str | None]]) -> list[Closed | None]:
        """(agent, session, note): confirmed closes without a disposition."""
        ...

    async def assign_many(self, assignments: Sequence[tuple[Assignment, str | None, int]]) -> list[Assigned]: ...
    async def open_sessions(self, opens: Sequence[tuple[Session, Tab]]) -> list[bool]: ...
    async def upsert_waiting_works(self, works: Sequence[tuple[str, str, str, str | None, datetime]]) -> None: ...
    async def release_assignments(self, releases: Sequence[tuple[str, str]]) -> None: ...


class PgSessionsStore:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def ensure_agent(self, agent_id: str) -> None:
        await self.conn.execute(Q.ensure_agent, agent_id)

    async def upsert_presences(self, presences: list[Presence]) -> None:
        agents, statuses, bases, closed, colours, sources, since = columns(
            presences, "agent_id", "status", "base", "closed_channels", "colour", "source", "since"
        )
        closed = [orjson.dumps(channels).decode() for channels in closed]
        await self.conn.execute(Q.upsert_presences, agents, statuses, bases, closed, colours, sources, since)

    async def find_presence(self, agent_id: str) -> Presence | None:
        row = await self.conn.fetchrow(Q.get_presence, agent_id)
        return Presence(**dict(row)) if row else None

    async def next_visitor_number(self, agent_id: str) -> int | None:
        number: int | None = await self.conn.fetchval(Q.next_visitor_number, agent_id)
        return number

    async def set_focus(self, agent_id: str, session_id: str) -> None:
        await self.conn.execute(Q.set_focus, agent_id, session_id)

    async def find_focus(self, agent_id: str) -> str | None:
        focus: str | None = await self.conn.fetchval(Q.get_focus, agent_id)
        return focus

    async def get_seq(self, agent_id: str) -> int:
        return int(await self.conn.fetchval(Q.get_seq, agent_id) or 0)

    async def bump_seqs(self, counts: dict[str, int]) -> dict[str, int]:
        agents = sorted(counts)
        rows = await self.conn.fetch(Q.bump_seqs, agents, [counts[a] for a in agents])
        return {r["agent_id"]: int(r["seq"]) for r in rows}

    async def find_offer(self, offer_id: str) -> Offer | None:
        row = await self.conn.fetchrow(Q.get_offer, offer_id)
        return Offer(**dict(row)) if row else None

    async def receive_offer(self, offer: Offer, queued_at: datetime) -> SessionProfile | None:
        row = await self.conn.fetchrow(Q.receive_offer, *_offer_args(offer, queued_at))
        return None if row is None else SessionProfile.model_validate(row["settings"])

    async def receive_offers(self, offers: Sequence[tuple[Offer, datetime]]) -> list[SessionProfile | None]:
        rows = await self.conn.fetchmany(Q.receive_offer, [_offer_args(o, at) for o, at in offers])  # new ones
        new = {r["offer_id"]: SessionProfile.model_validate(r["settings"]) for r in rows}
        return [new.get(o.offer_id) for o, _ in offers]

    async def answer_offer(self, offer_id: str, agent_id: str, status: str, now: datetime) -> Offer | None:
        row = await self.conn.fetchrow(Q.answer_offer, offer_id, agent_id, status, now)
        return Offer(**dict(row)) if row else None

    async def answer_offers(self, answers: Sequence[tuple[str, str, str, datetime]]) -> list[Offer | None]:
        rows = await self.conn.fetchmany(Q.answer_offer, answers)  # the offers answered
        answered = {r["offer_id"]: Offer(**dict(r)) for r in rows}
        return [answered.get(offer_id) for offer_id, *_ in answers]

    async def withdraw_offer(self, offer_id: str) -> Offer | None:
        row = await self.conn.fetchrow(Q.withdraw_offer, offer_id)
        return Offer(**dict(row)) if row else None

    async def list_pending_offers(self, agent_id: str) -> list[Offer]:
        return [Offer(**dict(r)) for r in await self.conn.fetch(Q.list_pending_offers, agent_id)]

    async def open_session(self, session: Session, anchor: Tab) -> bool:
        return bool(await self.conn.fetchval(Q.open_session, *_open_args(session, anchor)))

    async def open_sessions(self, opens: Sequence[tuple[Session, Tab]]) -> list[bool]:
        rows = await self.conn.fetchmany(Q.open_session, [_open_args(s, anchor) for s, anchor in opens])
        assert len(rows) == len(opens)  # the query always answers one row
        return [bool(r[0]) for r in rows]

    async def find_session(self, agent_id: str, session_id: str) -> Session | None:
        row = await self.conn.fetchrow(Q.get_session, agent_id, session_id)
        return Session(**dict(row)) if row else None

    async def find_open_session(self, conversation_id: str) -> Session | None:
        row = await self.conn.fetchrow(Q.find_open_session_by_conversation, conversation_id)
        return Session(**dict(row)) if row else None

    async def list_sessions(self, agent_id: str) -> list[Session]:
        return [Session(**dict(r)) for r in await self.conn.fetch(Q.list_sessions, agent_id)]

    async def count_open_sessions(self, agent_id: str) -> int:
        return int(await self.conn.fetchval(Q.count_open_sessions, agent_id))

    async def list_open_conversation_sessions(self) -> list[Session]:
        return [Session(**dict(r)) for r in await self.conn.fetch(Q.list_open_conversation_sessions)]

    async def close_session(
        self,
        agent_id: str,
        session_id: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> Session | None:
        row = await self.conn.fetchrow(Q.close_session, agent_id, session_id, disposition, note, reason)
        return Session(**dict(row)) if row else None

    async def close_and_unfocus(
        self,
        agent_id: str,
        session_id: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> Closed | None:
        row = await self.conn.fetchrow(Q.close_and_unfocus, agent_id, session_id, disposition, note, reason)
        return None if row is None else _closed(row)

    async def close_and_unfocus_many(self, closes: Sequence[tuple[str, str, str | None]]) -> list[Closed | None]:
        rows = await self.conn.fetchmany(Q.close_and_unfocus, [(a, s, None, note, None) for a, s, note in closes])
        closed = {(c.session.agent_id, c.session.session_id): c for c in map(_closed, rows)}
        return [closed.get((agent_id, session_id)) for agent_id, session_id, _ in closes]

    async def retitle_session(
        self, agent_id: str, session_id: str, title: str, icon: str, record: dict[str, Any] | None
    ) -> None:
        await self.conn.execute(Q.retitle_session, agent_id, session_id, title, icon, record)

    async def set_focused_tab(self, agent_id: str, session_id: str, tab_id: str) -> None:
        await self.conn.execute(Q.set_focused_tab, agent_id, session_id, tab_id)

    async def bump_unread(self, agent_id: str, session_id: str) -> int:
        return int(await self.conn.fetchval(Q.bump_unread, agent_id, session_id))

    async def clear_unread(self, agent_id: str, session_id: str) -> None:
        await self.conn.execute(Q.clear_unread, agent_id, session_id)

    async def merge_open_pane(
        self, conversation_id: str, patch: dict[str, Any], *, remember: bool = False
    ) -> PaneChange | None:
        row = await self.conn.fetchrow(Q.merge_open_pane, conversation_id, patch, remember)
        if row is None:
            return None
        found = dict(row)
        settings, focused_kind = found.pop("settings"), found.pop("focused_kind")
        tools = SessionProfile.model_validate(settings or {}).pane_tools
        return PaneChange(Session(**found), list(tools), focused_kind)

    async def insert_tab(self, agent_id: str, tab: Tab) -> None:
        await self.conn.execute(
            Q.insert_tab, agent_id, tab.session_id, tab.tab_id, tab.kind, tab.title, tab.anchor, tab.target
        )

    async def find_tab(self, agent_id: str, session_id: str, tab_id: str) -> Tab | None:
        row = await self.conn.fetchrow(Q.get_tab, agent_id, session_id, tab_id)
        return Tab(**dict(row)) if row else None

    async def list_tabs(self, agent_id: str) -> list[Tab]:
        return [Tab(**dict(r)) for r in await self.conn.fetch(Q.list_tabs, agent_id)]

    async def count_tabs(self, agent_id: str, session_id: str) -> int:
        return int(await self.conn.fetchval(Q.count_tabs, agent_id, session_id))

    async def delete_tab(self, agent_id: str, session_id: str, tab_id: str) -> None:
        await self.conn.execute(Q.delete_tab, agent_id, session_id, tab_id)

    async def forget_app_tabs(self, agent_id: str, session_id: str) -> None:
        await self.conn.execute(Q.forget_app_tabs, agent_id, session_id)

    async def find_draft(self, draft_key: str) -> Draft | None:
        row = await self.conn.fetchrow(Q.get_draft, draft_key)
        return Draft(**dict(row)) if row else None

    async def upsert_draft(self, draft: Draft) -> None:
        d = draft
        await self.conn.execute(
            Q.upsert_draft, d.draft_key, d.agent_id, d.session_id, d.tab_id, d.conversation_id, d.fields, d.version
        )

    async def list_drafts(self, agent_id: str) -> list[Draft]:
        return [Draft(**dict(r)) for r in await self.conn.fetch(Q.list_drafts, agent_id)]

    async def find_assignment(self, conversation_id: str) -> Assignment | None:
        row = await self.conn.fetchrow(Q.get_assignment, conversation_id)
        return Assignment(**dict(row)) if row else None

    async def release_assignment(self, conversation_id: str, agent_id: str) -> None:
        await self.conn.execute(Q.release_assignment, conversation_id, agent_id)

    async def release_assignments(self, releases: Sequence[tuple[str, str]]) -> None:
        await self.conn.executemany(Q.release_assignment, releases)

    async def assign(self, assignment: Assignment, offer_id: str | None, earlier: int) -> Assigned:
        row = await self.conn.fetchrow(Q.assign, *_assign_args(assignment, offer_id, earlier))
        assert row is not None  # the query always answers one row
        return _assigned(row)

    async def assign_many(self, assignments: Sequence[tuple[Assignment, str | None, int]]) -> list[Assigned]:
        rows = await self.conn.fetchmany(Q.assign, [_assign_args(*a) for a in assignments])
        assert len(rows) == len(assignments)  # the query always answers one row
        return [_assigned(r) for r in rows]

    async def list_assignments(self, agent_id: str) -> list[Assignment]:
        return [Assignment(**dict(r)) for r in await self.conn.fetch(Q.list_assignments, agent_id)]

    async def post_message(self, message: Message) -> Posted | None:
        m = message
        row = await self.conn.fetchrow(
            Q.post_message,
            m.conversation_id,
            m.message_id,
            m.sender,
            m.sender_id,
            m.visibility,
            m.text,
            m.time,
            m.suggestion_id,
            m.command_id,
        )
        if row is None:
            return None
        found = dict(row)
        stored, focus = replace(m, ordinal=found.pop("ordinal")), found.pop("focus")
        return Posted(stored, Session(**found) if found["session_id"] is not None else None, focus)

    async def list_recent_messages(self, conversation_ids: list[str], limit: int) -> dict[str, list[Message]]:
        recent: dict[str, list[Message]] = {}
        for r in await self.conn.fetch(Q.list_recent_messages, conversation_ids, limit):
            recent.setdefault(r["conversation_id"], []).append(Message(**dict(r)))
        return recent

    async def list_messages_before(
        self, conversation_id: str, before_message_id: str | None, limit: int
    ) -> list[Message]:
        rows = await self.conn.fetch(Q.list_messages_before, conversation_id, before_message_id, limit)
        return [Message(**dict(r)) for r in rows]

    async def held_conversation(self, agent_id: str, conversation_id: str) -> bool:
        return bool(await self.conn.fetchval(Q.held_conversation, agent_id, conversation_id))

    async def upsert_conversations(self, infos: list[ConversationInfo]) -> None:
        fields = ("conversation_id", "channel", "title", "priority", "arrived_at")
        await self.conn.execute(Q.upsert_conversations, *columns(infos, *fields))

    async def forget_conversation(self, conversation_id: str) -> None:
        await self.conn.execute(Q.forget_conversation, conversation_id)

    async def upsert_waiting_work(
        self, conversation_id: str, channel: str, queue: str, state: str | None, queued_at: datetime
    ) -> None:
        await self.conn.execute(Q.upsert_waiting_work, conversation_id, channel, queue, state, queued_at)

    async def upsert_waiting_works(self, works: Sequence[tuple[str, str, str, str | None, datetime]]) -> None:
        await self.conn.executemany(Q.upsert_waiting_work, works)

    async def move_waiting_work(self, conversation_id: str, queue: str) -> None:
        await self.conn.execute(Q.move_waiting_work, conversation_id, queue)

    async def list_waiting_work(self, queues: list[str] | None) -> list[WaitingWork]:
        return [WaitingWork(**dict(r)) for r in await self.conn.fetch(Q.list_waiting_work, queues)]

    async def replace_dispositions(self, dispositions: list[Disposition]) -> None:
        await self.conn.execute(Q.delete_dispositions)
        await self.conn.executemany(
            Q.insert_disposition, [(d.code, d.label, position) for position, d in enumerate(dispositions)]
        )

    async def list_dispositions(self) -> list[Disposition]:
        return [Disposition(**dict(r)) for r in await self.conn.fetch(Q.list_dispositions)]

    async def insert_supervisor_action(self, action: SupervisorAction) -> None:
        a = action
        await self.conn.execute(
            Q.insert_supervisor_action,
            a.supervisor_id,
            a.agent_id,
            a.action,
            a.conversation_id,
            a.session_id,
            a.detail,
            a.time,
        )

    async def list_supervisor_actions(self, conversation_id: str | None, limit: int) -> list[SupervisorAction]:
        rows = await self.conn.fetch(Q.list_supervisor_actions, conversation_id, limit)
        return [SupervisorAction(**dict(r)) for r in rows]

    async def add_escalation(self, conversation_id: str, signals: list[str]) -> list[str]:
        return list(await self.conn.fetchval(Q.add_escalation, conversation_id, signals))

    async def list_escalations(self) -> dict[str, list[str]]:
        return {r["conversation_id"]: list(r["signals"]) for r in await self.conn.fetch(Q.list_escalations)}

    async def upsert_profile(self, name: str, profile: SessionProfile) -> None:
        await self.conn.execute(Q.upsert_profile, name, profile.stored())

    async def assign_profile(self, agent_id: str, name: str) -> None:
        await self.conn.execute(Q.assign_profile, agent_id, name)

    async def find_profile(self, agent_id: str) -> SessionProfile | None:
        settings = await self.conn.fetchval(Q.get_profile, agent_id)
        return None if settings is None else SessionProfile.model_validate(settings)

    async def list_profiles(self) -> dict[str, SessionProfile]:
        rows = await self.conn.fetch(Q.list_profiles)
        return {r["name"]: SessionProfile.model_validate(r["settings"]) for r in rows}


def _now() -> datetime:
    return datetime.now(UTC)


def _message(doc: dict[str, Any]) -> Message:
    """A message read as JSON (its time an ISO string in the session's time zone)."""
    return Message(**{**doc, "time": datetime.fromisoformat(doc["time"]).astimezone(UTC)})


def _offer_args(o: Offer, queued_at: datetime) -> tuple[Any, ...]:
    return (o.offer_id, o.agent_id, o.conversation_id, o.channel, o.queue, o.title, o.conversation, o.status,
            o.expires_at, queued_at)  # fmt: skip


def _open_args(s: Session, anchor: Tab) -> tuple[Any, ...]:
    return (s.agent_id, s.session_id, s.kind, s.conversation_id, s.channel, s.title, s.icon, anchor.tab_id,
            anchor.kind, anchor.target, anchor.title)  # fmt: skip


def _closed(row: Any) -> Closed:
    found = dict(row)
    unfocused = found.pop("unfocused")
    return Closed(Session(**found), unfocused)


def _assign_args(a: Assignment, offer_id: str | None, earlier: int) -> tuple[Any, ...]:
    return (a.conversation_id, a.agent_id, a.channel, a.conversation, a.queue, offer_id, earlier)


def _assigned(row: Any) -> Assigned:
    found = dict(row)
    said, signals, messages = found.pop("said"), found.pop("signals"), found.pop("earlier")
    session = Session(**found) if found["session_id"] is not None else None
    return Assigned(session, said or {}, list(signals or []), [_message(m) for m in messages or []])


class FakeSessionsStore:
    """The store in plain dicts (MemoryDatabase copies `vars(self)` to roll transactions back)."""

    def __init__(self) -> None:
        # agent_id -> {"focused_session", "presence", "visitor_counter", "profile"}
        self.agents: dict[str, dict[str, Any]] = {}
        self.seq: dict[str, int] = {}
        self.offers: dict[str, Offer] = {}
        self.sessions: dict[tuple[str, str], Session] = {}
        self.tabs: dict[tuple[str, str, str], Tab] = {}
        self.drafts: dict[str, Draft] = {}
        self.assignments: dict[str, Assignment] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.presence: dict[str, Presence] = {}
        self.messages: dict[str, list[Message]] = {}
        self.conversations: dict[str, ConversationInfo] = {}
        self.waiting: dict[str, WaitingWork] = {}
        self.dispositions: list[Disposition] = []
        self.supervisor_actions: list[SupervisorAction] = []
        self.escalations: dict[str, list[str]] = {}
        self.conversation_panes: dict[str, dict[str, Any]] = {}

    async def ensure_agent(self, agent_id: str) -> None:
        self.agents.setdefault(agent_id, self._agent())
        if (agent_id, HOME) not in self.sessions:
            self.sessions[(agent_id, HOME)] = Session(agent_id, HOME, "home", "Home", "Ho", opened_at=_now())

    @staticmethod
    def _agent(profile: str = "default") -> dict[str, Any]:
        return {"focused_session": HOME, "visitor_counter": 0, "profile": profile}

    async def upsert_presences(self, presences: list[Presence]) -> None:
        for presence in presences:
            await self.ensure_agent(presence.agent_id)
            self.presence[presence.agent_id] = replace(presence, closed_channels=list(presence.closed_channels))

    async def find_presence(self, agent_id: str) -> Presence | None:
        return self.presence.get(agent_id)

    async def next_visitor_number(self, agent_id: str) -> int | None:
        if agent_id not in self.agents:
            return None
        self.agents[agent_id]["visitor_counter"] += 1
        return int(self.agents[agent_id]["visitor_counter"])

    async def set_focus(self, agent_id: str, session_id: str) -> None:
        if agent_id in self.agents:
            self.agents[agent_id]["focused_session"] = session_id

    async def find_focus(self, agent_id: str) -> str | None:
        agent = self.agents.get(agent_id)
        return agent["focused_session"] if agent else None

    async def get_seq(self, agent_id: str) -> int:
        return self.seq.get(agent_id, 0)

    async def bump_seqs(self, counts: dict[str, int]) -> dict[str, int]:
        for agent_id in sorted(counts):
            self.seq[agent_id] = self.seq.get(agent_id, 0) + counts[agent_id]
        return {agent_id: self.seq[agent_id] for agent_id in sorted(counts)}

    async def find_offer(self, offer_id: str) -> Offer | None:
        return self.offers.get(offer_id)

    async def receive_offer(self, offer: Offer, queued_at: datetime) -> SessionProfile | None:
        profile = self.agents[offer.agent_id]["profile"] if offer.agent_id in self.agents else "default"
        await self.ensure_agent(offer.agent_id)
        await self.upsert_waiting_work(offer.conversation_id, offer.channel, offer.queue or "", "offered", queued_at)
        if offer.offer_id in self.offers:
            return None
        self.offers[offer.offer_id] = offer
        return SessionProfile.model_validate(self.profiles.get(profile, {}))

    async def answer_offer(self, offer_id: str, agent_id: str, status: str, now: datetime) -> Offer | None:
        offer = self.offers.get(offer_id)
        if offer is None or offer.agent_id != agent_id or offer.status != "pending" or offer.expires_at <= now:
            return None
        self.offers[offer_id] = offer = replace(offer, status=status)
        return offer

    async def withdraw_offer(self, offer_id: str) -> Offer | None:
        offer = self.offers.get(offer_id)
        if offer is None or offer.status not in ("pending", "accepted"):
            return None
        self.offers[offer_id] = offer = replace(offer, status="withdrawn")
        return offer

    async def list_pending_offers(self, agent_id: str) -> list[Offer]:
        return [o for o in self.offers.values() if o.agent_id == agent_id and o.status in ("pending", "accepted")]

    async def open_session(self, session: Session, anchor: Tab) -> bool:
        key = (session.agent_id, session.session_id)
        old = self.sessions.get(key)
        reopened = False
        if old is not None and old.status == "closed":
            reopened = True
            if old.conversation_id and await self.find_open_session(old.conversation_id):
                raise StoreConflict(f"conversation {old.conversation_id} is open in another session")
            self.sessions[key] = replace(
                old,
                status="open",
                focused_tab=anchor.tab_id,
                closed_at=None,
                disposition=None,
                note=None,
                close_reason=None,
            )
        elif old is None and not (session.conversation_id and await self.find_open_session(session.conversation_id)):
            self.sessions[key] = replace(
                session,
                status="open",
                unread=0,
                focused_tab=anchor.tab_id,
                record=None,
                pane={},
                opened_at=_now(),
                closed_at=None,
                disposition=None,
                note=None,
                close_reason=None,
            )
            await self.insert_tab(session.agent_id, replace(anchor, session_id=session.session_id, anchor=True))
        await self.set_focus(session.agent_id, session.session_id)
        return reopened

    async def find_session(self, agent_id: str, session_id: str) -> Session | None:
        return self.sessions.get((agent_id, session_id))

    async def find_open_session(self, conversation_id: str) -> Session | None:
        return next(
            (s for s in self.sessions.values() if s.conversation_id == conversation_id and s.status == "open"), None
        )

    async def list_sessions(self, agent_id: str) -> list[Session]:
        since = _now() - CLOSED_KEPT
        return [
            s
            for s in self.sessions.values()
            if s.agent_id == agent_id and (s.status == "open" or (s.closed_at is not None and s.closed_at > since))
        ]

    async def list_open_conversation_sessions(self) -> list[Session]:
        open_ = (s for s in self.sessions.values() if s.status == "open" and s.conversation_id is not None)
        return sorted(open_, key=lambda s: (s.agent_id, s.opened_at or _now(), s.session_id))

    async def count_open_sessions(self, agent_id: str) -> int:
        return sum(
            1 for s in self.sessions.values() if s.agent_id == agent_id and s.status == "open" and s.kind != "home"
        )

    def _update(self, agent_id: str, session_id: str, **changes: Any) -> Session | None:
        session = self.sessions.get((agent_id, session_id))
        if session is None:
            return None
        self.sessions[(agent_id, session_id)] = session = replace(session, **changes)
        return session

    async def close_session(
        self,
        agent_id: str,
        session_id: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> Session | None:
        session = self.sessions.get((agent_id, session_id))
        if session is None or session.status != "open":
            return None
        return self._update(
            agent_id,
            session_id,
            status="closed",
            closed_at=_now(),
            disposition=disposition,
            note=note,
            close_reason=reason,
        )

    async def close_and_unfocus(
        self,
        agent_id: str,
        session_id: str,
        *,
        disposition: str | None = None,
        note: str | None = None,
        reason: str | None = None,
    ) -> Closed | None:
        closed = await self.close_session(agent_id, session_id, disposition=disposition, note=note, reason=reason)
        if closed is None:
            return None
        unfocused = await self.find_focus(agent_id) == session_id
        if unfocused:
            await self.set_focus(agent_id, HOME)
        return Closed(closed, unfocused)

    async def retitle_session(
        self, agent_id: str, session_id: str, title: str, icon: str, record: dict[str, Any] | None
    ) -> None:
        self._update(agent_id, session_id, title=title, icon=icon, record=record)

    async def set_focused_tab(self, agent_id: str, session_id: str, tab_id: str) -> None:
        self._update(agent_id, session_id, focused_tab=tab_id)

    async def bump_unread(self, agent_id: str, session_id: str) -> int:
        session = self.sessions[(agent_id, session_id)]
        self._update(agent_id, session_id, unread=session.unread + 1)
        return session.unread + 1

    async def clear_unread(self, agent_id: str, session_id: str) -> None:
        self._update(agent_id, session_id, unread=0)

    async def merge_open_pane(
        self, conversation_id: str, patch: dict[str, Any], *, remember: bool = False
    ) -> PaneChange | None:
        if remember:
            self.conversation_panes[conversation_id] = {**self.conversation_panes.get(conversation_id, {}), **patch}
        session = await self.find_open_session(conversation_id)
        if session is None:
            return None
        session = replace(session, pane={**session.pane, **patch})
        self.sessions[(session.agent_id, session.session_id)] = session
        profile = await self.find_profile(session.agent_id) or SessionProfile()
        tab = await self.find_tab(session.agent_id, session.session_id, session.focused_tab or "")
        return PaneChange(session, list(profile.pane_tools), tab.kind if tab else None)

    async def insert_tab(self, agent_id: str, tab: Tab) -> None:
        if (agent_id, tab.session_id) not in self.sessions:
            raise StoreConflict(f"no session {tab.session_id!r} for a tab")
        key = (agent_id, tab.session_id, tab.tab_id)
        if key in self.tabs:
            raise StoreConflict(f"tab {tab.tab_id!r} exists")
        self.tabs[key] = tab

    async def find_tab(self, agent_id: str, session_id: str, tab_id: str) -> Tab | None:
        return self.tabs.get((agent_id, session_id, tab_id))

    async def list_tabs(self, agent_id: str) -> list[Tab]:
        return [t for (a, _, _), t in self.tabs.items() if a == agent_id]

    async def count_tabs(self, agent_id: str, session_id: str) -> int:
        return sum(1 for a, s, _ in self.tabs if (a, s) == (agent_id, session_id))

    async def delete_tab(self, agent_id: str, session_id: str, tab_id: str) -> None:
        self.tabs.pop((agent_id, session_id, tab_id), None)

    async def forget_app_tabs(self, agent_id: str, session_id: str) -> None:
        for key, tab in list(self.tabs.items()):
            if key[:2] == (agent_id, session_id) and not tab.anchor:
                del self.tabs[key]

    async def find_draft(self, draft_key: str) -> Draft | None:
        return self.drafts.get(draft_key)

    async def upsert_draft(self, draft: Draft) -> None:
        old = self.drafts.get(draft.draft_key)
        if old is None:
            self.drafts[draft.draft_key] = replace(draft, updated_at=_now())
        else:  # the key names the tab and conversation: those never change
            self.drafts[draft.draft_key] = replace(
                old,
                agent_id=draft.agent_id,
                session_id=draft.session_id,
                fields=draft.fields,
                version=draft.version,
                updated_at=_now(),
            )

    async def list_drafts(self, agent_id: str) -> list[Draft]:
        mine = {s.conversation_id for s in self.sessions.values() if s.agent_id == agent_id and s.status == "open"} - {
            None
        }
        return [d for d in self.drafts.values() if d.agent_id == agent_id or d.conversation_id in mine]

    async def find_assignment(self, conversation_id: str) -> Assignment | None:
        return self.assignments.get(conversation_id)

    async def release_assignment(self, conversation_id: str, agent_id: str) -> None:
        held = self.assignments.get(conversation_id)
        if held is not None and held.agent_id == agent_id:
            self.assignments[conversation_id] = replace(held, released=True)
        self.waiting.pop(conversation_id, None)

    async def assign(self, assignment: Assignment, offer_id: str | None, earlier: int) -> Assigned:
        cid = assignment.conversation_id
        await self.ensure_agent(assignment.agent_id)
        if offer_id in self.offers:
            self.offers[offer_id] = replace(self.offers[offer_id], status="assigned")
        self.waiting.pop(cid, None)
        self.assignments[cid] = replace(assignment, released=False)
        return Assigned(
            await self.find_open_session(cid),
            dict(self.conversation_panes.get(cid, {})),
            list(self.escalations.get(cid, [])),
            await self.list_messages_before(cid, None, earlier),
        )

    async def list_assignments(self, agent_id: str) -> list[Assignment]:
        held = (a for a in self.assignments.values() if a.agent_id == agent_id and not a.released)
        return sorted(held, key=lambda a: a.conversation_id)

    async def post_message(self, message: Message) -> Posted | None:
        stored = self.messages.setdefault(message.conversation_id, [])
        if any(m.message_id == message.message_id for m in stored):
            return None
        message = replace(message, ordinal=len(stored) + 1)
        stored.append(message)
        session = await self.find_open_session(message.conversation_id)
        return Posted(message, session, await self.find_focus(session.agent_id) if session else None)

    async def list_recent_messages(self, conversation_ids: list[str], limit: int) -> dict[str, list[Message]]:
        return {
            cid: self.messages[cid][-limit:] if limit > 0 else []
            for cid in sorted(set(conversation_ids))
            if self.messages.get(cid) and limit > 0
        }

    async def list_messages_before(
        self, conversation_id: str, before_message_id: str | None, limit: int
    ) -> list[Message]:
        stored = self.messages.get(conversation_id, [])
        if before_message_id is not None:
            at = next((i for i, m in enumerate(stored) if m.message_id == before_message_id), None)
            if at is None:
                return []
            stored = stored[:at]
        return stored[max(0, len(stored) - limit) :] if limit > 0 else []

    async def held_conversation(self, agent_id: str, conversation_id: str) -> bool:
        return any(s.agent_id == agent_id and s.conversation_id == conversation_id for s in self.sessions.values())

    async def upsert_conversations(self, infos: list[ConversationInfo]) -> None:
        for info in infos:
            old = self.conversations.get(info.conversation_id)
            self.conversations[info.conversation_id] = replace(info, arrived_at=old.arrived_at) if old else info

    async def forget_conversation(self, conversation_id: str) -> None:
        for held in (self.conversations, self.waiting, self.escalations, self.conversation_panes):
            held.pop(conversation_id, None)

    async def upsert_waiting_work(
        self, conversation_id: str, channel: str, queue: str, state: str | None, queued_at: datetime
    ) -> None:
        old = self.waiting.get(conversation_id)
        self.waiting[conversation_id] = WaitingWork(
            conversation_id,
            channel,
            queue,
            state or (old.state if old else "waiting"),
            old.queued_at if old else queued_at,
        )

    async def move_waiting_work(self, conversation_id: str, queue: str) -> None:
        if conversation_id in self.waiting:
            self.waiting[conversation_id] = replace(self.waiting[conversation_id], queue=queue)

    async def list_waiting_work(self, queues: list[str] | None) -> list[WaitingWork]:
        work = []
        for w in self.waiting.values():
            if queues is not None and w.queue not in queues:
                continue
            info = self.conversations.get(w.conversation_id)
            work.append(replace(w, title=info.title, priority=info.priority) if info else w)
        return sorted(work, key=lambda w: (-w.priority, w.queued_at, w.conversation_id))

    async def replace_dispositions(self, dispositions: list[Disposition]) -> None:
        if len({d.code for d in dispositions}) != len(dispositions):
            raise StoreConflict("disposition codes repeat")
        self.dispositions = list(dispositions)

    async def list_dispositions(self) -> list[Disposition]:
        return list(self.dispositions)

    async def insert_supervisor_action(self, action: SupervisorAction) -> None:
        self.supervisor_actions.append(action)

    async def list_supervisor_actions(self, conversation_id: str | None, limit: int) -> list[SupervisorAction]:
        mine = [a for a in self.supervisor_actions if conversation_id is None or a.conversation_id == conversation_id]
        return mine[::-1][: max(limit, 0)]

    async def add_escalation(self, conversation_id: str, signals: list[str]) -> list[str]:
        self.escalations[conversation_id] = sorted({*self.escalations.get(conversation_id, []), *signals})
        return list(self.escalations[conversation_id])

    async def list_escalations(self) -> dict[str, list[str]]:
        return {cid: list(signals) for cid, signals in sorted(self.escalations.items())}

    async def upsert_profile(self, name: str, profile: SessionProfile) -> None:
        self.profiles[name] = profile.stored()

    async def assign_profile(self, agent_id: str, name: str) -> None:
        self.agents.setdefault(agent_id, self._agent())["profile"] = name

    async def find_profile(self, agent_id: str) -> SessionProfile | None:
        agent = self.agents.get(agent_id)
        if agent is None or agent["profile"] not in self.profiles:
            return None
        return SessionProfile.model_validate(self.profiles[agent["profile"]])

    async def list_profiles(self) -> dict[str, SessionProfile]:
        return {name: SessionProfile.model_validate(s) for name, s in sorted(self.profiles.items())}

    # one by one: the same answers as PgSessionsStore's single round trips
    async def receive_offers(self, offers: Sequence[tuple[Offer, datetime]]) -> list[SessionProfile | None]:
        return [await self.receive_offer(offer, at) for offer, at in offers]

    async def answer_offers(self, answers: Sequence[tuple[str, str, str, datetime]]) -> list[Offer | None]:
        return [await self.answer_offer(*answer) for answer in answers]

    async def close_and_unfocus_many(self, closes: Sequence[tuple[str, str, str | None]]) -> list[Closed | None]:
        return [await self.close_and_unfocus(agent_id, session_id, note=note) for agent_id, session_id, note in closes]

    async def assign_many(self, assignments: Sequence[tuple[Assignment, str | None, int]]) -> list[Assigned]:
        return [await self.assign(*a) for a in assignments]

    async def open_sessions(self, opens: Sequence[tuple[Session, Tab]]) -> list[bool]:
        return [await self.open_session(session, anchor) for session, anchor in opens]

    async def upsert_waiting_works(self, works: Sequence[tuple[str, str, str, str | None, datetime]]) -> None:
        for work in works:
            await self.upsert_waiting_work(*work)

    async def release_assignments(self, releases: Sequence[tuple[str, str]]) -> None:
        for conversation_id, agent_id in releases:
            await self.release_assignment(conversation_id, agent_id)
