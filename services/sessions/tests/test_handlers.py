"""sessions' flows through its real consumers on FastStream's TestKafkaBroker, with the fake store."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sessions import service
from sessions.app import build_runtime, create_app
from sessions.settings import SessionsSettings
from sessions.store import FakeSessionsStore
from shared import contracts as c
from shared.auth import DEV_SECRET, Auth
from shared.config import ConfigError
from shared.tx import MemoryDatabase
from tools.testing import MemoryBus, in_memory

CONFIG = {
    "sessions": {
        "profiles": {
            "default": {},
            "tight": {"max_sessions": 2, "max_tabs": 2, "pane_tools": ["summary"]},
            "loud": {"offer_notifications": {"sound": "bell"}},
            "forgetful": {"remember_tabs": False},
        },
        "agents": {
            "agent-2": {"profile": "tight"},
            "agent-4": {"profile": "forgetful"},
            "agent-5": {"profile": "loud"},
        },
    }
}


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "switchboard.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def settings(tmp_path: Path) -> SessionsSettings:
    return SessionsSettings(config_file=write_config(tmp_path, yaml.safe_dump(CONFIG)))


@pytest.fixture
def fake() -> FakeSessionsStore:
    return FakeSessionsStore()


@pytest.fixture
async def bus(settings: SessionsSettings, fake: FakeSessionsStore) -> AsyncIterator[MemoryBus]:
    async with in_memory(build_runtime(settings, database=MemoryDatabase(fake))) as bus:
        yield bus


def types(bus: MemoryBus, since: int = 0) -> list[str]:
    """The types of the events committed so far (after the first `since`)."""
    return [e.type for e in bus.emitted()[since:]]


def offered(agent_id: str, offer_id: str, cid: str, *, expires_in: float = 30.0, **conversation: Any) -> c.WorkOffered:
    return c.WorkOffered(
        agent_id=agent_id,
        offer_id=offer_id,
        conversation_id=cid,
        channel="chat",
        queue="general",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        conversation={"conversation_id": cid, **conversation},
    )


def assigned(agent_id: str, cid: str, name: str | None = "Ada Lovelace", **kw: Any) -> c.WorkAssigned:
    customer = {"name": name} if name else {"authenticated": False}
    return c.WorkAssigned(
        agent_id=agent_id,
        conversation_id=cid,
        channel="chat",
        queue="general",
        conversation={"conversation_id": cid, "customer": customer},
        **kw,
    )


async def open_conversation(bus: MemoryBus, agent_id: str, cid: str, **kw: Any) -> str:
    await bus.send(assigned(agent_id, cid, **kw))
    return f"conv-{cid}"


def state(fake: FakeSessionsStore) -> dict[str, Any]:
    """The fake's state but the event counters (a rejection is an event too)."""
    return copy.deepcopy({k: v for k, v in vars(fake).items() if k != "seq"})


def last(bus: MemoryBus, type: str) -> dict[str, Any]:
    return bus.emitted(type)[-1].data


# --- offers --------------------------------------------------------------------------------------


async def test_an_offer_is_announced_once_with_the_profiles_notification(bus: MemoryBus) -> None:
    event = offered("agent-1", "o-1", "c-1", customer={"name": "Grace Hopper"}, subject="Refund for order 1234")
    await bus.send(event, id="ev-1")
    await bus.send(event, id="ev-1")  # redelivered: the inbox skips it
    await bus.send(event, id="ev-2")  # the same offer again under another id: recorded once
    await bus.send(offered("agent-5", "o-5", "c-5"))
    received = bus.emitted("offer.received")
    assert [e.data["offer_id"] for e in received] == ["o-1", "o-5"]
    assert received[0].data["title"] == "Grace Hopper" and received[0].data["queue"] == "general"
    assert received[0].data["notification"] == {"show_timeout": True, "sound": "chime"}
    assert received[0].data["subject"] == "Refund for order 1234" and "subject" not in received[1].data
    assert received[1].data["title"] == "Visitor"
    assert received[1].data["notification"] == {"show_timeout": True, "sound": "bell"}


async def test_accepting_and_rejecting_an_offer(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(offered("agent-1", "o-1", "c-1"))
    await bus.send(offered("agent-1", "o-2", "c-2"))
    await bus.send(c.AcceptOffer(agent_id="agent-1", offer_id="o-1"))
    await bus.send(c.RejectOffer(agent_id="agent-1", offer_id="o-2", reason="busy"))
    assert types(bus) == ["offer.received", "offer.received", "offer.accepted", "offer.rejected"]
    assert last(bus, "offer.accepted")["conversation_id"] == "c-1"
    assert last(bus, "offer.rejected")["reason"] == "busy"
    assert (fake.offers["o-1"].status, fake.offers["o-2"].status) == ("accepted", "rejected")
    again = await bus.send(c.AcceptOffer(agent_id="agent-1", offer_id="o-1"))
    assert last(bus, "command.rejected") == {
        **last(bus, "command.rejected"),
        "command_id": again.id,
        "command_type": "offer.accept",
        "reason": "offer 'o-1' is accepted, no longer open",
    }


@pytest.mark.parametrize(
    ("offer", "command", "reason"),
    [
        (
            offered("agent-1", "o-1", "c-1"),
            c.AcceptOffer(agent_id="agent-2", offer_id="o-1"),
            "no offer 'o-1' for agent-2",
        ),
        (offered("agent-1", "o-1", "c-1"), c.AcceptOffer(agent_id="agent-1", offer_id="o-9"), "no offer 'o-9'"),
        (
            offered("agent-1", "o-1", "c-1", expires_in=-1),
            c.AcceptOffer(agent_id="agent-1", offer_id="o-1"),
            "expired at",
        ),
    ],
    ids=["someone-elses", "unknown", "expired"],
)
async def test_an_offer_that_is_not_yours_to_accept_is_refused_and_nothing_changes(
    bus: MemoryBus, fake: FakeSessionsStore, offer: c.WorkOffered, command: c.AcceptOffer, reason: str
) -> None:
    await bus.send(offer)
    before = state(fake)
    cmd = await bus.send(command)
    rejected = bus.emitted("command.rejected")
    assert types(bus) == ["offer.received", "command.rejected"]
    assert rejected[0].data["command_id"] == cmd.id and reason in rejected[0].data["reason"]
    assert rejected[0].data["agent_id"] == command.agent_id
    assert state(fake) == before


async def test_a_command_for_another_agent_is_refused(bus: MemoryBus) -> None:
    await bus.send(offered("agent-1", "o-1", "c-1"))
    await bus.send(c.AcceptOffer(agent_id="agent-1", offer_id="o-1"), subject="agent-2")
    assert "an agent acts on its own workspace only" in last(bus, "command.rejected")["reason"]
    assert not bus.emitted("offer.accepted")


async def test_an_expired_offer_is_withdrawn(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(offered("agent-1", "o-1", "c-1"))
    expired = c.WorkOfferExpired(
        agent_id="agent-1",
        offer_id="o-1",
        conversation_id="c-1",
        channel="chat",
        expires_at=datetime.now(UTC),
        cause="expired",
    )
    await bus.send(expired)
    await bus.send(expired)  # a second expiry of the same offer: already withdrawn
    assert types(bus) == ["offer.received", "offer.withdrawn"]
    assert last(bus, "offer.withdrawn")["reason"] == "expired" and fake.offers["o-1"].status == "withdrawn"


# --- assignments and sessions ---------------------------------------------------------------------


async def test_an_assignment_opens_one_focused_session(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(offered("agent-1", "o-1", "c-1"))
    event = assigned("agent-1", "c-1", offer_id="o-1")
    await bus.send(event, id="as-1")
    assert types(bus) == ["offer.received", "session.started", "tab.opened", "session.focused"]
    started = last(bus, "session.started")
    assert (started["session_id"], started["title"], started["icon"], started["anchor_tab_id"]) == (
        "conv-c-1",
        "Ada Lovelace",
        "Ad",
        "anchor",
    )
    assert last(bus, "tab.opened")["kind"] == "conversation"
    assert fake.offers["o-1"].status == "assigned"
    await bus.send(event, id="as-1")  # the same event redelivered
    await bus.send(event, id="as-2")  # routing announcing it again
    assert len(bus.emitted("session.started")) == 1
    assert [s.session_id for s in fake.sessions.values() if s.agent_id == "agent-1"] == ["home", "conv-c-1"]


async def test_unknown_customers_are_numbered_visitors(bus: MemoryBus) -> None:
    await open_conversation(bus, "agent-1", "c-1", name=None)
    await open_conversation(bus, "agent-1", "c-2", name=None)
    assert [e.data["title"] for e in bus.emitted("session.started")] == ["Visitor 1", "Visitor 2"]


async def test_a_transfer_closes_the_previous_holders_session(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    sid = await open_conversation(bus, "agent-1", "c-1")
    mark = len(bus.emitted())
    await bus.send(assigned("agent-2", "c-1", how="transferred"))
    closed = last(bus, "session.closed")
    assert (closed["agent_id"], closed["session_id"], closed["reason"]) == ("agent-1", sid, "transferred")
    assert last(bus, "session.started")["agent_id"] == "agent-2"
    assert types(bus, mark) == ["session.closed", "session.started", "tab.opened", "session.focused"]
    assert fake.sessions[("agent-1", sid)].status == "closed"
    assert fake.sessions[("agent-2", sid)].status == "open"
    await bus.send(c.WorkReleased(agent_id="agent-1", conversation_id="c-1", channel="chat", reason="transferred"))
    assert len(bus.emitted("session.closed")) == 1  # agent-1's session was closed already


async def test_released_away_the_session_closes_and_home_takes_the_focus(bus: MemoryBus) -> None:
    sid = await open_conversation(bus, "agent-1", "c-1")
    mark = len(bus.emitted())
    await bus.send(c.WorkReleased(agent_id="agent-1", conversation_id="c-1", channel="chat", reason="transferred"))
    assert types(bus, mark) == ["session.closed", "session.focused"]
    assert last(bus, "session.closed")["session_id"] == sid and last(bus, "session.focused")["session_id"] == "home"


async def test_closing_a_session_needs_confirmation_and_home_stays(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    sid = await open_conversation(bus, "agent-1", "c-1")
    unconfirmed = await bus.send(c.CloseSession(agent_id="agent-1", session_id=sid))
    home = await bus.send(c.CloseSession(agent_id="agent-1", session_id="home", confirmed=True))
    reasons = {e.data["command_id"]: e.data["reason"] for e in bus.emitted("command.rejected")}
    assert "needs confirmation" in reasons[unconfirmed.id]
    assert reasons[home.id] == "the Home session cannot be closed"
    assert fake.sessions[("agent-1", sid)].status == "open"
    await bus.send(c.CloseSession(agent_id="agent-1", session_id=sid, confirmed=True))
    assert types(bus)[-2:] == ["session.closed", "session.focused"]
    assert last(bus, "session.focused")["session_id"] == "home"
    # the closed session is still listed (for a day), reopened on the next assignment
    await bus.send(assigned("agent-1", "c-1"))
    assert fake.sessions[("agent-1", sid)].status == "open" and len(bus.emitted("session.started")) == 2


async def test_the_session_limit_of_the_profile(bus: MemoryBus) -> None:
    for cid in ("c-1", "c-2"):
        await open_conversation(bus, "agent-2", cid)
    refused = await bus.send(c.OpenSession(agent_id="agent-2", record=c.RecordRef(type="case", id="9")))
    assert last(bus, "command.rejected")["command_id"] == refused.id
    assert "session limit reached (2 open)" in last(bus, "command.rejected")["reason"]


async def test_opening_someone_elses_conversation_asks_routing_to_pick_it(bus: MemoryBus) -> None:
    await open_conversation(bus, "agent-1", "c-1")
    pick = await bus.send(c.OpenSession(agent_id="agent-3", conversation_id="c-1"))
    picked = last(bus, "work.pick")
    assert (picked["agent_id"], picked["conversation_id"], picked["command_id"]) == ("agent-3", "c-1", pick.id)
    await bus.send(c.WorkPickRefused(agent_id="agent-3", conversation_id="c-1", reason="assigned", command_id=pick.id))
    assert last(bus, "command.rejected")["reason"] == "cannot pick c-1: assigned"


async def test_a_record_session_opens_and_links(bus: MemoryBus) -> None:
    await bus.send(c.OpenSession(agent_id="agent-1", record=c.RecordRef(type="case", id="42")))
    started = last(bus, "session.started")
    assert (started["session_id"], started["title"]) == ("rec-case-42", "Case 42")
    again = await bus.send(c.OpenSession(agent_id="agent-1", record=c.RecordRef(type="case", id="42")))
    assert last(bus, "command.rejected")["command_id"] == again.id
    await bus.send(
        c.LinkRecord(
            agent_id="agent-1", session_id="rec-case-42", record=c.RecordRef(type="case", id="42", title="Broken modem")
        )
    )
    assert (last(bus, "session.retitled")["title"], last(bus, "session.retitled")["icon"]) == ("Broken modem", "Br")


# --- tabs and drafts ------------------------------------------------------------------------------


async def test_tabs_open_up_to_the_profiles_limit_and_the_anchor_stays(bus: MemoryBus) -> None:
    sid = await open_conversation(bus, "agent-2", "c-1")
    await bus.send(c.OpenTab(agent_id="agent-2", session_id=sid, kind="knowledge", title="KB"))
    tab_id = last(bus, "tab.opened")["tab_id"]
    assert last(bus, "tab.focused")["tab_id"] == tab_id
    third = await bus.send(c.OpenTab(agent_id="agent-2", session_id=sid, kind="customer"))
    assert last(bus, "command.rejected")["command_id"] == third.id
    assert "tab limit reached (2" in last(bus, "command.rejected")["reason"]
    await bus.send(c.CloseTab(agent_id="agent-2", session_id=sid, tab_id="anchor"))
    assert "cannot be closed on its own" in last(bus, "command.rejected")["reason"]
    await bus.send(c.FocusTab(agent_id="agent-2", session_id=sid, tab_id="nope"))
    assert last(bus, "command.rejected")["reason"] == f"no tab 'nope' in session {sid!r}"
    await bus.send(c.CloseTab(agent_id="agent-2", session_id=sid, tab_id=tab_id))
    assert types(bus)[-2:] == ["tab.closed", "tab.focused"] and last(bus, "tab.focused")["tab_id"] == "anchor"
    await bus.send(c.OpenTab(agent_id="agent-2", session_id=sid, kind="customer"))
    assert last(bus, "tab.opened")["kind"] == "customer"


@pytest.mark.parametrize(("agent", "kept"), [("agent-1", ["conversation", "kb"]), ("agent-4", ["conversation"])])
async def test_a_reopened_session_keeps_its_tabs_if_the_profile_remembers_them(
    bus: MemoryBus, fake: FakeSessionsStore, agent: str, kept: list[str]
) -> None:
    sid = await open_conversation(bus, agent, "c-1")
    await bus.send(c.OpenTab(agent_id=agent, session_id=sid, kind="kb"))
    await bus.send(c.CloseSession(agent_id=agent, session_id=sid, confirmed=True))
    await open_conversation(bus, agent, "c-1")
    assert [t.kind for t in await fake.list_tabs(agent)] == kept
    assert last(bus, "session.focused")["session_id"] == sid


async def test_a_stale_draft_is_refused_with_the_current_version(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    sid = await open_conversation(bus, "agent-1", "c-1")
    save = {"agent_id": "agent-1", "session_id": sid, "tab_id": "anchor"}
    await bus.send(c.SaveDraft(**save, fields={"text": "Dear Ada"}, version=0))
    await bus.send(c.SaveDraft(**save, fields={"text": "Dear Ada, your refund"}, version=1))
    assert [e.data["version"] for e in bus.emitted("draft.saved")] == [1, 2]
    stale = await bus.send(c.SaveDraft(**save, fields={"text": "Hello"}, version=1))
    rejected = last(bus, "command.rejected")
    assert rejected["command_id"] == stale.id and "current version is 2" in rejected["reason"]
    assert (rejected["current_version"], rejected["current_fields"]) == (2, {"text": "Dear Ada, your refund"})
    assert fake.drafts["conv:c-1:anchor"].fields == {"text": "Dear Ada, your refund"}


# --- unread counts, the pane, messages -------------------------------------------------------------


async def test_messages_on_a_session_out_of_focus_raise_its_badge(bus: MemoryBus) -> None:
    first = await open_conversation(bus, "agent-1", "c-1")
    await open_conversation(bus, "agent-1", "c-2")  # now in focus
    for i in range(10):
        await bus.send(c.MessagePosted(conversation_id="c-1", sender="customer", text=f"hello {i}"))
    await bus.send(c.MessagePosted(conversation_id="c-2", sender="customer", text="in focus: no badge"))
    await bus.send(c.MessagePosted(conversation_id="c-1", sender="agent", sender_id="agent-1", text="mine"))
    badges = [(e.data["unread"], e.data["badge"]) for e in bus.emitted("session.unread_changed")]
    assert badges == [(n, str(n)) for n in range(1, 10)] + [(10, "9+")]
    await bus.send(c.FocusSession(agent_id="agent-1", session_id=first))
    assert types(bus)[-2:] == ["session.unread_changed", "session.focused"]
    assert (last(bus, "session.unread_changed")["unread"], last(bus, "session.unread_changed")["badge"]) == (0, "")


async def test_assist_fills_the_pane_with_the_profiles_tools(bus: MemoryBus) -> None:
    sid = await open_conversation(bus, "agent-1", "c-1")
    await bus.send(c.SummaryReady(conversation_id="c-1", summary="Wants a refund."))
    await bus.send(c.ArticlesSurfaced(conversation_id="c-1", articles=[{"id": "kb-1", "title": "Refunds"}]))
    panes = bus.emitted("pane.updated")
    assert [(e.data["session_id"], e.data["updated"]) for e in panes] == [(sid, "summary"), (sid, "articles")]
    assert panes[-1].data["pane"]["summary"]["summary"] == "Wants a refund."
    assert panes[-1].data["pane"]["tools"] == ["summary", "articles"]
    # the tight profile shows the summary only
    await open_conversation(bus, "agent-2", "c-2")
    await bus.send(c.ArticlesSurfaced(conversation_id="c-2", articles=[]))
    await bus.send(c.SummaryReady(conversation_id="c-2", summary="Hi."))
    tight = [e.data for e in bus.emitted("pane.updated") if e.data["agent_id"] == "agent-2"]
    assert [p["updated"] for p in tight] == ["summary"] and tight[0]["pane"]["tools"] == ["summary"]
    await bus.send(c.SummaryReady(conversation_id="c-nobody", summary="no session holds it"))
    assert len(bus.emitted("pane.updated")) == 3


async def test_an_agents_message_is_posted_to_its_conversation(bus: MemoryBus) -> None:
    sid = await open_conversation(bus, "agent-1", "c-1")
    send = await bus.send(c.SendMessage(agent_id="agent-1", session_id=sid, text="Hello Ada"))
    posted = last(bus, "message.posted")
    assert (posted["conversation_id"], posted["sender"], posted["sender_id"], posted["text"]) == (
        "c-1",
        "agent",
        "agent-1",
        "Hello Ada",
    )
    assert posted["command_id"] == send.id
    await bus.send(c.SendMessage(agent_id="agent-1", session_id="home", text="to nobody"))
    assert "has no conversation" in last(bus, "command.rejected")["reason"]


async def test_each_agents_events_are_numbered_consecutively(bus: MemoryBus) -> None:
    await bus.send(offered("agent-1", "o-1", "c-1"))
    await open_conversation(bus, "agent-2", "c-2")
    await bus.send(c.AcceptOffer(agent_id="agent-1", offer_id="o-1"))
    await open_conversation(bus, "agent-1", "c-1")
    await bus.send(c.CloseSession(agent_id="agent-2", session_id="conv-c-2"))  # rejected: numbered too
    for agent in ("agent-1", "agent-2"):
        seqs = [e.data["seq"] for e in bus.emitted() if e.data.get("agent_id") == agent]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 4
    assert all("seq" not in e.data for e in bus.emitted("work.pick") + bus.emitted("message.posted"))


# --- the workspace snapshot and configuration -------------------------------------------------------


async def test_the_workspace_snapshot(bus: MemoryBus, fake: FakeSessionsStore) -> None:
    await bus.send(offered("agent-1", "o-1", "c-9"))
    sid = await open_conversation(bus, "agent-1", "c-1")
    await bus.send(c.SaveDraft(agent_id="agent-1", session_id=sid, tab_id="anchor", fields={"text": "Hi"}))
    ws = await service.workspace(fake, "agent-1")
    assert set(ws) == {
        *("agent_id", "seq", "focused_session", "sessions", "offers", "profile", "server_time", "presence"),
        *("statuses", "channels", "dashboard", "dispositions"),
    }
    assert ws["seq"] == max(e.data["seq"] for e in bus.emitted() if e.data.get("agent_id") == "agent-1")
    assert ws["focused_session"] == sid
    home, conv = ws["sessions"]
    assert set(conv) == {
        *("session_id", "kind", "conversation_id", "channel", "title", "icon", "status", "unread", "focused_tab"),
        *("opened_at", "closed_at", "record", "pane", "badge", "primary", "tabs", "drafts"),
        *("transcript", "transcript_more"),
    }
    assert (home["session_id"], conv["session_id"], conv["title"]) == ("home", sid, "Ada Lovelace")
    assert conv["tabs"] == [
        {
            "session_id": sid,
            "tab_id": "anchor",
            "kind": "conversation",
            "title": "Ada Lovelace",
            "anchor": True,
            "target": {"conversation_id": "c-1"},
        }
    ]
    assert [(d["draft_key"], d["fields"], d["version"]) for d in conv["drafts"]] == [
        ("conv:c-1:anchor", {"text": "Hi"}, 1)
    ]
    assert set(ws["offers"][0]) == {
        "offer_id",
        "conversation_id",
        "channel",
        "queue",
        "title",
        "subject",
        "status",
        "expires_at",
    }
    assert ws["profile"] == {
        "max_sessions": 10,
        "max_tabs": 10,
        "remember_tabs": True,
        "pane_tools": ["summary", "articles", "replies", "case_summary"],
        "offer_notifications": {"show_timeout": True, "sound": "chime"},
    }
    unknown = await service.workspace(fake, "agent-9")
    assert (unknown["seq"], unknown["focused_session"], [s["session_id"] for s in unknown["sessions"]]) == (
        0,
        "home",
        ["home"],
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "sessions:\n  profiles:\n    default:\n      max_sessions: ten\n",
            "line 4: sessions.profiles.default.max_sessions",
        ),
        ("sessions:\n  profiles:\n    x: {max_tabs: 0}\n", "line 3: sessions.profiles.x.max_tabs"),
        ("sessions:\n  profiles:\n    x: {pane_tools: [summary, radio]}\n", "sessions.profiles.x.pane_tools.1"),
        ("sessions:\n  profiles:\n    x:\n      offer_notifications: {sound: gong}\n", "offer_notifications.sound"),
        ("sessions:\n  profiles:\n    x: {colour: red}\n", "sessions.profiles.x.colour: Extra inputs"),
        (
            "sessions:\n  agents:\n    agent-1: {profile: nope}\n",
            "line 3: sessions.agents.agent-1.profile: unknown experience profile 'nope'",
        ),
    ],
)
def test_invalid_configuration_is_refused_with_its_line_and_field(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build_runtime(
            SessionsSettings(config_file=write_config(tmp_path, text)), database=MemoryDatabase(FakeSessionsStore())
        )
    assert problem in str(refused.value)


async def test_supervisors_edit_profiles(settings: SessionsSettings, fake: FakeSessionsStore) -> None:
    app = create_app(settings, database=MemoryDatabase(fake))
    auth = Auth(DEV_SECRET)
    lead = {"Authorization": f"Bearer {auth.mint('lead-1', ('agent', 'supervisor'))}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        body = {"settings": {"max_sessions": 3, "pane_tools": ["replies"]}, "agents": ["agent-7"]}
        put = await http.put("/admin/profiles/night", json=body, headers=lead)
        assert put.status_code == 200 and put.json()["night"] == {"max_sessions": 3, "pane_tools": ["replies"]}
        bad = await http.put("/admin/profiles/night", json={"settings": {"max_sessions": "ten"}}, headers=lead)
        assert bad.status_code == 422 and "max_sessions" in bad.json()["error"]
        assert (await http.get("/admin/profiles", headers=lead)).json()["night"]["max_sessions"] == 3
        agent = {"Authorization": f"Bearer {auth.mint('agent-7')}"}
        assert (await http.put("/admin/profiles/night", json=body, headers=agent)).status_code == 403
    assert (await service.profile(fake, "agent-7")).max_sessions == 3
