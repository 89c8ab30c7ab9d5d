"""Workspace rules as plain functions: titles, icons, badges, what a command may do."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.contracts import icon_of

HOME = "home"
ANCHOR = "anchor"
UNREAD_BADGE_CAP = 9


@dataclass(frozen=True)
class Session:
    """One session of an agent's workspace: Home, a conversation's, or a record's."""

    agent_id: str
    session_id: str
    kind: str
    title: str
    icon: str
    conversation_id: str | None = None
    channel: str | None = None
    status: str = "open"
    unread: int = 0
    focused_tab: str | None = None
    record: dict[str, Any] | None = None
    pane: dict[str, Any] = field(default_factory=dict)
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    disposition: str | None = None
    note: str | None = None
    close_reason: str | None = None


@dataclass(frozen=True)
class Closed:
    """A session just closed; `unfocused` when it had the agent's focus (Home has it now)."""

    session: Session
    unfocused: bool


@dataclass(frozen=True)
class PaneChange:
    """A session's pane just changed: the session with its whole pane, the pane tools of its agent's
    profile and the kind of its focused tab."""

    session: Session
    tools: list[str]
    focused_kind: str | None = None


@dataclass(frozen=True)
class Tab:
    session_id: str
    tab_id: str
    kind: str
    title: str | None = None
    anchor: bool = False
    target: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Offer:
    offer_id: str
    agent_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    queue: str | None = None
    title: str | None = None
    conversation: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"


@dataclass(frozen=True)
class Draft:
    """A draft's fields and version; it lives with its conversation when the session has one."""

    draft_key: str
    agent_id: str
    session_id: str
    tab_id: str
    conversation_id: str | None
    fields: dict[str, Any]
    version: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Assignment:
    """Which agent holds a conversation (sessions' projection of routing's assignments)."""

    conversation_id: str
    agent_id: str
    channel: str
    conversation: dict[str, Any] = field(default_factory=dict)
    released: bool = False
    queue: str | None = None


@dataclass(frozen=True)
class Message:
    """One message of a conversation's transcript; `ordinal` is its place in the conversation."""

    conversation_id: str
    message_id: str
    sender: str
    text: str
    time: datetime
    sender_id: str | None = None
    visibility: str = "public"
    suggestion_id: str | None = None
    command_id: str | None = None
    ordinal: int = 0


@dataclass(frozen=True)
class Assigned:
    """What sessions holds of a conversation as it is assigned: its open session (whoever's it is),
    what assist said of it and the escalation signals seen so far."""

    session: Session | None
    said: dict[str, Any] = field(default_factory=dict)
    signals: list[str] = field(default_factory=list)
    earlier: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Posted:
    """A message as stored, with the open session holding its conversation (if any) and the focus of
    that session's agent."""

    message: Message
    session: Session | None = None
    focus: str | None = None


@dataclass(frozen=True)
class Presence:
    """The agent's presence as presence.v1 last announced it; `since` is that event's time."""

    agent_id: str
    status: str
    source: str
    since: datetime
    base: str | None = None
    closed_channels: list[str] = field(default_factory=list)
    colour: str | None = None


@dataclass(frozen=True)
class ConversationInfo:
    """What the conversation's arrival said of it: the title and priority of waiting work."""

    conversation_id: str
    channel: str
    arrived_at: datetime
    title: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class WaitingWork:
    """Work waiting in a queue or offered from it (not yet assigned), with its arrival's details."""

    conversation_id: str
    channel: str
    queue: str
    state: str
    queued_at: datetime
    title: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class Disposition:
    code: str
    label: str


@dataclass(frozen=True)
class SupervisorAction:
    """A supervisor's action on an agent or one of its conversations, as recorded."""

    supervisor_id: str
    agent_id: str
    action: str
    time: datetime
    conversation_id: str | None = None
    session_id: str | None = None
    detail: str | None = None


def title_for(conversation: dict[str, Any], visitor_number: int | None) -> str:
    """The customer's name, else the record's title, else "Visitor N" for an unknown customer."""
    customer = conversation.get("customer") or {}
    name = (customer.get("name") or "").strip()
    if name:
        return name
    record = conversation.get("record") or {}
    if (record.get("title") or "").strip():
        return record["title"].strip()
    return f"Visitor {visitor_number or 1}"


def offer_subject(conversation: dict[str, Any]) -> str | None:
    """What the customer came about, for the offer toast (bounded: it is the customer's text)."""
    subject = conversation.get("subject")
    return str(subject)[:500] if subject else None


def needs_visitor_number(conversation: dict[str, Any]) -> bool:
    customer = conversation.get("customer") or {}
    record = conversation.get("record") or {}
    return not (customer.get("name") or "").strip() and not (record.get("title") or "").strip()


def icon(title: str) -> str:
    return icon_of(title)


def badge(unread: int) -> str:
    return "" if unread <= 0 else (f"{UNREAD_BADGE_CAP}+" if unread > UNREAD_BADGE_CAP else str(unread))


def session_id_for(conversation_id: str) -> str:
    return f"conv-{conversation_id}"


def conversation_of(session_id: str) -> str | None:
    """The conversation a conversation's session holds, from its id (`session_id_for`); None for
    any other session."""
    return session_id.removeprefix("conv-") if session_id.startswith("conv-") else None


def close_refusal(session: Session | None, session_id: str, confirmed: bool) -> str | None:
    """Why `session.close` cannot be carried out (None: it can)."""
    if session_id == HOME:
        return "the Home session cannot be closed"
    if session is None:
        return f"no session {session_id!r} in this agent's workspace"
    if session.status != "open":
        return f"session {session_id!r} is already closed"
    if not confirmed:
        return f"closing session {session_id!r} needs confirmation: send session.close with confirmed: true"
    return None


# Channels an agent auto-accepts are routing's decision (routing.agents[].auto_accept), not a
# workspace setting: routing assigns without an offer and sessions opens the session.
PANE_KINDS = {
    "assist.summary_ready": "summary",
    "assist.articles_surfaced": "articles",
    "assist.replies_suggested": "replies",
    "assist.case_summary_drafted": "case_summary",
}
# Which pane tool comes first for the kind of tab in focus.
PANE_FOCUS = {"conversation": "replies", "case": "case_summary", "knowledge": "articles", "customer": "summary"}


def draft_key(agent_id: str, session_id: str, tab_id: str, conversation_id: str | None) -> str:
    if conversation_id:
        return f"conv:{conversation_id}:{tab_id}"
    return f"sess:{agent_id}:{session_id}:{tab_id}"


def tab_close_refusal(tab: Tab | None, tab_id: str) -> str | None:
    if tab is None:
        return f"no tab {tab_id!r} in this session"
    if tab.anchor:
        return f"the anchor tab {tab_id!r} cannot be closed on its own; close the session instead"
    return None


def record_title(record: dict[str, Any]) -> str:
    title = (record.get("title") or "").strip()
    return title or f"{record.get('type', 'record').capitalize()} {record.get('id', '')}".strip()


def pane_view(pane: dict[str, Any], tools: list[str], focused_kind: str | None) -> dict[str, Any]:
    """The pane as the agent sees it: only the profile's tools, the focused tab's tool first; an
    escalation flag is shown whatever the profile (it is a warning, not a tool)."""
    shown = {k: v for k, v in pane.items() if k in tools}
    first = PANE_FOCUS.get(focused_kind or "")
    order = sorted(shown, key=lambda k: (k != first, tools.index(k)))
    flags = {ESCALATION: pane[ESCALATION]} if ESCALATION in pane else {}
    return {"tools": order, "focused_tool": order[0] if order else None, **shown, **flags}


ESCALATION = "escalation"
# Channels the workspace always offers (filters, wrap-up), before those seen in its work.
CHANNELS = ("chat", "voice", "email", "sms", "case")
TRANSCRIPT_PAGE = 50


def arrival_title(customer_name: str | None, record_title: str | None, subject: str | None) -> str | None:
    """A waiting conversation's title: the customer's name, else the record's title, else the subject."""
    for candidate in (customer_name, record_title, subject):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def message_view(message: Message) -> dict[str, Any]:
    """A transcript line as the browser shows it (stored messages were all sent)."""
    return {
        "message_id": message.message_id,
        "sender": message.sender,
        "sender_id": message.sender_id,
        "visibility": message.visibility,
        "text": message.text,
        "time": message.time,
        "delivery": "sent",
    }


def transcript_page(messages: list[Message], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit + 1` messages, oldest first -> the newest `limit` of them and whether older ones exist."""
    more = len(messages) > limit
    return [message_view(m) for m in messages[len(messages) - limit if more else 0 :]], more


def channels_seen(sessions: list[Session], offers: list[Offer]) -> list[str]:
    """The standard channels, then any other channel of the agent's sessions and offers."""
    seen = [*CHANNELS]
    for channel in [s.channel for s in sessions] + [o.channel for o in offers]:
        if channel and channel not in seen:
            seen.append(channel)
    return seen


def dashboard_view(
    sessions: list[Session], queues_of: dict[str, str | None], waiting: list[WaitingWork], now: datetime
) -> dict[str, Any]:
    """Home's dashboard: my open conversations, the open work of my queues (most urgent first), and
    what I closed; `queues_of` maps my conversations to the queue they came from."""
    conversations = [s for s in sessions if s.kind == "conversation" and s.conversation_id]
    return {
        "my_work": [
            {
                "conversation_id": s.conversation_id,
                "session_id": s.session_id,
                "channel": s.channel,
                "title": s.title,
                "queue": queues_of.get(s.conversation_id or ""),
                "since": s.opened_at,
            }
            for s in conversations
            if s.status == "open"
        ],
        "queue_work": [
            {
                "conversation_id": w.conversation_id,
                "channel": w.channel,
                "title": w.title or "Visitor",
                "queue": w.queue,
                "waiting_s": max(0.0, round((now - w.queued_at).total_seconds(), 1)),
                "priority": w.priority,
            }
            for w in sorted(waiting, key=lambda w: (-w.priority, w.queued_at, w.conversation_id))
        ],
        "closed": [
            {
                "conversation_id": s.conversation_id,
                "session_id": s.session_id,
                "channel": s.channel,
                "title": s.title,
                "closed_at": s.closed_at,
            }
            for s in sorted(
                (s for s in conversations if s.status == "closed"),
                key=lambda s: s.closed_at or now,
                reverse=True,
            )
        ],
    }


SUPERVISOR_VERBS = {
    "observe": "is observing",
    "listen": "is listening to",
    "whisper": "whispered in",
    "barge": "joined",
    "leave": "left",
    "force_transfer": "transferred",
    "force_close": "closed",
}


def supervisor_detail(
    supervisor_id: str,
    action: str,
    conversation_title: str | None,
    *,
    text: str | None = None,
    to_queue: str | None = None,
    to_agent: str | None = None,
    status: str | None = None,
    reason: str | None = None,
) -> str:
    """What the agent is told of a supervisor's action, in one sentence."""
    if action == "set_presence":
        said = f"{supervisor_id} set your status to {status}"
    else:
        said = f"{supervisor_id} {SUPERVISOR_VERBS[action]} {conversation_title or 'the conversation'}"
    if action == "force_transfer":
        said += f" to {'queue ' + to_queue if to_queue else to_agent}"
    if text:
        said += f": {_shortened(text, DETAIL_QUOTE)}"
    if reason:
        said += f" ({_shortened(reason, DETAIL_QUOTE)})"
    return _shortened(said, EVENT_TEXT)


# A detail quotes the supervisor's words in short; the message itself carries them whole.
DETAIL_QUOTE = 200
# The longest text a sessions.v1 event carries (contracts.Text).
EVENT_TEXT = 8000


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def workspace_view(
    agent_id: str,
    *,
    seq: int,
    focus: str | None,
    sessions: list[Session],
    tabs: list[Tab],
    offers: list[Offer],
    drafts: list[Draft],
    profile: dict[str, Any],
) -> dict[str, Any]:
    """The workspace snapshot as the gateway serves it: sessions with their tabs, drafts and badges."""
    views: list[dict[str, Any]] = [
        {
            "session_id": s.session_id,
            "kind": s.kind,
            "conversation_id": s.conversation_id,
            "channel": s.channel,
            "title": s.title,
            "icon": s.icon,
            "status": s.status,
            "unread": s.unread,
            "focused_tab": s.focused_tab,
            "opened_at": s.opened_at,
            "closed_at": s.closed_at,
            "record": s.record,
            "pane": s.pane,
        }
        for s in sessions
    ]
    if not any(s.session_id == HOME for s in sessions):
        views.insert(
            0, {"session_id": HOME, "kind": "home", "title": "Home", "icon": "Ho", "status": "open", "unread": 0}
        )
    voice_live = any(s.channel == "voice" and s.status == "open" for s in sessions)
    for v in views:
        v["badge"] = badge(v["unread"] or 0)
        # a live voice call stays the primary session: the agent may look elsewhere, no work is offered
        v["primary"] = voice_live and v.get("channel") == "voice" and v["status"] == "open"
        v["tabs"] = [
            {
                "session_id": t.session_id,
                "tab_id": t.tab_id,
                "kind": t.kind,
                "title": t.title,
                "anchor": t.anchor,
                "target": t.target,
            }
            for t in tabs
            if t.session_id == v["session_id"]
        ]
        v["drafts"] = [
            {
                "draft_key": d.draft_key,
                "session_id": d.session_id,
                "tab_id": d.tab_id,
                "conversation_id": d.conversation_id,
                "fields": d.fields,
                "version": d.version,
                "updated_at": d.updated_at,
            }
            for d in drafts
            if d.session_id == v["session_id"]
            or (v.get("conversation_id") and d.conversation_id == v["conversation_id"])
        ]
    return {
        "agent_id": agent_id,
        "seq": seq,
        "focused_session": focus or HOME,
        "sessions": views,
        "offers": [
            {
                "offer_id": o.offer_id,
                "conversation_id": o.conversation_id,
                "channel": o.channel,
                "queue": o.queue,
                "title": o.title,
                "subject": offer_subject(o.conversation),
                "status": o.status,
                "expires_at": o.expires_at,
            }
            for o in offers
        ],
        "profile": profile,
    }
