"""The contract of DESIGN.md: every type has a model, parsing errors read like sentences."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared import contracts as c
from shared import topics
from tools.testing import DESIGN_EXAMPLE

DESIGN_TYPES = {
    topics.CONVERSATIONS: {"conversation.arrived", "conversation.ended"},
    topics.MESSAGES: {"message.posted"},
    topics.ROUTING_COMMANDS: {"work.pick", "work.transfer"},
    topics.ROUTING: {
        "work.queued",
        "work.offered",
        "work.offer_expired",
        "work.assigned",
        "work.requeued",
        "work.overflowed",
        "work.released",
        "capacity.changed",
    },
    topics.SESSIONS_COMMANDS: {
        "offer.accept",
        "offer.reject",
        "session.open",
        "session.focus",
        "tab.open",
        "tab.focus",
        "tab.close",
        "draft.save",
        "record.link",
        "message.send",
        "session.close",
    },
    topics.SESSIONS: {
        "offer.received",
        "offer.withdrawn",
        "offer.accepted",
        "offer.rejected",
        "session.started",
        "session.focused",
        "session.retitled",
        "session.unread_changed",
        "session.closed",
        "tab.opened",
        "tab.focused",
        "tab.closed",
        "draft.saved",
        "pane.updated",
        "command.rejected",
    },
    topics.PRESENCE_COMMANDS: {"presence.set", "agent.signed_in", "agent.signed_out", "agent.heartbeat"},
    topics.PRESENCE: {"presence.changed"},
    topics.ASSIST: {
        "assist.summary_ready",
        "assist.replies_suggested",
        "assist.articles_surfaced",
        "assist.case_summary_drafted",
    },
}

# Types added since DESIGN.md (additions only, as DESIGN.md allows).
ADDED_TYPES = {
    topics.ROUTING: {"work.pick_refused"},
    # the agent workspace and the supervisor view (issue 10)
    topics.CONVERSATIONS: {"conversation.participant_changed"},
    topics.SESSIONS_COMMANDS: {"session.transfer", "supervisor.act"},
    topics.SESSIONS: {"message.received", "presence.updated", "supervisor.action"},
    topics.ASSIST: {"assist.escalation_detected"},
}


def test_every_design_type_has_a_model_on_its_topic() -> None:
    expected = {t: v | ADDED_TYPES.get(t, set()) for t, v in DESIGN_TYPES.items()}
    assert {t: set(v) for t, v in c.TYPES_BY_TOPIC.items()} == expected


def test_the_design_example_parses() -> None:
    env, data = c.parse(json.dumps(DESIGN_EXAMPLE), topics.CONVERSATIONS)
    assert isinstance(data, c.ConversationArrived)
    assert data.customer and data.customer.name == "Ada Lovelace"
    assert env.id == DESIGN_EXAMPLE["id"]


def test_unknown_fields_are_kept_for_forward_compatibility() -> None:
    doc = {**DESIGN_EXAMPLE, "data": {**DESIGN_EXAMPLE["data"], "sentiment": "angry"}}
    _, data = c.parse(json.dumps(doc), topics.CONVERSATIONS)
    assert data.model_dump()["sentiment"] == "angry"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty record"),
        (b"{oops", "not JSON"),
        (b"[1]", "expected a JSON object"),
        (json.dumps({**DESIGN_EXAMPLE, "specversion": "0.3"}).encode(), "specversion"),
        (json.dumps({**DESIGN_EXAMPLE, "type": "session.started"}).encode(), "unknown type 'session.started'"),
        (json.dumps({**DESIGN_EXAMPLE, "data": {"channel": "chat"}}).encode(), "conversation_id: Field required"),
        (
            json.dumps(
                {**DESIGN_EXAMPLE, "data": {"conversation_id": "c", "channel": "chat", "priority": 1000}}
            ).encode(),
            "priority",
        ),
    ],
)
def test_invalid_records_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(c.InvalidEvent, match=reason):
        c.parse(raw, topics.CONVERSATIONS)


def test_keys_follow_design() -> None:
    assert c.key_of(c.ConversationArrived(conversation_id="c-1", channel="chat")) == "c-1"
    assert c.key_of(c.AcceptOffer(agent_id="agent-7", offer_id="o")) == "agent-7"
    assert c.key_of(c.CapacityChanged(agent_id="agent-7", used={}, limits={})) == "agent-7"


@pytest.mark.parametrize(("title", "icon"), [("Grace Hopper", "Gr"), ("Ada Lovelace", "Ad"), ("Visitor 3", "Vi")])
def test_icon_is_the_first_two_letters(title: str, icon: str) -> None:
    assert c.icon_of(title) == icon


def test_a_records_json_is_pydantics_document_written_faster() -> None:
    """`to_bytes` writes with orjson what `model_dump_json(exclude_none=True)` writes: null envelope
    attributes left out, nulls in data kept, extensions after the attributes, times as RFC 3339."""
    from decimal import Decimal

    cases = [
        c.event(c.AgentSignedIn(agent_id="agent-1"), source="/tests"),
        c.CloudEvent(id="e-1", source="/s", type="capacity.changed", data={"a": None, "b": {"c": [None, 1.5]}}),
        c.CloudEvent(
            id="e-2",
            source="/s",
            type="capacity.changed",
            subject=None,
            time=datetime(2026, 1, 1, 1, 2, 3, 450000, tzinfo=timezone(timedelta(hours=2))),
            data={"text": "é \u2028 \U0001f600", "n": 2**53},
            traceparent="00-abc",
            sampled=True,
            nothing=None,
        ),
        c.CloudEvent(id="e-3", source="/s", type="capacity.changed", time=datetime(2026, 1, 1, tzinfo=UTC), data={}),
        c.CloudEvent(id="e-4", source="/s", type="capacity.changed", data={"d": Decimal("1.10"), "big": 2**70}),
    ]
    for ev in cases:
        assert ev.to_bytes() == ev.model_dump_json(exclude_none=True).encode(), ev.id


def test_event_ids_are_distinct_version_4_uuids_and_a_forked_child_draws_its_own() -> None:
    import os
    import uuid

    ids = [c.new_id() for _ in range(3000)]  # more than one read of the pool
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {4} and all(str(uuid.UUID(i)) == i for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id must not be the parent's next one
        os.write(write, c.new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 36).decode()
    assert child != c.new_id() and uuid.UUID(child).version == 4
