"""The contract additions of the agent workspace and the supervisor view (issue 10): what each
validator refuses and says, the bounds on text a person types, and the Kafka key of each new type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared import contracts as c
from shared import topics

NOW = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
AGENT = {"agent_id": "agent-1"}
SUPERVISOR = {"agent_id": "agent-1", "supervisor_id": "sup-1"}


def refused(model: type[c.Payload], kwargs: dict[str, Any], reason: str) -> None:
    """`model` refuses `kwargs` saying `reason`, built directly and parsed from a record alike."""
    with pytest.raises(ValidationError, match=reason):
        model(**kwargs)
    raw = c.CloudEvent(id="e-1", source="/tests", type=model.TYPE, data=kwargs).to_bytes()
    with pytest.raises(c.InvalidEvent, match=reason):
        c.parse(raw, model.TOPIC)


# --- session.transfer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [{}, {"to_queue": "billing", "to_agent": "agent-2"}],
    ids=["neither", "both"],
)
def test_a_transfer_needs_exactly_one_target(target: dict[str, str]) -> None:
    refused(
        c.TransferSession,
        {**AGENT, "session_id": "s-1", **target},
        "session.transfer needs exactly one of to_queue or to_agent",
    )


@pytest.mark.parametrize("target", [{"to_queue": "billing"}, {"to_agent": "agent-2"}])
def test_a_transfer_to_a_queue_or_an_agent_is_accepted(target: dict[str, str]) -> None:
    command = c.TransferSession(**AGENT, session_id="s-1", note="customer wants a refund", **target)
    assert c.key_of(command) == "agent-1"


def test_an_empty_target_does_not_count_as_one() -> None:
    with pytest.raises(ValidationError, match="to_queue"):
        c.TransferSession(**AGENT, session_id="s-1", to_queue="  ")


# --- supervisor.act ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"action": "whisper", "conversation_id": "c-1"}, "supervisor.act whisper needs text"),
        ({"action": "whisper", "conversation_id": "c-1", "text": " "}, "supervisor.act whisper needs text"),
        (
            {"action": "force_transfer", "conversation_id": "c-1"},
            "supervisor.act force_transfer needs exactly one of to_queue or to_agent",
        ),
        (
            {"action": "force_transfer", "conversation_id": "c-1", "to_queue": "q", "to_agent": "agent-2"},
            "supervisor.act force_transfer needs exactly one of to_queue or to_agent",
        ),
        ({"action": "set_presence"}, "supervisor.act set_presence needs a status"),
        ({"action": "observe"}, "supervisor.act observe needs a conversation_id"),
        ({"action": "listen"}, "supervisor.act listen needs a conversation_id"),
        ({"action": "barge"}, "supervisor.act barge needs a conversation_id"),
        ({"action": "leave"}, "supervisor.act leave needs a conversation_id"),
        ({"action": "force_close"}, "supervisor.act force_close needs a conversation_id"),
        ({"action": "dance", "conversation_id": "c-1"}, "action"),
    ],
)
def test_a_supervisor_action_without_what_it_needs_is_refused(kwargs: dict[str, Any], reason: str) -> None:
    refused(c.SupervisorAct, {**SUPERVISOR, **kwargs}, reason)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "observe", "conversation_id": "c-1"},
        {"action": "listen", "conversation_id": "c-1"},
        {"action": "whisper", "conversation_id": "c-1", "text": "offer the voucher"},
        {"action": "barge", "conversation_id": "c-1"},
        {"action": "leave", "conversation_id": "c-1"},
        {"action": "force_transfer", "conversation_id": "c-1", "to_queue": "billing"},
        {"action": "force_transfer", "conversation_id": "c-1", "to_agent": "agent-2", "reason": "overloaded"},
        {"action": "force_close", "conversation_id": "c-1", "reason": "spam"},
        {"action": "set_presence", "status": "away"},
        {"action": "set_presence", "status": "away", "conversation_id": "c-1"},
    ],
)
def test_a_supervisor_action_with_what_it_needs_is_accepted_and_keyed_by_the_agent(kwargs: dict[str, Any]) -> None:
    command = c.SupervisorAct(**SUPERVISOR, **kwargs)
    ev = c.event(command, source="/tests")
    assert ev.subject == c.key_of(command) == "agent-1"
    assert c.parse(ev.to_bytes(), topics.SESSIONS_COMMANDS)[1] == command


# --- bounds on text a person types --------------------------------------------------------------


def test_a_copied_presence_reason_is_never_refused() -> None:
    """presence composes reasons from bounded parts (a reason typed + ": restored after reconnect",
    a list of channels) that can exceed one typed reason: sessions copies them as they are."""
    c.PresenceUpdated(**AGENT, status="away", source="device", reason="x" * 500 + ": restored after reconnect")


@pytest.mark.parametrize(
    ("model", "kwargs", "field", "limit"),
    [
        (c.CloseSession, {**AGENT, "session_id": "s-1"}, "note", 2000),
        (c.CloseSession, {**AGENT, "session_id": "s-1"}, "disposition", 200),
        (c.TransferSession, {**AGENT, "session_id": "s-1", "to_queue": "q"}, "note", 2000),
        (c.TransferSession, {**AGENT, "session_id": "s-1"}, "to_queue", 200),
        (c.SupervisorAct, {**SUPERVISOR, "action": "whisper", "conversation_id": "c-1"}, "text", 8000),
        (c.SupervisorAct, {**SUPERVISOR, "action": "force_close", "conversation_id": "c-1"}, "reason", 500),
        (c.SupervisorAct, {**SUPERVISOR, "action": "observe"}, "conversation_id", 200),
        (c.SupervisorAct, {"agent_id": "agent-1", "action": "set_presence", "status": "away"}, "supervisor_id", 200),
        (
            c.MessageReceived,
            {**AGENT, "session_id": "s-1", "conversation_id": "c-1", "message_id": "m-1", "sender": "customer"}
            | {"time": NOW},
            "text",
            8000,
        ),
        (c.SessionClosed, {**AGENT, "session_id": "s-1"}, "note", 2000),
        (c.EscalationDetected, {"conversation_id": "c-1", "signals": ["upset"]}, "excerpt", 300),
    ],
)
def test_text_a_person_types_is_bounded(model: type[c.Payload], kwargs: dict[str, Any], field: str, limit: int) -> None:
    model(**kwargs, **{field: "x" * limit})
    with pytest.raises(ValidationError, match=f"{field}\n  String should have at most {limit} characters"):
        model(**kwargs, **{field: "x" * (limit + 1)})


# --- the new events ----------------------------------------------------------------------------


def test_a_close_carries_its_wrap_up() -> None:
    close = c.CloseSession(**AGENT, session_id="s-1", confirmed=True, disposition="resolved", note="refund issued")
    closed = c.SessionClosed(**AGENT, session_id="s-1", disposition=close.disposition, note=close.note, seq=7)
    data = c.event(closed, source="/tests").data
    assert (data["disposition"], data["note"]) == ("resolved", "refund issued")
    # optional: a close without a wrap-up is still the close it always was
    assert "disposition" not in c.event(c.CloseSession(**AGENT, session_id="s-1"), source="/tests").data


def test_a_message_reaches_the_agent_on_the_agents_key() -> None:
    received = c.MessageReceived(
        **AGENT,
        session_id="s-1",
        conversation_id="c-1",
        message_id="m-1",
        sender="supervisor",
        sender_id="sup-1",
        visibility="internal",
        text="offer the voucher",
        time=NOW,
    )
    ev = c.event(received, source="/tests")
    assert ev.subject == "agent-1"
    _, parsed = c.parse(ev.to_bytes(), topics.SESSIONS)
    assert isinstance(parsed, c.MessageReceived) and parsed.time == NOW and parsed.visibility == "internal"


def test_a_message_from_an_unknown_sender_is_refused() -> None:
    with pytest.raises(ValidationError, match="sender"):
        c.MessageReceived(
            **AGENT, session_id="s-1", conversation_id="c-1", message_id="m-1", sender="robot", text="", time=NOW
        )


def test_presence_and_supervisor_actions_reach_the_agent_on_the_agents_key() -> None:
    updated = c.PresenceUpdated(**AGENT, status="Lunch", base="away", source="supervisor", closed_channels=["voice"])
    action = c.SupervisorActionRecorded(
        **SUPERVISOR, action="whisper", conversation_id="c-1", session_id="s-1", detail="whispered", time=NOW
    )
    assert c.key_of(updated) == c.key_of(action) == "agent-1"


def test_a_participant_change_is_keyed_by_its_conversation() -> None:
    changed = c.ParticipantChanged(
        conversation_id="c-1", participant_id="sup-1", role="supervisor", mode="listen", channel="voice"
    )
    assert c.event(changed, source="/tests").subject == "c-1"
    with pytest.raises(ValidationError, match="mode"):
        c.ParticipantChanged(conversation_id="c-1", participant_id="sup-1", role="supervisor", mode="shout")


def test_an_escalation_names_at_least_one_known_signal_and_is_keyed_by_its_conversation() -> None:
    detected = c.EscalationDetected(conversation_id="c-1", signals=["asks_for_manager", "upset"], message_id="m-3")
    assert c.event(detected, source="/tests").subject == "c-1"
    with pytest.raises(ValidationError, match="signals"):
        c.EscalationDetected(conversation_id="c-1", signals=[])
    with pytest.raises(ValidationError, match="signals"):
        c.EscalationDetected(conversation_id="c-1", signals=["bored"])
