"""Limits at the edge (issue 12): every envelope field, id, name, text and map is bounded, and a
refusal names the field and the limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import contracts as c
from shared import topics
from tools.testing import DESIGN_EXAMPLE


def record(data: dict[str, Any] | None = None, /, **envelope: Any) -> bytes:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/tests",
        "type": "conversation.arrived",
        "data": data if data is not None else {"conversation_id": "c-1", "channel": "chat"},
    }
    doc.update(envelope)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def refusal(raw: bytes, topic: str = topics.CONVERSATIONS) -> str:
    with pytest.raises(c.InvalidEvent) as exc:
        c.parse(raw, topic)
    return str(exc.value)


def test_the_design_example_is_within_every_limit() -> None:
    env, payload = c.parse(json.dumps(DESIGN_EXAMPLE), topics.CONVERSATIONS)
    assert env.id == DESIGN_EXAMPLE["id"] and payload.customer.name == "Ada Lovelace"  # type: ignore[attr-defined]


def test_an_event_without_an_id_is_refused_not_given_one() -> None:
    assert refusal(record(id=None)) == "invalid CloudEvent envelope: id: Field required"
    assert "id: String should have at least 1 character" in refusal(record(id=""))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("id", "x" * 201, "id: String should have at most 200 characters"),
        ("id", "a\nb", "id: Value error, must be printable text"),
        ("source", "/" + "s" * 500, "source: String should have at most 500 characters"),
        ("subject", "s" * 301, "subject: String should have at most 300 characters"),
        ("type", "t" * 101, "type: String should have at most 100 characters"),
    ],
)
def test_envelope_fields_are_bounded(field: str, value: str, expected: str) -> None:
    reason = refusal(record(**{field: value}))
    assert reason.startswith("invalid CloudEvent envelope") and expected in reason, reason


def test_extension_attributes_are_bounded() -> None:
    assert c.parse(record(traceparent="00-abc-def-01"), topics.CONVERSATIONS)[0].model_extra == {
        "traceparent": "00-abc-def-01"
    }
    assert "at most 16 extension attributes" in refusal(record(**{f"x{i}": "v" for i in range(17)}))
    assert "names are 1 to 50 lower-case letters or digits" in refusal(record(**{"Bad-Name": "v"}))
    assert "must be a string, number or boolean" in refusal(record(nested={"a": 1}))
    assert "at most 1000 characters" in refusal(record(big="v" * 1001))


def test_the_whole_record_is_bounded_before_it_is_decoded() -> None:
    huge = record({"conversation_id": "c-1", "channel": "chat", "customer": {"name": "n" * 900_000}})
    assert refusal(huge) == f"record is {len(huge):,} bytes; records are limited to 524,288 bytes"


def test_nesting_and_nul_characters_are_refused_with_where() -> None:
    deep: Any = "x"
    for _ in range(20):
        deep = {"a": deep}
    assert "nested deeper than 16 levels" in refusal(record({"conversation_id": "c-1", "channel": "chat", "x": deep}))
    reason = refusal(record({"conversation_id": "c-1", "channel": "chat", "customer": {"name": "Ada\u0000"}}))
    assert reason == "data.customer.name: contains a NUL character (\\u0000), which cannot be stored"
    assert refusal(b"[" * 100_000 + b"]" * 100_000).startswith("not JSON: depth limit exceeded")
    # a lone surrogate is not text: PostgreSQL could not store it
    assert refusal(b'{"id": "\\ud800"}').startswith("not JSON: no low surrogate")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"conversation_id": "c" * 201, "channel": "chat"}, "conversation_id: String should have at most 200"),
        ({"conversation_id": "c-1", "channel": "c" * 65}, "channel: String should have at most 64"),
        (
            {"conversation_id": "c-1", "channel": "chat", "customer": {"name": "n" * 10_000}},
            "customer.name: String should have at most 200 characters",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", "customer": {"id": "cust\t1"}},
            "customer.id: Value error, must be printable text",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", "record": {"type": "case", "id": "r" * 5000}},
            "record.id: String should have at most 200 characters",
        ),
        ({"conversation_id": "c-1", "channel": "chat", "subject": "s" * 501}, "subject: String should have at most"),
        (
            {"conversation_id": "c-1", "channel": "chat", "attributes": {f"k{i}": i for i in range(101)}},
            "attributes: Value error, at most 100 entries allowed, got 101",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", "attributes": {"blob": "b" * 70_000}},
            "attributes: Value error, at most 65,536 bytes as JSON allowed",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", "required_skills": {f"s{i}": 1 for i in range(101)}},
            "required_skills: Value error, at most 100 entries allowed",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", **{f"extra{i}": i for i in range(33)}},
            "at most 32 undeclared fields allowed, got 33",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", "notes": "n" * 70_000},
            "undeclared field 'notes': at most 65,536 bytes as JSON",
        ),
        (
            {"conversation_id": "c-1", "channel": "chat", "customer": {"bio": "n" * 70_000}},
            "customer: Value error, undeclared field 'bio'",
        ),
    ],
)
def test_arrival_fields_are_bounded(data: dict[str, Any], expected: str) -> None:
    reason = refusal(record(data))
    assert reason.startswith("invalid conversation.arrived data: ") and expected in reason, reason


@pytest.mark.parametrize(
    ("type_", "data", "expected"),
    [
        ("offer.accept", {"agent_id": "a" * 5000, "offer_id": "o-1"}, "agent_id: String should have at most 200"),
        ("offer.accept", {"agent_id": "agent-1", "offer_id": "o" * 5000}, "offer_id: String should have at most 200"),
        (
            "tab.open",
            {"agent_id": "agent-1", "session_id": "home", "kind": "k" * 5000},
            "kind: String should have at most 64",
        ),
        (
            "tab.open",
            {"agent_id": "agent-1", "session_id": "home", "kind": "kb", "target": {str(i): i for i in range(101)}},
            "target: Value error, at most 100 entries allowed, got 101",
        ),
        (
            "record.link",
            {"agent_id": "agent-1", "session_id": "home", "record": {"type": "case", "id": "r" * 5000}},
            "record.id: String should have at most 200",
        ),
        (
            "draft.save",
            {"agent_id": "agent-1", "session_id": "s" * 301, "tab_id": "t-1"},
            "session_id: String should have at most 300",
        ),
        (
            "message.send",
            {"agent_id": "agent-1", "session_id": "conv-c-1", "text": "t" * 8001},
            "text: String should have at most 8000",
        ),
    ],
)
def test_agent_commands_are_bounded(type_: str, data: dict[str, Any], expected: str) -> None:
    reason = refusal(record(data, type=type_), topics.SESSIONS_COMMANDS)
    assert expected in reason, reason


def test_ids_composed_by_our_services_fit_their_limits() -> None:
    """sessions names a conversation's session `conv-<conversation_id>` and a record's
    `rec-<type>-<id>`: with the longest ids allowed they still fit a session_id."""
    cid, rid, kind = "c" * c.MAX_ID_CHARS, "r" * c.MAX_ID_CHARS, "k" * c.MAX_KEYWORD_CHARS
    c.FocusSession(agent_id="agent-1", session_id=f"conv-{cid}")
    c.FocusSession(agent_id="agent-1", session_id=f"rec-{kind}-{rid}")
    c.FocusTab(agent_id="agent-1", session_id="home", tab_id=f"{kind}-0123abcd")


def test_our_own_events_get_a_fresh_id() -> None:
    a = c.event(c.ConversationEnded(conversation_id="c-1"), source="/tests")
    b = c.event(c.ConversationEnded(conversation_id="c-1"), source="/tests")
    assert a.id and b.id and a.id != b.id
    assert c.event(c.ConversationEnded(conversation_id="c-1"), source="/tests", id="given").id == "given"


def test_an_agent_command_refused_at_parse_time_is_answered_when_its_agent_is_readable() -> None:
    raw = record({"agent_id": "agent-7", "offer_id": "o-1"}, type="offer.accept", id="x" * 5000)
    with pytest.raises(c.InvalidEvent) as exc:
        c.parse(raw, topics.SESSIONS_COMMANDS)
    answer = c.reject_invalid_command(json.loads(raw), exc.value)
    assert isinstance(answer, c.CommandRejected)
    assert answer.agent_id == "agent-7" and answer.command_type == "offer.accept"
    assert answer.command_id == "x" * 200  # the id's first characters, for the client to match
    assert answer.reason == (
        "command refused: invalid CloudEvent envelope: id: String should have at most 200 characters"
    )

    # no id at all: still answered, with an empty command_id
    no_id = json.loads(record({"agent_id": "agent-7", "offer_id": "o-1"}, type="offer.accept", id=None))
    answer = c.reject_invalid_command(no_id, c.InvalidEvent("invalid CloudEvent envelope: id: Field required"))
    assert answer is not None and answer.command_id == ""

    # nobody to answer: not JSON, no agent, an unreadable agent id
    assert c.reject_invalid_command(None, c.InvalidEvent("not JSON")) is None
    assert c.reject_invalid_command({"data": {}}, c.InvalidEvent("x")) is None
    assert c.reject_invalid_command({"data": {"agent_id": "a" * 201}}, c.InvalidEvent("x")) is None
    assert c.reject_invalid_command({"data": {"agent_id": "a\nb"}}, c.InvalidEvent("x")) is None
    assert c.reject_invalid_command({"data": "nope"}, c.InvalidEvent("x")) is None
