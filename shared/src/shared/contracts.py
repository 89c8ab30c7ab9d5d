"""The contract of DESIGN.md as pydantic models: the CloudEvents envelope and one model per type.

Parsing accepts unknown fields (DESIGN.md: "more fields are welcome") and keeps them, so a newer
producer never breaks an older consumer; our own producers emit exactly their contract (`event`
refuses undeclared fields). Type names never change within a `.v1` topic; fields are only added.
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from shared import topics


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


# Bounds for text a person (or a client acting for one) supplies; new payloads use these.
Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=8000)]
Note = Annotated[str, Field(max_length=2000)]
Reason = Annotated[str, Field(max_length=500)]
Channel = Annotated[str, Field(min_length=1, max_length=50)]

SupervisorAction = Literal[
    "observe", "whisper", "barge", "listen", "leave", "force_transfer", "force_close", "set_presence"
]


def _exactly_one_target(to_queue: str | None, to_agent: str | None, what: str) -> None:
    if (to_queue is None) == (to_agent is None):
        raise ValueError(f"{what} needs exactly one of to_queue or to_agent")


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


class ParticipantChanged(Payload):
    """A supervisor or agent joined, changed mode in or left a conversation (for a telephony adapter)."""

    TYPE = "conversation.participant_changed"
    TOPIC = topics.CONVERSATIONS
    conversation_id: Id
    participant_id: Id
    role: Literal["supervisor", "agent"]
    mode: Literal["observe", "listen", "whisper", "barge", "left"]
    channel: Channel | None = None


# --- conversations.messages.v1 -----------------------------------------------------------------


class MessagePosted(Payload):
    TYPE = "message.posted"
    TOPIC = topics.MESSAGES
    conversation_id: str = Field(min_length=1)
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    sender: Literal["customer", "agent", "supervisor", "bot"]
    sender_id: str | None = None
    visibility: Literal["public", "internal"] = "public"
    text: str = Field(default="", max_length=8000)
    # The assist suggestion the agent started from, if any (assist records accepted or edited).
    suggestion_id: str | None = None
    command_id: str | None = Field(default=None, description="the message.send command that posted it")


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
    routed_by: str | None = Field(default=None, description="the rule or transfer that chose the queue")
    update: bool | None = Field(
        default=None, description="true when it re-announces a waiting item's new position, not an arrival"
    )


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
    previous_agent_id: str | None = Field(default=None, description="on a transfer, who held it before")


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
    text: str = Field(min_length=1, max_length=8000)
    visibility: Literal["public", "internal"] = "public"
    suggestion_id: str | None = None


class CloseSession(AgentPayload):
    TYPE = "session.close"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: str = Field(min_length=1)
    confirmed: bool = False
    disposition: Id | None = Field(default=None, description="the wrap-up's disposition code, from the configuration")
    note: Note | None = Field(default=None, description="the wrap-up note")


class TransferSession(AgentPayload):
    """The agent hands the session's conversation to a queue or to another agent."""

    TYPE = "session.transfer"
    TOPIC = topics.SESSIONS_COMMANDS
    agent_id: Id
    session_id: Id
    to_queue: Id | None = None
    to_agent: Id | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TransferSession:
        _exactly_one_target(self.to_queue, self.to_agent, "session.transfer")
        return self


class SupervisorAct(AgentPayload):
    """A supervisor acts on an agent (`agent_id`, the key) or on one of the agent's conversations."""

    TYPE = "supervisor.act"
    TOPIC = topics.SESSIONS_COMMANDS
    agent_id: Id = Field(description="the agent concerned")
    supervisor_id: Id
    action: SupervisorAction
    conversation_id: Id | None = None
    text: Text | None = Field(default=None, description="whisper: the internal message only the agent sees")
    to_queue: Id | None = Field(default=None, description="force_transfer: the target queue")
    to_agent: Id | None = Field(default=None, description="force_transfer: the target agent")
    status: Id | None = Field(default=None, description="set_presence: the status to set")
    reason: Reason | None = None

    @model_validator(mode="after")
    def _fits_action(self) -> SupervisorAct:
        what = f"supervisor.act {self.action}"
        if self.action != "set_presence" and self.conversation_id is None:
            raise ValueError(f"{what} needs a conversation_id")
        if self.action == "whisper" and not self.text:
            raise ValueError(f"{what} needs text")
        if self.action == "force_transfer":
            _exactly_one_target(self.to_queue, self.to_agent, what)
        if self.action == "set_presence" and self.status is None:
            raise ValueError(f"{what} needs a status")
        return self


# --- sessions.v1 -------------------------------------------------------------------------------


class SessionsEvent(AgentPayload):
    """Base of sessions.v1 events; sessions numbers each agent's events as it writes them."""

    seq: int | None = Field(
        default=None, description="the agent's event sequence number, gap-free, for resuming a stream"
    )


class OfferReceived(SessionsEvent):
    TYPE = "offer.received"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    title: str | None = None
    queue: str | None = None
    notification: dict[str, Any] | None = Field(
        default=None, description="how the client announces it: the agent's offer_notifications setting"
    )
    subject: str | None = Field(default=None, max_length=500, description="what the customer came about")


class OfferWithdrawn(SessionsEvent):
    TYPE = "offer.withdrawn"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    reason: str = "expired"


class OfferAccepted(SessionsEvent):
    TYPE = "offer.accepted"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime


class OfferRejected(SessionsEvent):
    TYPE = "offer.rejected"
    TOPIC = topics.SESSIONS
    offer_id: str
    conversation_id: str
    channel: str
    expires_at: datetime
    reason: str | None = None


class SessionStarted(SessionsEvent):
    TYPE = "session.started"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    channel: str | None = None
    title: str
    icon: str
    anchor_tab_id: str | None = None


class SessionFocused(SessionsEvent):
    TYPE = "session.focused"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None


class SessionRetitled(SessionsEvent):
    TYPE = "session.retitled"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    title: str
    icon: str
    record: RecordRef | None = None


class SessionUnreadChanged(SessionsEvent):
    TYPE = "session.unread_changed"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    unread: int
    badge: str


class SessionClosed(SessionsEvent):
    TYPE = "session.closed"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    channel: str | None = None
    reason: str | None = Field(default=None, description="set when the agent did not close it (transferred)")
    disposition: Id | None = Field(default=None, description="the wrap-up's disposition code, as session.close gave it")
    note: Note | None = Field(default=None, description="the wrap-up note, as session.close gave it")


class TabOpened(SessionsEvent):
    TYPE = "tab.opened"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    kind: str
    title: str | None = None
    conversation_id: str | None = None
    target: dict[str, Any] | None = Field(default=None, description="what the tab shows, as tab.open gave it")


class TabFocused(SessionsEvent):
    TYPE = "tab.focused"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    conversation_id: str | None = None


class TabClosed(SessionsEvent):
    TYPE = "tab.closed"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    conversation_id: str | None = None


class DraftSaved(SessionsEvent):
    TYPE = "draft.saved"
    TOPIC = topics.SESSIONS
    session_id: str
    tab_id: str
    version: int
    conversation_id: str | None = None
    fields: dict[str, Any] | None = None


class PaneUpdated(SessionsEvent):
    TYPE = "pane.updated"
    TOPIC = topics.SESSIONS
    session_id: str
    conversation_id: str | None = None
    pane: dict[str, Any] = Field(default_factory=dict)
    updated: str | None = Field(
        default=None, description="the part of the pane that changed: summary, articles, replies or case_summary"
    )


class MessageReceived(SessionsEvent):
    """A conversation message, delivered to the agent who holds the conversation's session."""

    TYPE = "message.received"
    TOPIC = topics.SESSIONS
    session_id: Id
    conversation_id: Id
    message_id: Id
    sender: Literal["customer", "agent", "supervisor", "bot"]
    sender_id: Id | None = None
    visibility: Literal["public", "internal"] = "public"
    text: Text
    time: datetime = Field(description="when the message was posted")
    suggestion_id: Id | None = None
    command_id: Id | None = Field(default=None, description="the message.send command that posted it, if any")


class PresenceUpdated(SessionsEvent):
    """The agent's presence as the workspace shows it (presence.changed, relayed to the agent's topic)."""

    TYPE = "presence.updated"
    TOPIC = topics.SESSIONS
    status: Id
    base: Id | None = None
    previous: Id | None = None
    source: Id = Field(description="manual, automatic, device, system or supervisor")
    reason: Reason | None = None
    closed_channels: list[Channel] = Field(default_factory=list)
    colour: Id | None = None


class SupervisorActionRecorded(SessionsEvent):
    """A supervisor acted on this agent or one of the agent's conversations: who, what and when."""

    TYPE = "supervisor.action"
    TOPIC = topics.SESSIONS
    supervisor_id: Id
    action: SupervisorAction
    conversation_id: Id | None = None
    session_id: Id | None = None
    detail: Text | None = Field(default=None, description="what the agent is told, for a person")
    time: datetime


class CommandRejected(SessionsEvent):
    TYPE = "command.rejected"
    TOPIC = topics.SESSIONS
    command_id: str
    command_type: str | None = None
    reason: str
    # A stale draft.save: the draft as it stands, so the client can merge and save again.
    current_version: int | None = None
    current_fields: dict[str, Any] | None = None


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


class EscalationDetected(Payload):
    """The customer asks for a manager or is clearly upset (a flag on the supervisor view)."""

    TYPE = "assist.escalation_detected"
    TOPIC = topics.ASSIST
    conversation_id: Id
    signals: list[Literal["asks_for_manager", "upset"]] = Field(min_length=1)
    message_id: Id | None = Field(default=None, description="the customer message that showed it")
    excerpt: Annotated[str, Field(max_length=300)] | None = None


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
    agent_id: str | None = Field(default=None, description="the agent whose request or release triggered it")
    fallback: str | None = Field(
        default=None, description="why the embedded model answered instead of the configured provider"
    )


class RepliesSuggested(Payload):
    TYPE = "assist.replies_suggested"
    TOPIC = topics.ASSIST
    conversation_id: str
    replies: list[dict[str, Any]] = Field(default_factory=list)
    for_message_id: str | None = Field(default=None, description="the customer message the replies answer")
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
    agent_id: str | None = Field(default=None, description="the agent whose request or release triggered it")
    provider: str = "embedded"
    model: str | None = None
    fallback: str | None = Field(
        default=None, description="why the embedded model answered instead of the configured provider"
    )


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
        # added for the agent workspace and the supervisor view (issue 10)
        ParticipantChanged, TransferSession, SupervisorAct, MessageReceived, PresenceUpdated,
        SupervisorActionRecorded, EscalationDetected,
    )
}  # fmt: skip

TYPES_BY_TOPIC: dict[str, frozenset[str]] = {
    spec.name: frozenset(t for t, cls in PAYLOADS.items() if spec.name == cls.TOPIC) for spec in topics.TOPICS
}


class InvalidEvent(ValueError):
    """A record that is not a valid event of its topic; the message says why, for a person."""


class ContractError(TypeError):
    """One of our producers built a payload with fields its model does not declare."""


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
    """Wrap a payload in a CloudEvent; `subject` defaults to the payload's key field.

    Raises ContractError when the payload carries fields its model does not declare."""
    if payload.model_extra:
        undeclared = ", ".join(sorted(payload.model_extra))
        raise ContractError(
            f"{payload.TYPE} does not declare {undeclared}: declare the field on {type(payload).__name__} "
            "in shared/contracts.py (optional, so the change is additive) or stop sending it"
        )
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


@functools.cache
def envelope_model(topic: str) -> type[BaseModel]:
    """A CloudEvent model whose `data` is one of the topic's payloads (for AsyncAPI documents)."""
    models = tuple(PAYLOADS[t] for t in sorted(TYPES_BY_TOPIC.get(topic, ())))
    if not models:
        return CloudEvent
    data_type = Union[models] if len(models) > 1 else models[0]  # noqa: UP007 - built at runtime
    name = "".join(part.capitalize() for part in topic.replace(".", "_").split("_")) + "Event"
    return create_model(name, __base__=CloudEvent, data=(data_type, ...))  # type: ignore[arg-type]
