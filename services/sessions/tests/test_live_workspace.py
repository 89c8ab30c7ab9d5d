"""Issue 10's flows through sessions' real consumers (TestKafkaBroker, fake store): transcripts and
messages to the agent, presence, Home's dashboard, wrap-up, transfers, supervisor actions, escalations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sessions import service
from sessions.app import build_runtime
from sessions.config import SessionsConfig
from sessions.settings import SessionsSettings
from sessions.store import FakeSessionsStore
from shared import contracts as c
from shared.config import ConfigError, load
from shared.tx import MemoryDatabase
from tools.testing import MemoryBus, in_memory

DISPOSITIONS = [
    {"code": "resolved", "label": "Resolved"},
    {"code": "follow_up", "label": "Follow-up needed"},
]
CONFIG = {"sessions": {"profiles": {"tight": {"pane_tools": ["summary"]}}, "agents": {"agent-2": {"profile": "tight"}}}}


@pytest.fixture
def fake() -> FakeSessionsStore:
    return FakeSessionsStore()


def runtime_for(tmp_path: Path, fake: FakeSessionsStore, config: dict[str, Any]) -> Any:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    return build_runtime(SessionsSettings(config_file=str(path)), database=MemoryDatabase(fake))


@pytest.fixture
async def bus(tmp_path: Path, fake: FakeSessionsStore) -> AsyncIterator[MemoryBus]:
    config = {"sessions": {**CONFIG["sessions"], "dispositions": DISPOSITIONS}}
    async with in_memory(runtime_for(tmp_path, fake, config)) as bus:
        yield bus


def assigned(agent_id: str, cid: str, queue: str = "general", name: str = "Ada Lovelace") -> c.WorkAssigned:
    return c.WorkAssigned(
        agent_id=agent_id,
        conversation_id=cid,
        channel="chat",
        queue=queue,
        conversation={"conversation_id": cid, "customer": {"name": name}},
    )


def customer_says(cid: str, text: str, message_id: str | None = None) -> c.MessagePosted:
    extra = {"message_id": message_id} if message_id else {}
    return c.MessagePosted(conversation_id=cid, sender="customer", sender_id="cust-1", text=text, **extra)


def last(bus: MemoryBus, type: str) -> dict[str, Any]:
    return bus.emitted(type)[-1].data


def session_of(ws: dict[str, Any], session_id: str) -> dict[str, Any]:
    return next(s for s in ws["sessions"] if s["session_id"] == session_id)


# --- messages and transcripts ---------------------------------------------------------------------


async def test_messages_reach_the_agent_holding_the_conversation_in_order(
    bus: MemoryBus, fake: FakeSessionsStore
) -> None:
    await bus.send(customer_says("c-1", "before anyone holds it"))
    assert bus.emitted("message.received") == []  # stored, delivered to nobody
    await bus.send(assigned("agent-1", "c-1"))
    # the new holder's stream catches up on what was said before (flow 8), right after session.started
    types = [e.type for e in bus.emitted()]
    assert types.index("session.started") < types.index("message.received")
    (earlier,) = bus.emitted("message.received")
    assert (earlier.data["text"], earlier.data["session_id"]) == ("before anyone holds it", "conv-c-1")
    await bus.send(assigned("agent-1", "c-1"), id="redelivered")  # an assignment seen again sends nothing twice
    assert len(bus.emitted("message.received")) == 1
    await bus.send(assigned("agent-1", "c-2"))  # in focus now: c-1 is not
    await bus.send(customer_says("c-1", "hello?", message_id="m-2"))
    await bus.send(customer_says("c-1", "hello?", message_id="m-2"), id="another-event")  # posted twice: once
    send = await bus.send(c.SendMessage(agent_id="agent-1", session_id="conv-c-1", text="Hi Ada"))
    await bus.send(
        c.MessagePosted(conversation_id="c-1", sender="supervisor", sender_id="sup-1", visibility="internal", text="!")
    )
    await bus.relay()  # the agent's own message comes back through conversations.messages.v1
    received = bus.emitted("message.received")[1:]
    assert [(m.data["sender"], m.data["text"], m.data["visibility"]) for m in received] == [
        ("customer", "hello?", "public"),
        ("supervisor", "!", "internal"),
        ("agent", "Hi Ada", "public"),
    ]
    assert all((m.data["agent_id"], m.data["session_id"]) == ("agent-1", "conv-c-1") for m in received)
    assert received[-1].data["command_id"] == send.id and received[-1].data["sender_id"] == "agent-1"
    # unread: the customer's and the supervisor's messages, not the agent's own
    assert [e.data["unread"] for e in bus.emitted("session.unread_changed")] == [1, 2]
    ws = await service.workspace(fake, "agent-1")
    transcript = session_of(ws, "conv-c-1")["transcript"]
    assert [(m["sender"], m["text"]) for m in transcript] == [
        ("customer", "before anyone holds it"),
        ("customer", "hello?"),
        ("supervisor", "!"),
        ("agent", "Hi Ada"),
    ]
    assert set(transcript[0]) == {"message_id", "sender", "sender_id", "visibility", "text", "time", "delivery"}
    assert {m["delivery"] for m in transcript} == {"sent"}
    assert session_of(ws, "conv-c-1")["transcript_more"] is False
    assert (session_of(ws, "conv-c-2")["transcript"], session_of(ws, "home")["transcript"]) == ([], [])


async def test_a_focused_session_gets_messages_without_unread(bus: MemoryBus) -> None:
    await bus.send(assigned("agent-1", "c-1"))
    await bus.send(customer_says("c-1", "hi"))
    assert len(bus.emitted("message.received")) == 1 and bus.emitted("session.unread_changed") == []


async def test_history_pages_back_for_conversations_the_agent_held(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(assigned("agent-1", "c-1"))
    for i in range(60):
        await bus.send(customer_says("c-1", f"line {i}", message_id=f"m-{i:02}"))
    ws = await service.workspace(fake, "agent-1")
    conv = session_of(ws, "conv-c-1")
    assert len(conv["transcript"]) == 50 and conv["transcript_more"] is True
    assert (conv["transcript"][0]["message_id"], conv["transcript"][-1]["message_id"]) == ("m-10", "m-59")
    page = await service.history(fake, "agent-1", "c-1", "m-10")
    assert page["conversation_id"] == "c-1" and page["more"] is False
    assert [m["message_id"] for m in page["messages"]] == [f"m-{i:02}" for i in range(10)]
    small = await service.history(fake, "agent-1", "c-1", "m-10", limit=4)
    assert [m["message_id"] for m in small["messages"]] == ["m-06", "m-07", "m-08", "m-09"] and small["more"]
    await bus.send(c.CloseSession(agent_id="agent-1", session_id="conv-c-1", confirmed=True))
    assert len((await service.history(fake, "agent-1", "c-1", None))["messages"]) == 50  # held before
    with pytest.raises(PermissionError, match="agent-2 has not held conversation 'c-1'"):
        await service.history(fake, "agent-2", "c-1", None)
    assert len((await service.transcript(fake, "c-1", None, 5))["messages"]) == 5  # a supervisor's read


# --- presence ------------------------------------------------------------------------------------


async def test_presence_is_relayed_to_the_agent_and_kept_for_the_snapshot(
    bus: MemoryBus, fake: FakeSessionsStore
) -> None:
    assert (await service.workspace(fake, "agent-1"))["presence"] is None
    changed = await bus.send(
        c.PresenceChanged(
            agent_id="agent-1",
            status="Lunch",
            base="away",
            previous="available",
            source="manual",
            closed_channels=["voice"],
            colour="amber",
        )
    )
    assert last(bus, "presence.updated") == {
        **last(bus, "presence.updated"),
        "status": "Lunch",
        "base": "away",
        "previous": "available",
        "source": "manual",
        "closed_channels": ["voice"],
        "colour": "amber",
    }
    presence = (await service.workspace(fake, "agent-1"))["presence"]
    assert presence == {
        "status": "Lunch",
        "base": "away",
        "closed_channels": ["voice"],
        "since": changed.time,
        "source": "manual",
    }


# --- Home's dashboard ----------------------------------------------------------------------------


async def test_the_dashboard_lists_my_work_my_queues_work_and_what_i_closed(
    bus: MemoryBus, fake: FakeSessionsStore
) -> None:
    await bus.send(
        c.ConversationArrived(
            conversation_id="c-1", channel="chat", customer=c.Customer(name="Grace Hopper"), priority=5
        )
    )
    await bus.send(c.ConversationArrived(conversation_id="c-2", channel="email", subject="Invoice 12"))
    await bus.send(
        c.ConversationArrived(
            conversation_id="c-3", channel="case", record=c.RecordRef(type="case", id="9", title="Case 9")
        )
    )
    await bus.send(c.WorkQueued(conversation_id="c-1", channel="chat", queue="general", position=1))
    await bus.send(c.WorkQueued(conversation_id="c-2", channel="email", queue="billing", position=1))
    await bus.send(c.WorkQueued(conversation_id="c-3", channel="case", queue="general", position=2))
    board = await service.dashboard(fake, "agent-1", ["general"])
    assert [(w["conversation_id"], w["title"], w["priority"]) for w in board["queue_work"]] == [
        ("c-1", "Grace Hopper", 5),
        ("c-3", "Case 9", 0),
    ]
    assert set(board["queue_work"][0]) == {"conversation_id", "channel", "title", "queue", "waiting_s", "priority"}
    assert board["queue_work"][0]["waiting_s"] >= 0
    everything = await service.dashboard(fake, "agent-1", None)
    assert {w["conversation_id"]: w["title"] for w in everything["queue_work"]}["c-2"] == "Invoice 12"
    # overflowed to billing; offered (still open work); assigned: mine, no longer waiting
    await bus.send(c.WorkOverflowed(conversation_id="c-3", from_queue="general", to_queue="billing", reason="full"))
    await bus.send(c.WorkOverflowed(conversation_id="c-1", from_queue="general", to_queue=None, reason="kept"))
    assert [w["conversation_id"] for w in (await service.dashboard(fake, "agent-1", ["general"]))["queue_work"]] == [
        "c-1"
    ]
    await bus.send(assigned("agent-1", "c-1", queue="general", name="Grace Hopper"))
    board = (await service.workspace(fake, "agent-1", ["general", "billing"]))["dashboard"]
    assert [w["conversation_id"] for w in board["queue_work"]] == ["c-2", "c-3"]
    assert [(w["conversation_id"], w["session_id"], w["title"], w["queue"]) for w in board["my_work"]] == [
        ("c-1", "conv-c-1", "Grace Hopper", "general")
    ]
    await bus.send(c.CloseSession(agent_id="agent-1", session_id="conv-c-1", confirmed=True))
    await bus.send(c.ConversationEnded(conversation_id="c-2"))
    board = await service.dashboard(fake, "agent-1", None)
    assert board["my_work"] == [] and [w["conversation_id"] for w in board["queue_work"]] == ["c-3"]
    assert [(w["conversation_id"], w["title"]) for w in board["closed"]] == [("c-1", "Grace Hopper")]
    assert board["closed"][0]["closed_at"] is not None


async def test_offers_requeues_and_releases_move_waiting_work(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(c.WorkQueued(conversation_id="c-1", channel="chat", queue="general", position=1))
    await bus.send(
        c.WorkOffered(
            agent_id="agent-2",
            offer_id="o-1",
            conversation_id="c-1",
            channel="chat",
            queue="general",
            expires_at=datetime.now(UTC) + timedelta(seconds=30),
        )
    )
    assert [w.state for w in fake.waiting.values()] == ["offered"]
    await bus.send(c.WorkQueued(conversation_id="c-1", channel="chat", queue="general", position=1, update=True))
    assert [w.state for w in fake.waiting.values()] == ["offered"]  # a new position, still offered
    await bus.send(c.WorkRequeued(conversation_id="c-1", channel="chat", queue="general", reason="offer expired"))
    assert [w.state for w in fake.waiting.values()] == ["waiting"]
    await bus.send(c.WorkReleased(agent_id="agent-2", conversation_id="c-1", channel="chat", reason="abandoned"))
    assert fake.waiting == {}


async def test_the_snapshot_names_channels_and_dispositions(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(
        c.WorkAssigned(agent_id="agent-1", conversation_id="c-1", channel="whatsapp", queue="general", conversation={})
    )
    ws = await service.workspace(fake, "agent-1")
    assert ws["channels"] == ["chat", "voice", "email", "sms", "case", "whatsapp"]
    assert ws["dispositions"] == DISPOSITIONS
    assert ws["statuses"] == [] and ws["server_time"].endswith("+00:00")


# --- wrap-up -------------------------------------------------------------------------------------


async def test_a_close_carries_a_known_disposition_and_note(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(assigned("agent-1", "c-1"))
    await bus.send(c.CloseSession(agent_id="agent-1", session_id="conv-c-1", confirmed=True, disposition="spam"))
    assert (
        last(bus, "command.rejected")["reason"] == "unknown disposition 'spam'; known dispositions: resolved, follow_up"
    )
    assert fake.sessions[("agent-1", "conv-c-1")].status == "open"
    await bus.send(
        c.CloseSession(
            agent_id="agent-1", session_id="conv-c-1", confirmed=True, disposition="resolved", note="Refund sent"
        )
    )
    closed = last(bus, "session.closed")
    assert (closed["disposition"], closed["note"], closed.get("reason")) == ("resolved", "Refund sent", None)
    stored = fake.sessions[("agent-1", "conv-c-1")]
    assert (stored.status, stored.disposition, stored.note) == ("closed", "resolved", "Refund sent")


async def test_without_configured_dispositions_any_is_kept(tmp_path: Path, fake: FakeSessionsStore) -> None:
    async with in_memory(runtime_for(tmp_path, fake, CONFIG)) as bus:
        await bus.send(assigned("agent-1", "c-1"))
        await bus.send(c.CloseSession(agent_id="agent-1", session_id="conv-c-1", confirmed=True, disposition="x"))
        assert last(bus, "session.closed")["disposition"] == "x"
        assert (await service.workspace(fake, "agent-1"))["dispositions"] == []


@pytest.mark.parametrize(
    ("dispositions", "problem"),
    [
        ("    - {code: a, label: A}\n    - {code: a, label: B}\n", "disposition codes must be unique; repeated: a"),
        ("    - {code: a}\n", "line 3: sessions.dispositions.0.label"),
        ("    - {code: a, label: A, colour: red}\n", "sessions.dispositions.0.colour: Extra inputs"),
    ],
)
def test_invalid_dispositions_are_refused(tmp_path: Path, dispositions: str, problem: str) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text("sessions:\n  dispositions:\n" + dispositions)
    with pytest.raises(ConfigError) as refused:
        build_runtime(SessionsSettings(config_file=str(path)), database=MemoryDatabase(FakeSessionsStore()))
    assert problem in str(refused.value)


def test_the_demo_configuration_has_its_dispositions() -> None:
    demo = Path(__file__).resolve().parents[3] / "deploy/demo/switchboard.yaml"
    cfg = load(str(demo), SessionsConfig, "sessions")
    assert [d.code for d in cfg.dispositions] == ["resolved", "follow_up", "escalated", "no_answer", "spam"]


# --- transfers -----------------------------------------------------------------------------------


async def test_an_agent_transfers_its_conversation_through_routing(bus: MemoryBus) -> None:
    await bus.send(assigned("agent-1", "c-1"))
    command = await bus.send(c.TransferSession(agent_id="agent-1", session_id="conv-c-1", to_queue="billing"))
    assert last(bus, "work.transfer") == {
        "conversation_id": "c-1",
        "agent_id": "agent-1",
        "to_queue": "billing",
        "command_id": command.id,
    }
    await bus.send(c.TransferSession(agent_id="agent-2", session_id="conv-c-1", to_agent="agent-3"))
    assert "no open session 'conv-c-1'" in last(bus, "command.rejected")["reason"]
    await bus.send(c.TransferSession(agent_id="agent-1", session_id="home", to_queue="billing"))
    assert "holds no conversation" in last(bus, "command.rejected")["reason"]
    await bus.send(c.TransferSession(agent_id="agent-1", session_id="conv-c-1", to_agent="agent-1"))
    assert "you hold this conversation already" in last(bus, "command.rejected")["reason"]
    assert len(bus.emitted("work.transfer")) == 1


# --- supervisor actions --------------------------------------------------------------------------


def act(action: str, cid: str | None = "c-1", **kw: Any) -> c.SupervisorAct:
    return c.SupervisorAct(agent_id="agent-1", supervisor_id="sup-1", action=action, conversation_id=cid, **kw)  # type: ignore[arg-type]


async def test_supervisor_actions_are_recorded_told_and_carried_out(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(assigned("agent-1", "c-1"))
    await bus.send(act("observe"))
    await bus.send(act("whisper", text="Offer the refund"))
    await bus.send(act("barge", text="Hello, I am the supervisor"))
    await bus.send(act("leave"))
    await bus.send(act("set_presence", None, status="away"))
    recorded = bus.emitted("supervisor.action")
    assert [(e.data["action"], e.data.get("session_id")) for e in recorded] == [
        ("observe", "conv-c-1"),
        ("whisper", "conv-c-1"),
        ("barge", "conv-c-1"),
        ("leave", "conv-c-1"),
        ("set_presence", None),
    ]
    assert recorded[1].data["detail"] == "sup-1 whispered in Ada Lovelace: Offer the refund"
    assert [
        (e.data["mode"], e.data["participant_id"], e.data["channel"])
        for e in bus.emitted("conversation.participant_changed")
    ] == [
        ("observe", "sup-1", "chat"),
        ("barge", "sup-1", "chat"),
        ("left", "sup-1", "chat"),
    ]
    posted = bus.emitted("message.posted")
    assert [(m.data["sender"], m.data["sender_id"], m.data["visibility"], m.data["text"]) for m in posted] == [
        ("supervisor", "sup-1", "internal", "Offer the refund"),
        ("supervisor", "sup-1", "public", "Hello, I am the supervisor"),
    ]
    assert last(bus, "presence.set") == {"agent_id": "agent-1", "status": "away", "channels": {}}
    actions = await service.list_supervisor_actions(fake, "c-1", 10)
    assert [a["action"] for a in actions] == ["leave", "barge", "whisper", "observe"]
    assert len(await service.list_supervisor_actions(fake, None, 100)) == 5


async def test_a_supervisor_forces_a_transfer_or_a_close(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(assigned("agent-1", "c-1"))
    forced = await bus.send(act("force_transfer", to_agent="agent-3"))
    assert last(bus, "work.transfer") == {
        "conversation_id": "c-1",
        "agent_id": "agent-1",
        "to_agent": "agent-3",
        "command_id": forced.id,
    }
    await bus.send(act("force_close", reason="customer left"))
    closed = last(bus, "session.closed")
    assert (closed["session_id"], closed["reason"]) == ("conv-c-1", "forced")
    assert last(bus, "session.focused")["session_id"] == "home"
    assert fake.sessions[("agent-1", "conv-c-1")].close_reason == "forced"
    assert "(customer left)" in last(bus, "supervisor.action")["detail"]


async def test_a_supervisor_acts_only_on_conversations_the_agent_holds(bus: MemoryBus) -> None:
    await bus.send(assigned("agent-2", "c-1"))
    await bus.send(act("whisper", text="psst"))
    assert last(bus, "command.rejected")["reason"] == (
        "supervisor.act whisper: conversation 'c-1' is not held by agent-1"
    )
    await bus.send(act("observe", "c-9"))
    assert "'c-9' is not held by agent-1" in last(bus, "command.rejected")["reason"]
    assert bus.emitted("supervisor.action") == [] and bus.emitted("message.posted") == []


# --- escalations ---------------------------------------------------------------------------------


async def test_escalations_flag_the_conversation_and_the_agents_pane(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(assigned("agent-2", "c-1"))  # the tight profile: its pane shows the summary only
    await bus.send(c.EscalationDetected(conversation_id="c-1", signals=["upset"], message_id="m-1", excerpt="awful"))
    await bus.send(c.EscalationDetected(conversation_id="c-1", signals=["asks_for_manager"]))
    await bus.send(c.EscalationDetected(conversation_id="c-9", signals=["upset"]))  # nobody holds it
    assert await service.escalations(fake) == {"c-1": ["asks_for_manager", "upset"], "c-9": ["upset"]}
    panes = bus.emitted("pane.updated")
    assert [p.data["updated"] for p in panes] == ["escalation", "escalation"]
    assert panes[-1].data["pane"]["escalation"] == {
        "signals": ["asks_for_manager", "upset"],
        "message_id": None,
        "excerpt": None,
    }
    assert panes[-1].data["pane"]["tools"] == []
    ws = await service.workspace(fake, "agent-2")
    assert session_of(ws, "conv-c-1")["pane"]["escalation"]["signals"] == ["asks_for_manager", "upset"]
    await bus.send(c.ConversationEnded(conversation_id="c-9"))
    assert await service.escalations(fake) == {"c-1": ["asks_for_manager", "upset"]}


async def test_what_assist_said_before_anyone_held_it_is_in_the_new_holders_pane(
    bus: MemoryBus, fake: FakeSessionsStore
) -> None:
    """Assist answers the customer's first words while the chat is only offered; the agent who
    accepts it (and, later, one who receives it by transfer) finds those replies and articles."""
    replies = [{"suggestion_id": "s-1", "text": "Sorry about that, Ada."}]
    await bus.send(c.RepliesSuggested(conversation_id="c-1", replies=replies))
    await bus.send(
        c.ArticlesSurfaced(conversation_id="c-1", articles=[{"id": "refund", "title": "Refunds", "score": 1}])
    )
    assert bus.emitted("pane.updated") == []  # nobody holds it yet
    await bus.send(assigned("agent-1", "c-1"))
    pane = last(bus, "pane.updated")["pane"]
    assert pane["replies"]["replies"] == replies and pane["articles"]["articles"][0]["id"] == "refund"
    ws = await service.workspace(fake, "agent-1")
    assert session_of(ws, "conv-c-1")["pane"]["replies"]["replies"] == replies
    await bus.send(c.SummaryReady(conversation_id="c-1", summary="Charged twice."))
    await bus.send(assigned("agent-3", "c-1"))  # transferred: the new holder sees all of it
    pane = last(bus, "pane.updated")
    assert pane["agent_id"] == "agent-3"
    assert {"replies", "articles", "summary"} <= set(pane["pane"])
    await bus.send(c.ConversationEnded(conversation_id="c-1"))
    assert "c-1" not in fake.conversation_panes


async def test_a_conversation_flagged_while_waiting_opens_with_its_flag(
    bus: MemoryBus, fake: FakeSessionsStore
) -> None:
    await bus.send(c.EscalationDetected(conversation_id="c-1", signals=["asks_for_manager"]))
    await bus.send(assigned("agent-1", "c-1"))
    pane = last(bus, "pane.updated")
    assert (pane["session_id"], pane["updated"]) == ("conv-c-1", "escalation")
    assert pane["pane"]["escalation"]["signals"] == ["asks_for_manager"]
    await bus.send(assigned("agent-2", "c-2"))
    assert len(bus.emitted("pane.updated")) == 1  # no flag, no pane update
    held = await service.agents_sessions(fake)
    assert {agent: [s["conversation_id"] for s in sessions] for agent, sessions in held.items()} == {
        "agent-1": ["c-1"],
        "agent-2": ["c-2"],
    }
    assert set(held["agent-1"][0]) == {"session_id", "conversation_id", "channel", "title", "opened_at", "unread"}
