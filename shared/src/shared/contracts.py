"""The contract of DESIGN.md as pydantic models: the CloudEvents envelope and one model per type.

Payloads accept unknown fields (DESIGN.md: "more fields are welcome") and keep them, so a newer
producer never breaks an older consumer. Type names never change within a `.v1` topic.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared import topics

NonEmpty = str


class Payload(BaseModel):
    """Base of every `data` model; `TYPE` and `TOPIC` tie it to the contract."""

    model_config = ConfigDict(extra="allow")
    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v


class AgentPayload(Payload):
    agent_id: str = Field(min_length=1)


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured JSON mode. `id` is the idempotency key."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


# --- conversations.v1 ---------------------------------------------------------------------------


class Customer(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    name: str | None = None
    authenticated: bool = False


class RecordRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1)
    id: str = Field(min_length=1)
    title: str | None = None


class ConversationArrived(Payload):
    TYPE = "conversation.arrived"
    TOPIC = topics.CONVERSATIONS
    conversation_id: str = Field(min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=50)
    customer: Customer | None = None
    subject: str | None = None
    language: str | None = None
    priority: int = Field(default=0, ge=0, le=100)
    attributes: dict[str, Any] = Field(default_factory=dict)
    required_skills: dict[str, int] = Field(default_factory=dict)
    record: RecordRef | None = None
    preferred_agent_id: str | None = None


class ConversationEnded(Payload):
    TYPE = "conversation.ended"
    TOPIC = topics.CONVERSATIONS
    conversation_id: str = Field(min_length=1)
    reason: str | None = None


# --- conversations.messages.v1 -----------------------------------------------------------------


class MessagePosted(Payload):
    TYPE = "message.posted"
    TOPIC = topics.MESSAGES
    conversation_id: str = Field(min_length=1)
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    sender: Literal["customer", "agent", "supervisor", "bot"]
    sender_id: str | None = None
    visibility: Literal["public", "internal"] = "public"
    text: str = ""
    # The assist suggestion the agent started from, if any (assist records accepted or edited).
    suggestion_id: str | None = None


# --- routing.commands.v1 -----------------------------------------------------------------------


class PickWork(AgentPayload):
    TYPE = "work.pick"
    TOPIC = topics.ROUTING_COMMANDS
    conversation_id: str = Field(min_length=1)
    command_id: str | None = None


class TransferWork(Payload):
    TYPE = "work.transfer"
    TOPIC = topics.ROUTING_COMMANDS
    conversation_id: str = Field(min_length=1)
    agent_id: str | None = None
    to_queue: str | None = None
    to_agent: str | None = None
    command_id: str | None = None


# --- routing.v1 --------------------------------------------------------------------------------


class WorkQueued(Payload):
    TYPE = "work.queued"
    TOPIC = topics.ROUTING
    conversation_id: str
    channel: str
    queue: str
    position: int
    estimated_wait_s: float | None = None


class WorkOffered(AgentPayload):
    TYPE = "work.offered"
    TOPIC = topics.ROUTING
    offer_id: str
    conversation_id: str
    channel: str
    queue: str
    expires_at: datetime
    reason: dict[str, Any] = Field(default_factory=dict)
    conversation: dict[str, Any] = Field(default_factory=dict)


class WorkOfferExpired(AgentPayload):
    TYPE = "work.offer_expired"
    TOPIC = topics.ROUTING
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    cause: Literal["expired", "rejected", "withdrawn"] = "expired"


class WorkAssigned(AgentPayload):
    TYPE = "work.assigned"
    TOPIC = topics.ROUTING
    conversation_id: str
    channel: str
    queue: str
    offer_id: str | None = None
    how: Literal["accepted", "auto_accepted", "picked", "transferred"] = "accepted"
    conversation: dict[str, Any] = Field(default_factory=dict)


class WorkRequeued(Payload):
    TYPE = "work.requeued"
    TOPIC = topics.ROUTING
    conversation_id: str
    channel: str
    queue: str
    reason: str


class WorkOverflowed(Payload):
    TYPE = "work.overflowed"
    TOPIC = topics.ROUTING
    conversation_id: str
    from_queue: str
    to_queue: str | None = None
    reason: str


class WorkPickRefused(AgentPayload):
    """Added to routing.v1 (additive): a pick that could not be carried out, and why."""

    TYPE = "work.pick_refused"
    TOPIC = topics.ROUTING
    conversation_id: str
    command_id: str | None = None
    reason: str


class WorkReleased(AgentPayload):
    TYPE = "work.released"
    TOPIC = topics.ROUTING
    conversation_id: str
    channel: str
    reason: str = "closed"


class CapacityChanged(AgentPayload):
    TYPE = "capacity.changed"
    TOPIC = topics.ROUTING
    used: dict[str, int]
    limits: dict[str, int]
    exclusive_held: bool = False
    full: bool = False
    full_channels: list[str] = Field(default_factory=list)
    total_used: int = 0


# --- sessions.commands.v1 ----------------------------------------------------------------------


class AcceptOffer(AgentPayload):
    TYPE = "offer.accept"
    TOPIC = topics.SESSIONS_COMMANDS
    offer_id: str = Field(min_length=1)


class RejectOffer(AgentPayload):
    TYPE = "offer.reject"
    TOPIC = topics.SESSIONS_COMMANDS
    offer_id: str = Field(min_length=1)
    reason: str | None = None


class OpenSession(AgentPayload):
    TYPE = "session.open"
    TOPIC = topics.SESSIONS_COMMANDS
    conversation_id: str | None = None
    record: RecordRef | None = None


class FocusSession(AgentPayload):
    TYPE = "session.focus"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)


class OpenTab(AgentPayload):
    TYPE = "tab.open"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    title: str | None = None
    target: dict[str, Any] = Field(default_factory=dict)


class FocusTab(AgentPayload):
    TYPE = "tab.focus"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    tab_id: str = Field(min_length=1)


class CloseTab(AgentPayload):
    TYPE = "tab.close"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    tab_id: str = Field(min_length=1)


class SaveDraft(AgentPayload):
    TYPE = "draft.save"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    tab_id: str = Field(min_length=1)
    fields: dict[str, Any] = Field(default_factory=dict)
    version: int = Field(default=0, ge=0)


class LinkRecord(AgentPayload):
    TYPE = "record.link"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    record: RecordRef


class SendMessage(AgentPayload):
    TYPE = "message.send"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    visibility: Literal["public", "internal"] = "public"
    suggestion_id: str | None = None


class CloseSession(AgentPayload):
    TYPE = "session.close"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    confirmed: bool = False


# --- sessions.v1 -------------------------------------------------------------------------------


class OfferReceived(AgentPayload):
    TYPE = "offer.received"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    title: str | None = None
    queue: str | None = None


class OfferWithdrawn(AgentPayload):
    TYPE = "offer.withdrawn"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    reason: str = "expired"


class OfferAccepted(AgentPayload):
    TYPE = "offer.accepted"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime


class OfferRejected(AgentPayload):
    TYPE = "offer.rejected"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    reason: str | None = None


class SessionStarted(AgentPayload):
    TYPE = "session.started"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    channel: str | None = None
    title: str
    icon: str
    anchor_tab_id: str | None = None


class SessionFocused(AgentPayload):
    TYPE = "session.focused"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None


class SessionRetitled(AgentPayload):
    TYPE = "session.retitled"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    title: str
    icon: str


class SessionUnreadChanged(AgentPayload):
    TYPE = "session.unread_changed"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    unread: int
    badge: str


class SessionClosed(AgentPayload):
    TYPE = "session.closed"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    channel: str | None = None


class TabOpened(AgentPayload):
    TYPE = "tab.opened"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    kind: str
    title: str | None = None
    conversation_id: str | None = None


class TabFocused(AgentPayload):
    TYPE = "tab.focused"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    conversation_id: str | None = None


class TabClosed(AgentPayload):
    TYPE = "tab.closed"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    conversation_id: str | None = None


class DraftSaved(AgentPayload):
    TYPE = "draft.saved"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    version: int
    conversation_id: str | None = None


class PaneUpdated(AgentPayload):
    TYPE = "pane.updated"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    pane: dict[str, Any] = Field(default_factory=dict)


class CommandRejected(AgentPayload):
    TYPE = "command.rejected"
    TOPIC = topics.SESSIONS
    command_id: str
    command_type: str | None = None
    reason: str


# --- presence.commands.v1 / presence.v1 --------------------------------------------------------

BASE_PRESENCES = ("available", "busy", "busy_dnd", "away", "offline", "inactive")


class SetPresence(AgentPayload):
    """An agent's own choice: a status (base or custom) and/or channels opened or closed."""

    TYPE = "presence.set"
    TOPIC = topics.PRESENCE_COMMANDS
    status: str | None = Field(default=None, min_length=1)
    channels: dict[str, Literal["open", "closed"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _something(self) -> SetPresence:
        if self.status is None and not self.channels:
            raise ValueError("presence.set needs a status, channels, or both")
        return self


class AgentSignedIn(AgentPayload):
    TYPE = "agent.signed_in"
    TOPIC = topics.PRESENCE_COMMANDS
    device_id: str = "default"


class AgentSignedOut(AgentPayload):
    TYPE = "agent.signed_out"
    TOPIC = topics.PRESENCE_COMMANDS
    device_id: str = "default"


class AgentHeartbeat(AgentPayload):
    TYPE = "agent.heartbeat"
    TOPIC = topics.PRESENCE_COMMANDS
    device_id: str = "default"
    idle_s: float | None = Field(default=None, ge=0, description="seconds since the last input on this device")


class PresenceChanged(AgentPayload):
    TYPE = "presence.changed"
    TOPIC = topics.PRESENCE
    status: str
    base: str | None = None
    previous: str | None = None
    source: Literal["manual", "automatic", "device", "system"]
    reason: str | None = None
    closed_channels: list[str] = Field(default_factory=list)
    colour: str | None = None


# --- assist.v1 ---------------------------------------------------------------------------------


class SummaryReady(Payload):
    TYPE = "assist.summary_ready"
    TOPIC = topics.ASSIST
    conversation_id: str
    summary: str
    entities: dict[str, list[str]] = Field(default_factory=dict)
    provider: str = "embedded"
    model: str | None = None
    intent: str | None = None
    trigger: str | None = None
    message_count: int = 0


class RepliesSuggested(Payload):
    TYPE = "assist.replies_suggested"
    TOPIC = topics.ASSIST
    conversation_id: str
    replies: list[dict[str, Any]] = Field(default_factory=list)
    provider: str = "embedded"
    model: str | None = None


class ArticlesSurfaced(Payload):
    TYPE = "assist.articles_surfaced"
    TOPIC = topics.ASSIST
    conversation_id: str
    articles: list[dict[str, Any]] = Field(default_factory=list)
    provider: str = "embedded"
    model: str | None = None


class CaseSummaryDrafted(Payload):
    TYPE = "assist.case_summary_drafted"
    TOPIC = topics.ASSIST
    conversation_id: str
    draft: dict[str, Any] = Field(default_factory=dict)
    trigger: str | None = None
    agent_id: str | None = None
    provider: str = "embedded"
    model: str | None = None


PAYLOADS: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        ConversationArrived, ConversationEnded, MessagePosted, PickWork, TransferWork,
        WorkQueued, WorkOffered, WorkOfferExpired, WorkAssigned, WorkRequeued, WorkOverflowed, WorkPickRefused,
        WorkReleased, CapacityChanged, AcceptOffer, RejectOffer, OpenSession, FocusSession,
        OpenTab, FocusTab, CloseTab, SaveDraft, LinkRecord, SendMessage, CloseSession,
        OfferReceived, OfferWithdrawn, OfferAccepted, OfferRejected, SessionStarted,
        SessionFocused, SessionRetitled, SessionUnreadChanged, SessionClosed, TabOpened,
        TabFocused, TabClosed, DraftSaved, PaneUpdated, CommandRejected, SetPresence,
        AgentSignedIn, AgentSignedOut, AgentHeartbeat, PresenceChanged, SummaryReady,
        RepliesSuggested, ArticlesSurfaced, CaseSummaryDrafted,
    )
}  # fmt: skip

TYPES_BY_TOPIC: dict[str, frozenset[str]] = {
    spec.name: frozenset(t for t, cls in PAYLOADS.items() if spec.name == cls.TOPIC) for spec in topics.TOPICS
}


class InvalidEvent(ValueError):
    """A record that is not a valid event of its topic; the message says why, for a person."""


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def parse(raw: bytes | str | None, topic: str) -> tuple[CloudEvent, Payload]:
    """Parse one record of an (unprefixed) `topic` into its envelope and its typed payload."""
    if raw is None or raw == b"" or raw == "":
        raise InvalidEvent("empty record: expected a CloudEvents JSON document")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent(f"expected a JSON object (CloudEvent), got {type(doc).__name__}")
    try:
        envelope = CloudEvent.model_validate(doc)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid CloudEvent envelope: {_describe(exc)}") from exc
    allowed = TYPES_BY_TOPIC.get(topic, frozenset())
    if envelope.type not in allowed:
        raise InvalidEvent(f"unknown type {envelope.type!r} on {topic}; expected one of: {', '.join(sorted(allowed))}")
    model = PAYLOADS[envelope.type]
    try:
        payload = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {envelope.type} data: {_describe(exc)}") from exc
    return envelope, payload


def event(payload: Payload, *, source: str, subject: str | None = None, id: str | None = None) -> CloudEvent:
    """Wrap a payload in a CloudEvent; `subject` defaults to the payload's key field."""
    data = payload.model_dump(mode="json", exclude_none=True)
    if subject is None:
        subject = key_of(payload)
    kwargs: dict[str, Any] = {"source": source, "type": payload.TYPE, "subject": subject, "data": data}
    if id is not None:
        kwargs["id"] = id
    return CloudEvent(**kwargs)


_AGENT_KEYED = {topics.SESSIONS, topics.SESSIONS_COMMANDS, topics.PRESENCE, topics.PRESENCE_COMMANDS}


def key_of(payload: Payload) -> str:
    """The Kafka key DESIGN.md gives the payload's topic."""
    if payload.TOPIC in _AGENT_KEYED:
        return str(payload.agent_id)  # type: ignore[attr-defined]
    # conversation-keyed topics; capacity.changed concerns an agent, not a conversation
    return str(getattr(payload, "conversation_id", None) or payload.agent_id)  # type: ignore[attr-defined]


def icon_of(title: str) -> str:
    """DESIGN.md: a session's icon is the first two letters of its title."""
    letters = [c for c in title if c.isalpha()]
    return ("".join(letters[:2]) or title[:2]).capitalize() if letters else title[:2]


def envelope_model(topic: str) -> type[BaseModel]:
    """A CloudEvent model whose `data` is one of the topic's payloads (for AsyncAPI documents)."""
    from typing import Union

    from pydantic import create_model

    models = tuple(PAYLOADS[t] for t in sorted(TYPES_BY_TOPIC.get(topic, ())))
    if not models:
        return CloudEvent
    data_type = Union[models] if len(models) > 1 else models[0]  # noqa: UP007 - built at runtime
    name = "".join(part.capitalize() for part in topic.replace(".", "_").split("_")) + "Event"
    return create_model(name, __base__=CloudEvent, data=(data_type, ...))  # type: ignore[arg-type]
