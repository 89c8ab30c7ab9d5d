"""The contract of DESIGN.md as pydantic models: the CloudEvents envelope and one model per type.

Parsing accepts unknown fields (DESIGN.md: "more fields are welcome") and keeps them, so a newer
producer never breaks an older consumer; our own producers emit exactly their contract (`event`
refuses undeclared fields). Type names never change within a `.v1` topic; fields are only added.

Limits (issue 12): every record is bounded at the edge, before anything is stored or copied; a
refusal names the field and the limit, and the record goes to TOPIC.dlq with that reason.

- A whole record (the CloudEvent JSON): `MAX_RECORD_BYTES` = 512 KiB. Its JSON nesting:
  `MAX_DEPTH` = 16 levels. `\\u0000` is refused anywhere (PostgreSQL cannot store it).
- CloudEvent `id`: required (a consumer never invents one), `MAX_ID_CHARS` = 200, printable.
  `type`: `MAX_TYPE_CHARS` = 100; `source`: `MAX_SOURCE_CHARS` = 500; `subject`: `MAX_REF_CHARS`
  = 300; all printable. Extension attributes: at most `MAX_EXTENSIONS` = 16, names of 1 to 50
  lower-case letters or digits, scalar values, strings up to `MAX_EXTENSION_CHARS` = 1,000.
- Every id in `data` (conversation, agent, offer, message, record, command, device, supervisor,
  queue, status, disposition): `MAX_ID_CHARS` = 200, printable.
- Ids composed from other ids (`session_id` such as `conv-<conversation_id>`, `tab_id`):
  `MAX_REF_CHARS` = 300, printable.
- Keywords (channel, tab kind, record type, language, icon, colour): `MAX_KEYWORD_CHARS` = 64.
- A customer's name: `MAX_NAME_CHARS` = 200, printable. Titles and subjects: `MAX_TITLE_CHARS` = 500.
- Message text and whispers: `MAX_TEXT_CHARS` = 8,000. Wrap-up notes: `MAX_NOTE_CHARS` = 2,000.
  Reasons a person gives (rejecting an offer, ending a conversation, a supervisor's action):
  `MAX_REASON_CHARS` = 500.
- Maps and lists a client supplies (attributes, required_skills, a tab's target, draft fields,
  presence channels, closed channels): `MAX_ITEMS` = 100 entries, `MAX_FIELD_BYTES` = 64 KiB as
  JSON, `MAX_FIELD_DEPTH` = 8 levels.
- Undeclared fields ("more fields are welcome") of a payload, a customer or a record: at most
  `MAX_EXTRA_FIELDS` = 32, names up to 64 characters, each value `MAX_FIELD_BYTES` as JSON.

Fields our services fill from other bounded fields (the arrival copied into `work.offered`, the
pane, routing's explanation, reasons they compose) have no limit of their own beyond the record's:
a consumer must never refuse what a valid input made a producer write.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Union

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from shared import topics

# --- limits (documented in the module docstring; docs/contract.md copies the table) --------------

MAX_RECORD_BYTES = 512 * 1024
MAX_DEPTH = 16
MAX_ID_CHARS = 200
MAX_REF_CHARS = 300
MAX_KEYWORD_CHARS = 64
MAX_TYPE_CHARS = 100
MAX_SOURCE_CHARS = 500
MAX_EXTENSIONS = 16
MAX_EXTENSION_CHARS = 1000
MAX_NAME_CHARS = 200
MAX_TITLE_CHARS = 500
MAX_TEXT_CHARS = 8000
MAX_NOTE_CHARS = 2000
MAX_REASON_CHARS = 500
MAX_ITEMS = 100
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELD_DEPTH = 8
MAX_EXTRA_FIELDS = 32


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text: no control characters, line breaks or tabs")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _json_size(value: Any) -> int:
    return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def _bounded(value: Any) -> Any:
    """A map or list a client supplies: entries, size as JSON and nesting are bounded."""
    if len(value) > MAX_ITEMS:
        raise ValueError(f"at most {MAX_ITEMS} entries allowed, got {len(value)}")
    dumped = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if len(dumped) > MAX_FIELD_BYTES:
        raise ValueError(f"at most {MAX_FIELD_BYTES:,} bytes as JSON allowed, got {len(dumped):,}")
    if dumped.count(b"{") + dumped.count(b"[") > MAX_FIELD_DEPTH and _depth(value) > MAX_FIELD_DEPTH:
        raise ValueError(f"at most {MAX_FIELD_DEPTH} levels of nesting allowed")
    return value


# Bounded text; every field of every payload uses one of these (or is filled by our services from them).
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_printable)]
Ref = Annotated[str, Field(min_length=1, max_length=MAX_REF_CHARS), AfterValidator(_printable)]
Keyword = Annotated[str, Field(min_length=1, max_length=MAX_KEYWORD_CHARS), AfterValidator(_printable)]
EventType = Annotated[str, Field(min_length=1, max_length=MAX_TYPE_CHARS), AfterValidator(_printable)]
Label = Annotated[str, Field(max_length=MAX_KEYWORD_CHARS), AfterValidator(_printable)]  # a keyword that may be empty
Name = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(_printable)]
Title = Annotated[str, Field(max_length=MAX_TITLE_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Note = Annotated[str, Field(max_length=MAX_NOTE_CHARS)]
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS)]
Channel = Keyword
Map = Annotated[dict[str, Any], AfterValidator(_bounded)]
Skills = Annotated[dict[str, int], AfterValidator(_bounded)]
Keywords = Annotated[list[Keyword], AfterValidator(_bounded)]


def _check_extras(model: BaseModel) -> None:
    extra = model.model_extra or {}
    if len(extra) > MAX_EXTRA_FIELDS:
        raise ValueError(f"at most {MAX_EXTRA_FIELDS} undeclared fields allowed, got {len(extra)}")
    for name, value in extra.items():
        if len(name) > MAX_KEYWORD_CHARS:
            raise ValueError(f"undeclared field names are limited to {MAX_KEYWORD_CHARS} characters")
        size = _json_size(value)
        if size > MAX_FIELD_BYTES:
            raise ValueError(f"undeclared field {name!r}: at most {MAX_FIELD_BYTES:,} bytes as JSON, got {size:,}")


class Open(BaseModel):
    """A model that keeps undeclared fields ("more fields are welcome"), within bounds."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _bounded_extras(self) -> Any:
        _check_extras(self)
        return self


class Payload(Open):
    """Base of every `data` model; `TYPE` and `TOPIC` tie it to the contract."""

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v


class AgentPayload(Payload):
    agent_id: Id


SupervisorAction = Literal[
    "observe", "whisper", "barge", "listen", "leave", "force_transfer", "force_close", "set_presence"
]


def _exactly_one_target(to_queue: str | None, to_agent: str | None, what: str) -> None:
    if (to_queue is None) == (to_agent is None):
        raise ValueError(f"{what} needs exactly one of to_queue or to_agent")


_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,50}")


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured JSON mode. `id` is the idempotency key: required, never invented
    by a consumer (`event` gives our own events a fresh one)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: Id
    source: Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_CHARS), AfterValidator(_printable)]
    type: EventType
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: Ref | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    @model_validator(mode="after")
    def _bounded_extensions(self) -> CloudEvent:
        extensions = self.model_extra or {}
        if len(extensions) > MAX_EXTENSIONS:
            raise ValueError(f"at most {MAX_EXTENSIONS} extension attributes allowed, got {len(extensions)}")
        for name, value in extensions.items():
            if not _EXTENSION_NAME.fullmatch(name):
                raise ValueError(f"extension attribute {name[:60]!r}: names are 1 to 50 lower-case letters or digits")
            if not (value is None or isinstance(value, str | int | float | bool)):
                raise ValueError(f"extension attribute {name!r}: must be a string, number or boolean")
            if isinstance(value, str) and len(value) > MAX_EXTENSION_CHARS:
                raise ValueError(f"extension attribute {name!r}: at most {MAX_EXTENSION_CHARS} characters allowed")
        return self

    def to_bytes(self) -> bytes:
        """The record's JSON: pydantic's `model_dump_json(exclude_none=True)`, written by orjson (the
        envelope's attributes are plain values, and every event the services emit passes here)."""
        doc = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.__pydantic_extra__:
            doc.update((k, v) for k, v in self.__pydantic_extra__.items() if v is not None)
        try:
            return orjson.dumps(doc, option=orjson.OPT_UTC_Z)
        except TypeError:  # a value orjson does not write (a Decimal, a set, a huge integer)
            return self.model_dump_json(exclude_none=True).encode()


# --- conversations.v1 ---------------------------------------------------------------------------


class Customer(Open):
    id: Id | None = None
    name: Name | None = None
    authenticated: bool = False


class RecordRef(Open):
    type: Keyword
    id: Id
    title: Title | None = None


class ConversationArrived(Payload):
    TYPE = "conversation.arrived"
    TOPIC = topics.CONVERSATIONS
    conversation_id: Id
    channel: Keyword
    customer: Customer | None = None
    subject: Title | None = None
    language: Label | None = None
    priority: int = Field(default=0, ge=0, le=100)
    attributes: Map = Field(default_factory=dict)
    required_skills: Skills = Field(default_factory=dict)
    record: RecordRef | None = None
    preferred_agent_id: Id | None = None


class ConversationEnded(Payload):
    TYPE = "conversation.ended"
    TOPIC = topics.CONVERSATIONS
    conversation_id: Id
    reason: Reason | None = None


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
    conversation_id: Id
    message_id: Id = Field(default_factory=lambda: str(uuid.uuid4()))
    sender: Literal["customer", "agent", "supervisor", "bot"]
    sender_id: Id | None = None
    visibility: Literal["public", "internal"] = "public"
    text: Text = ""
    # The assist suggestion the agent started from, if any (assist records accepted or edited).
    suggestion_id: Id | None = None
    command_id: Id | None = Field(default=None, description="the message.send command that posted it")


# --- routing.commands.v1 -----------------------------------------------------------------------


class PickWork(AgentPayload):
    TYPE = "work.pick"
    TOPIC = topics.ROUTING_COMMANDS
    conversation_id: Id
    command_id: Id | None = None


class TransferWork(Payload):
    TYPE = "work.transfer"
    TOPIC = topics.ROUTING_COMMANDS
    conversation_id: Id
    agent_id: Id | None = None
    to_queue: Id | None = None
    to_agent: Id | None = None
    command_id: Id | None = None


# --- routing.v1 --------------------------------------------------------------------------------


class WorkQueued(Payload):
    TYPE = "work.queued"
    TOPIC = topics.ROUTING
    conversation_id: Id
    channel: Keyword
    queue: Id
    position: int
    estimated_wait_s: float | None = None
    routed_by: str | None = Field(default=None, description="the rule or transfer that chose the queue")
    update: bool | None = Field(
        default=None, description="true when it re-announces a waiting item's new position, not an arrival"
    )


class WorkOffered(AgentPayload):
    TYPE = "work.offered"
    TOPIC = topics.ROUTING
    offer_id: Id
    conversation_id: Id
    channel: Keyword
    queue: Id
    expires_at: datetime
    reason: dict[str, Any] = Field(default_factory=dict)
    conversation: dict[str, Any] = Field(default_factory=dict)


class WorkOfferExpired(AgentPayload):
    TYPE = "work.offer_expired"
    TOPIC = topics.ROUTING
    offer_id: Id
    conversation_id: Id
    channel: Keyword
    expires_at: datetime
    cause: Literal["expired", "rejected", "withdrawn"] = "expired"


class WorkAssigned(AgentPayload):
    TYPE = "work.assigned"
    TOPIC = topics.ROUTING
    conversation_id: Id
    channel: Keyword
    queue: Id
    offer_id: Id | None = None
    how: Literal["accepted", "auto_accepted", "picked", "transferred"] = "accepted"
    conversation: dict[str, Any] = Field(default_factory=dict)
    previous_agent_id: Id | None = Field(default=None, description="on a transfer, who held it before")


class WorkRequeued(Payload):
    TYPE = "work.requeued"
    TOPIC = topics.ROUTING
    conversation_id: Id
    channel: Keyword
    queue: Id
    reason: str


class WorkOverflowed(Payload):
    TYPE = "work.overflowed"
    TOPIC = topics.ROUTING
    conversation_id: Id
    from_queue: Id
    to_queue: Id | None = None
    reason: str


class WorkPickRefused(AgentPayload):
    """Added to routing.v1 (additive): a pick that could not be carried out, and why."""

    TYPE = "work.pick_refused"
    TOPIC = topics.ROUTING
    conversation_id: Id
    command_id: Id | None = None
    reason: str


class WorkReleased(AgentPayload):
    TYPE = "work.released"
    TOPIC = topics.ROUTING
    conversation_id: Id
    channel: Keyword
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
    offer_id: Id


class RejectOffer(AgentPayload):
    TYPE = "offer.reject"
    TOPIC = topics.SESSIONS_COMMANDS
    offer_id: Id
    reason: Reason | None = None


class OpenSession(AgentPayload):
    TYPE = "session.open"
    TOPIC = topics.SESSIONS_COMMANDS
    conversation_id: Id | None = None
    record: RecordRef | None = None


class FocusSession(AgentPayload):
    TYPE = "session.focus"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref


class OpenTab(AgentPayload):
    TYPE = "tab.open"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    kind: Keyword
    title: Title | None = None
    target: Map = Field(default_factory=dict)


class FocusTab(AgentPayload):
    TYPE = "tab.focus"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    tab_id: Ref


class CloseTab(AgentPayload):
    TYPE = "tab.close"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    tab_id: Ref


class SaveDraft(AgentPayload):
    TYPE = "draft.save"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    tab_id: Ref
    fields: Map = Field(default_factory=dict)
    version: int = Field(default=0, ge=0)


class LinkRecord(AgentPayload):
    TYPE = "record.link"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    record: RecordRef


class SendMessage(AgentPayload):
    TYPE = "message.send"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    text: Annotated[Text, Field(min_length=1)]
    visibility: Literal["public", "internal"] = "public"
    suggestion_id: Id | None = None


class CloseSession(AgentPayload):
    TYPE = "session.close"
    TOPIC = topics.SESSIONS_COMMANDS
    session_id: Ref
    confirmed: bool = False
    disposition: Id | None = Field(default=None, description="the wrap-up's disposition code, from the configuration")
    note: Note | None = Field(default=None, description="the wrap-up note")


class TransferSession(AgentPayload):
    """The agent hands the session's conversation to a queue or to another agent."""

    TYPE = "session.transfer"
    TOPIC = topics.SESSIONS_COMMANDS
    agent_id: Id
    session_id: Ref
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
    offer_id: Id
    conversation_id: Id
    channel: Keyword
    expires_at: datetime
    title: Title | None = None
    queue: Id | None = None
    notification: dict[str, Any] | None = Field(
        default=None, description="how the client announces it: the agent's offer_notifications setting"
    )
    subject: Title | None = Field(default=None, description="what the customer came about")


class OfferWithdrawn(SessionsEvent):
    TYPE = "offer.withdrawn"
    TOPIC = topics.SESSIONS
    offer_id: Id
    conversation_id: Id
    channel: Keyword
    expires_at: datetime
    reason: str = "expired"


class OfferAccepted(SessionsEvent):
    TYPE = "offer.accepted"
    TOPIC = topics.SESSIONS
    offer_id: Id
    conversation_id: Id
    channel: Keyword
    expires_at: datetime


class OfferRejected(SessionsEvent):
    TYPE = "offer.rejected"
    TOPIC = topics.SESSIONS
    offer_id: Id
    conversation_id: Id
    channel: Keyword
    expires_at: datetime
    reason: str | None = None


class SessionStarted(SessionsEvent):
    TYPE = "session.started"
    TOPIC = topics.SESSIONS
    session_id: Ref
    conversation_id: Id | None = None
    channel: Keyword | None = None
    title: Title
    icon: Label
    anchor_tab_id: Ref | None = None


class SessionFocused(SessionsEvent):
    TYPE = "session.focused"
    TOPIC = topics.SESSIONS
    session_id: Ref
    conversation_id: Id | None = None


class SessionRetitled(SessionsEvent):
    TYPE = "session.retitled"
    TOPIC = topics.SESSIONS
    session_id: Ref
    conversation_id: Id | None = None
    title: Title
    icon: Label
    record: RecordRef | None = None


class SessionUnreadChanged(SessionsEvent):
    TYPE = "session.unread_changed"
    TOPIC = topics.SESSIONS
    session_id: Ref
    conversation_id: Id | None = None
    unread: int
    badge: str


class SessionClosed(SessionsEvent):
    TYPE = "session.closed"
    TOPIC = topics.SESSIONS
    session_id: Ref
    conversation_id: Id | None = None
    channel: Keyword | None = None
    reason: str | None = Field(default=None, description="set when the agent did not close it (transferred)")
    disposition: Id | None = Field(default=None, description="the wrap-up's disposition code, as session.close gave it")
    note: Note | None = Field(default=None, description="the wrap-up note, as session.close gave it")


class TabOpened(SessionsEvent):
    TYPE = "tab.opened"
    TOPIC = topics.SESSIONS
    session_id: Ref
    tab_id: Ref
    kind: Keyword
    title: Title | None = None
    conversation_id: Id | None = None
    target: dict[str, Any] | None = Field(default=None, description="what the tab shows, as tab.open gave it")


class TabFocused(SessionsEvent):
    TYPE = "tab.focused"
    TOPIC = topics.SESSIONS
    session_id: Ref
    tab_id: Ref
    conversation_id: Id | None = None


class TabClosed(SessionsEvent):
    TYPE = "tab.closed"
    TOPIC = topics.SESSIONS
    session_id: Ref
    tab_id: Ref
    conversation_id: Id | None = None


class DraftSaved(SessionsEvent):
    TYPE = "draft.saved"
    TOPIC = topics.SESSIONS
    session_id: Ref
    tab_id: Ref
    version: int
    conversation_id: Id | None = None
    fields: dict[str, Any] | None = None


class PaneUpdated(SessionsEvent):
    TYPE = "pane.updated"
    TOPIC = topics.SESSIONS
    session_id: Ref
    conversation_id: Id | None = None
    pane: dict[str, Any] = Field(default_factory=dict)
    updated: str | None = Field(
        default=None, description="the part of the pane that changed: summary, articles, replies or case_summary"
    )


class MessageReceived(SessionsEvent):
    """A conversation message, delivered to the agent who holds the conversation's session."""

    TYPE = "message.received"
    TOPIC = topics.SESSIONS
    session_id: Ref
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
    reason: str | None = Field(default=None, description="copied from presence.changed")
    closed_channels: Keywords = Field(default_factory=list)
    colour: Id | None = None


class SupervisorActionRecorded(SessionsEvent):
    """A supervisor acted on this agent or one of the agent's conversations: who, what and when."""

    TYPE = "supervisor.action"
    TOPIC = topics.SESSIONS
    supervisor_id: Id
    action: SupervisorAction
    conversation_id: Id | None = None
    session_id: Ref | None = None
    detail: Text | None = Field(default=None, description="what the agent is told, for a person")
    time: datetime


class CommandRejected(SessionsEvent):
    TYPE = "command.rejected"
    TOPIC = topics.SESSIONS
    command_id: Annotated[str, Field(max_length=MAX_ID_CHARS)] = Field(
        description="the rejected command's CloudEvent id (empty when the command had none)"
    )
    command_type: EventType | None = None
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
    status: Id | None = None
    channels: Annotated[dict[Keyword, Literal["open", "closed"]], AfterValidator(_bounded)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _something(self) -> SetPresence:
        if self.status is None and not self.channels:
            raise ValueError("presence.set needs a status, channels, or both")
        return self


class AgentSignedIn(AgentPayload):
    TYPE = "agent.signed_in"
    TOPIC = topics.PRESENCE_COMMANDS
    device_id: Id = "default"


class AgentSignedOut(AgentPayload):
    TYPE = "agent.signed_out"
    TOPIC = topics.PRESENCE_COMMANDS
    device_id: Id = "default"


class AgentHeartbeat(AgentPayload):
    TYPE = "agent.heartbeat"
    TOPIC = topics.PRESENCE_COMMANDS
    device_id: Id = "default"
    idle_s: float | None = Field(default=None, ge=0, description="seconds since the last input on this device")


class PresenceChanged(AgentPayload):
    TYPE = "presence.changed"
    TOPIC = topics.PRESENCE
    status: Id
    base: Id | None = None
    previous: Id | None = None
    source: Literal["manual", "automatic", "device", "system"]
    reason: str | None = None
    closed_channels: Keywords = Field(default_factory=list)
    colour: Label | None = None


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
    conversation_id: Id
    summary: str
    entities: dict[str, list[str]] = Field(default_factory=dict)
    provider: str = "embedded"
    model: str | None = None
    intent: str | None = None
    trigger: str | None = None
    message_count: int = 0
    agent_id: Id | None = Field(default=None, description="the agent whose request or release triggered it")
    fallback: str | None = Field(
        default=None, description="why the embedded model answered instead of the configured provider"
    )


class RepliesSuggested(Payload):
    TYPE = "assist.replies_suggested"
    TOPIC = topics.ASSIST
    conversation_id: Id
    replies: list[dict[str, Any]] = Field(default_factory=list)
    for_message_id: Id | None = Field(default=None, description="the customer message the replies answer")
    provider: str = "embedded"
    model: str | None = None


class ArticlesSurfaced(Payload):
    TYPE = "assist.articles_surfaced"
    TOPIC = topics.ASSIST
    conversation_id: Id
    articles: list[dict[str, Any]] = Field(default_factory=list)
    provider: str = "embedded"
    model: str | None = None


class CaseSummaryDrafted(Payload):
    TYPE = "assist.case_summary_drafted"
    TOPIC = topics.ASSIST
    conversation_id: Id
    draft: dict[str, Any] = Field(default_factory=dict)
    trigger: str | None = None
    agent_id: Id | None = Field(default=None, description="the agent whose request or release triggered it")
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


def _too_deep(node: Any, level: int) -> bool:
    """Whether a decoded JSON value nests deeper than MAX_DEPTH (recursion stops at that depth)."""
    if level > MAX_DEPTH:
        return True
    if isinstance(node, dict):
        return any(isinstance(v, dict | list) and _too_deep(v, level + 1) for v in node.values())
    if isinstance(node, list):
        return any(isinstance(v, dict | list) and _too_deep(v, level + 1) for v in node)
    return False


def _nul_at(node: Any, path: str) -> str | None:
    """Where a NUL character is in a decoded JSON value (a path such as `data.customer.name`)."""
    if isinstance(node, str):
        return path or "(root)" if "\x00" in node else None
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key[:60]}" if path else key[:60]
            if "\x00" in key:
                return where
            if (found := _nul_at(value, where)) is not None:
                return found
    if isinstance(node, list):
        for i, value in enumerate(node):
            if (found := _nul_at(value, f"{path}[{i}]")) is not None:
                return found
    return None


def decode(raw: bytes | str | None) -> dict[str, Any]:
    """The JSON object of one record, checked for size, nesting and storable text (not yet a CloudEvent)."""
    if raw is None or raw == b"" or raw == "":
        raise InvalidEvent("empty record: expected a CloudEvents JSON document")
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_RECORD_BYTES:
        raise InvalidEvent(f"record is {size:,} bytes; records are limited to {MAX_RECORD_BYTES:,} bytes")
    try:
        doc = orjson.loads(raw)  # UTF-8 only, and no lone surrogates: PostgreSQL could not store them
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent(f"expected a JSON object (CloudEvent), got {type(doc).__name__}")
    # fewer brackets than levels allowed cannot nest too deep: most records skip the walk
    opened = raw.count("{") + raw.count("[") if isinstance(raw, str) else raw.count(b"{") + raw.count(b"[")
    if opened > MAX_DEPTH and _too_deep(doc, 1):
        raise InvalidEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
    # JSON can only carry NUL as an escape: look for it only when the text has one
    mark = "\\u0000" if isinstance(raw, str) else b"\\u0000"
    if mark in raw and (where := _nul_at(doc, "")) is not None:  # type: ignore[operator]
        raise InvalidEvent(f"{where}: contains a NUL character (\\u0000), which cannot be stored")
    return doc


def parse(raw: bytes | str | None, topic: str) -> tuple[CloudEvent, Payload]:
    """Parse one record of an (unprefixed) `topic` into its envelope and its typed payload."""
    return parse_document(decode(raw), topic)


def parse_document(doc: dict[str, Any], topic: str) -> tuple[CloudEvent, Payload]:
    """Validate a decoded record (`decode`) as an event of `topic`. An invalid envelope's reason
    also says what else is wrong (its type, its data), so one round trip fixes the record."""
    allowed = TYPES_BY_TOPIC.get(topic, frozenset())

    def type_problem(kind: Any) -> str | None:
        if not isinstance(kind, str) or kind in allowed:
            return None
        return f"unknown type {kind[:MAX_TYPE_CHARS]!r} on {topic}; expected one of: {', '.join(sorted(allowed))}"

    try:
        envelope = CloudEvent.model_validate(doc)
    except ValidationError as exc:
        problems = [f"invalid CloudEvent envelope: {_describe(exc)}"]
        kind, data = doc.get("type"), doc.get("data")
        if (unknown := type_problem(kind)) is not None:
            problems.append(unknown)
        elif isinstance(kind, str) and isinstance(data, dict):
            try:
                PAYLOADS[kind].model_validate(data)
            except ValidationError as data_exc:
                problems.append(f"invalid {kind} data: {_describe(data_exc)}")
        raise InvalidEvent("; ".join(problems)) from exc
    if (unknown := type_problem(envelope.type)) is not None:
        raise InvalidEvent(unknown)
    model = PAYLOADS[envelope.type]
    try:
        payload = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {envelope.type} data: {_describe(exc)}") from exc
    return envelope, payload


def reject_invalid_command(doc: dict[str, Any] | None, error: InvalidEvent) -> CommandRejected | None:
    """`command.rejected` for an agent's command refused at parse time, when its `data.agent_id` is
    readable (None otherwise: the record only goes to the DLQ). `command_id` is the command's id,
    or its first characters when the id itself is what was refused."""
    if doc is None:
        return None
    data = doc.get("data")
    agent_id = data.get("agent_id") if isinstance(data, dict) else None
    if not isinstance(agent_id, str) or not 0 < len(agent_id.strip()) <= MAX_ID_CHARS:
        return None
    agent_id = agent_id.strip()
    if not agent_id.isprintable():
        return None
    raw_id, raw_type = doc.get("id"), doc.get("type")
    command_id = raw_id[:MAX_ID_CHARS] if isinstance(raw_id, str) and raw_id[:MAX_ID_CHARS].isprintable() else ""
    raw_type = raw_type.strip() if isinstance(raw_type, str) else None
    command_type = raw_type if raw_type and len(raw_type) <= MAX_TYPE_CHARS and raw_type.isprintable() else None
    reason = f"command refused: {error}"
    if len(reason) > MAX_NOTE_CHARS:
        reason = reason[: MAX_NOTE_CHARS - 1] + "…"
    return CommandRejected(agent_id=agent_id, command_id=command_id, command_type=command_type, reason=reason)


class _Ids:
    """Random (version 4) UUIDs from the operating system's CSPRNG, read 4 KiB at a time: one system
    call per 256 ids, and text without `uuid.UUID`'s checks (a third of what emitting an event cost)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.pool, self.at = b"", 0

    def __call__(self) -> str:
        with self.lock:
            if self.at >= len(self.pool):
                self.pool, self.at = os.urandom(4096), 0
            raw = bytearray(self.pool[self.at : self.at + 16])
            self.at += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        x = raw.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


new_id = _Ids()
# a forked child must not hand out its parent's remaining ids
os.register_at_fork(after_in_child=new_id.reset)


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
    return CloudEvent(
        id=id if id is not None else new_id(),
        source=source,
        type=payload.TYPE,
        subject=subject,
        data=data,
    )


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
