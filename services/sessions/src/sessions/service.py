"""sessions' use cases: the agent's workspace, event by event, and the agent's commands."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sessions import domain
from shared import contracts as c
from shared.db import Conn, Queries
from shared.messaging import Rejection, UnitOfWork

Q = Queries("sessions")


def _now() -> datetime:
    return datetime.now(UTC)


def reject(ev: c.CloudEvent, agent_id: str, reason: str, **extra: Any) -> Rejection:
    return Rejection(
        c.CommandRejected(agent_id=agent_id, command_id=ev.id, command_type=ev.type, reason=reason, **extra)
    )


async def stamp_sequence(uow: UnitOfWork, events: list[c.CloudEvent]) -> None:
    """Sequencer: number each agent's sessions.v1 events (data.seq), one row lock per agent."""
    mine = [ev for ev in events if ev.type in c.TYPES_BY_TOPIC[c.topics.SESSIONS]]
    counts = Counter(ev.data["agent_id"] for ev in mine)
    next_seq: dict[str, int] = {}
    for agent_id in sorted(counts):  # a fixed lock order: no deadlock between two batches
        last = await uow.conn.fetchval(Q.bump_seq, agent_id, counts[agent_id])
        next_seq[agent_id] = last - counts[agent_id] + 1
    for ev in mine:
        agent_id = ev.data["agent_id"]
        ev.data["seq"] = next_seq[agent_id]
        next_seq[agent_id] += 1


async def ensure_agent(uow: UnitOfWork, agent_id: str) -> None:
    await uow.conn.execute(Q.ensure_agent, agent_id)


async def profile(conn: Conn, agent_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(Q.get_profile, agent_id)
    return domain.profile_settings(row["settings"] if row else None)


async def _session(uow: UnitOfWork, ev: c.CloudEvent, agent_id: str, session_id: str) -> Any:
    session = await uow.conn.fetchrow(Q.get_session, agent_id, session_id)
    if session is None or session["status"] != "open":
        raise reject(ev, agent_id, f"no open session {session_id!r} in this agent's workspace")
    return session


def _authorise(ev: c.CloudEvent, data: Any) -> None:
    if ev.subject and ev.subject != data.agent_id:
        raise reject(
            ev,
            data.agent_id,
            f"the command's subject {ev.subject!r} does not match data.agent_id {data.agent_id!r}: "
            "an agent acts on its own workspace only",
        )


async def _open_session(
    uow: UnitOfWork,
    agent_id: str,
    session_id: str,
    kind: str,
    title: str,
    *,
    conversation_id: str | None,
    channel: str | None,
    anchor_kind: str,
    target: dict[str, Any],
    record: dict[str, Any] | None = None,
) -> None:
    conn = uow.conn
    icon = domain.icon(title)
    if await conn.fetchval(Q.reopen_session, agent_id, session_id):
        await conn.execute(Q.retitle_session, agent_id, session_id, title, icon, record)
        if not (await profile(conn, agent_id))["remember_tabs"]:
            await conn.execute(Q.forget_app_tabs, agent_id, session_id)
    else:
        await conn.execute(
            Q.insert_session, agent_id, session_id, kind, conversation_id, channel, title, icon, "anchor"
        )
        await conn.execute(Q.insert_tab, agent_id, session_id, "anchor", anchor_kind, title, True, target)
    await conn.execute(Q.set_focused_tab, agent_id, session_id, "anchor")
    uow.emit(
        c.SessionStarted(
            agent_id=agent_id,
            session_id=session_id,
            conversation_id=conversation_id,
            channel=channel,
            title=title,
            icon=icon,
            anchor_tab_id="anchor",
        )
    )
    uow.emit(
        c.TabOpened(
            agent_id=agent_id,
            session_id=session_id,
            tab_id="anchor",
            kind=anchor_kind,
            title=title,
            conversation_id=conversation_id,
        )
    )
    await conn.execute(Q.set_focus, agent_id, session_id)
    uow.emit(c.SessionFocused(agent_id=agent_id, session_id=session_id, conversation_id=conversation_id))


# --- routing.v1 --------------------------------------------------------------------------------


async def on_work_offered(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkOffered) -> None:
    await ensure_agent(uow, data.agent_id)
    conversation = data.conversation
    title = domain.title_for(conversation, None) if not domain.needs_visitor_number(conversation) else "Visitor"
    inserted = await uow.conn.fetchval(
        Q.insert_offer,
        data.offer_id,
        data.agent_id,
        data.conversation_id,
        data.channel,
        data.queue,
        title,
        conversation,
        data.expires_at,
    )
    if inserted:
        notify = (await profile(uow.conn, data.agent_id))["offer_notifications"]
        uow.emit(
            c.OfferReceived(
                agent_id=data.agent_id,
                offer_id=data.offer_id,
                conversation_id=data.conversation_id,
                channel=data.channel,
                expires_at=data.expires_at,
                title=title,
                queue=data.queue,
                notification=notify,
            )
        )


async def on_work_offer_expired(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkOfferExpired) -> None:
    offer = await uow.conn.fetchrow(Q.get_offer, data.offer_id)
    if offer is None or offer["status"] not in ("pending", "accepted"):
        return
    await uow.conn.execute(Q.set_offer_status, data.offer_id, "withdrawn")
    uow.emit(
        c.OfferWithdrawn(
            agent_id=offer["agent_id"],
            offer_id=data.offer_id,
            conversation_id=data.conversation_id,
            channel=data.channel,
            expires_at=data.expires_at,
            reason=data.cause,
        )
    )


async def on_work_assigned(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkAssigned) -> None:
    conn = uow.conn
    await ensure_agent(uow, data.agent_id)
    if data.offer_id and await conn.fetchrow(Q.get_offer, data.offer_id) is not None:
        await conn.execute(Q.set_offer_status, data.offer_id, "assigned")
    await conn.execute(Q.upsert_assignment, data.conversation_id, data.agent_id, data.channel, data.conversation)
    existing = await conn.fetchrow(Q.find_open_session_by_conversation, data.conversation_id)
    if existing is not None:
        if existing["agent_id"] == data.agent_id:
            return  # already open (a redelivered assignment): one session per conversation
        # transferred: the previous holder's session closes before the new one opens
        await conn.execute(Q.close_session, existing["agent_id"], existing["session_id"])
        uow.emit(
            c.SessionClosed(
                agent_id=existing["agent_id"],
                session_id=existing["session_id"],
                conversation_id=data.conversation_id,
                channel=existing["channel"],
                reason="transferred",
            )
        )
    visitor = None
    if domain.needs_visitor_number(data.conversation):
        visitor = await conn.fetchval(Q.next_visitor_number, data.agent_id)
    title = domain.title_for(data.conversation, visitor)
    await _open_session(
        uow,
        data.agent_id,
        domain.session_id_for(data.conversation_id),
        "conversation",
        title,
        conversation_id=data.conversation_id,
        channel=data.channel,
        anchor_kind="conversation",
        target={"conversation_id": data.conversation_id},
        record=data.conversation.get("record"),
    )


async def on_work_released(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkReleased) -> None:
    await uow.conn.execute(Q.release_assignment, data.conversation_id, data.agent_id)
    if data.reason != "transferred":
        return
    # transferred away: the agent's session for it closes (its record stays in the closed list)
    session = await uow.conn.fetchrow(Q.find_open_session_by_conversation, data.conversation_id)
    if session is not None and session["agent_id"] == data.agent_id:
        await uow.conn.execute(Q.close_session, data.agent_id, session["session_id"])
        uow.emit(
            c.SessionClosed(
                agent_id=data.agent_id,
                session_id=session["session_id"],
                conversation_id=data.conversation_id,
                channel=session["channel"],
                reason="transferred",
            )
        )
        if await uow.conn.fetchval(Q.get_focus, data.agent_id) == session["session_id"]:
            await uow.conn.execute(Q.set_focus, data.agent_id, domain.HOME)
            uow.emit(c.SessionFocused(agent_id=data.agent_id, session_id=domain.HOME))


async def on_pick_refused(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkPickRefused) -> None:
    uow.emit(
        c.CommandRejected(
            agent_id=data.agent_id,
            command_id=data.command_id or ev.id,
            command_type="session.open",
            reason=f"cannot pick {data.conversation_id}: {data.reason}",
        )
    )


async def on_presence_changed(uow: UnitOfWork, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
    await ensure_agent(uow, data.agent_id)
    await uow.conn.execute(Q.set_presence, data.agent_id, data.status)


# --- conversations.messages.v1 and assist.v1 ---------------------------------------------------


async def on_message_posted(uow: UnitOfWork, ev: c.CloudEvent, data: c.MessagePosted) -> None:
    session = await uow.conn.fetchrow(Q.find_open_session_by_conversation, data.conversation_id)
    if session is None or data.sender_id == session["agent_id"]:
        return
    if await uow.conn.fetchval(Q.get_focus, session["agent_id"]) == session["session_id"]:
        return  # the agent is looking at it
    unread = await uow.conn.fetchval(Q.bump_unread, session["agent_id"], session["session_id"])
    uow.emit(
        c.SessionUnreadChanged(
            agent_id=session["agent_id"],
            session_id=session["session_id"],
            conversation_id=data.conversation_id,
            unread=unread,
            badge=domain.badge(unread),
        )
    )


async def on_assist(uow: UnitOfWork, ev: c.CloudEvent, data: Any) -> None:
    session = await uow.conn.fetchrow(Q.find_open_session_by_conversation, data.conversation_id)
    if session is None:
        return
    kind = domain.PANE_KINDS[ev.type]
    content = {k: v for k, v in ev.data.items() if k != "conversation_id"}
    pane = await uow.conn.fetchval(Q.merge_pane, session["agent_id"], session["session_id"], {kind: content})
    settings = await profile(uow.conn, session["agent_id"])
    if kind not in settings["pane_tools"]:
        return
    tab = await uow.conn.fetchrow(Q.get_tab, session["agent_id"], session["session_id"], session["focused_tab"] or "")
    view = domain.pane_view(pane, settings["pane_tools"], tab["kind"] if tab else None)
    uow.emit(
        c.PaneUpdated(
            agent_id=session["agent_id"],
            session_id=session["session_id"],
            conversation_id=data.conversation_id,
            pane=view,
            updated=kind,
        )
    )


# --- sessions.commands.v1 ----------------------------------------------------------------------


async def _own_offer(uow: UnitOfWork, ev: c.CloudEvent, data: Any) -> Any:
    offer = await uow.conn.fetchrow(Q.get_offer, data.offer_id)
    if offer is None or offer["agent_id"] != data.agent_id:
        raise reject(ev, data.agent_id, f"no offer {data.offer_id!r} for {data.agent_id}")
    if offer["status"] != "pending":
        raise reject(ev, data.agent_id, f"offer {data.offer_id!r} is {offer['status']}, no longer open")
    if offer["expires_at"] <= _now():
        raise reject(ev, data.agent_id, f"offer {data.offer_id!r} expired at {offer['expires_at'].isoformat()}")
    return offer


async def on_accept_offer(uow: UnitOfWork, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
    _authorise(ev, data)
    offer = await _own_offer(uow, ev, data)
    await uow.conn.execute(Q.set_offer_status, data.offer_id, "accepted")
    uow.emit(
        c.OfferAccepted(
            agent_id=data.agent_id,
            offer_id=data.offer_id,
            conversation_id=offer["conversation_id"],
            channel=offer["channel"],
            expires_at=offer["expires_at"],
        )
    )


async def on_reject_offer(uow: UnitOfWork, ev: c.CloudEvent, data: c.RejectOffer) -> None:
    _authorise(ev, data)
    offer = await _own_offer(uow, ev, data)
    await uow.conn.execute(Q.set_offer_status, data.offer_id, "rejected")
    uow.emit(
        c.OfferRejected(
            agent_id=data.agent_id,
            offer_id=data.offer_id,
            conversation_id=offer["conversation_id"],
            channel=offer["channel"],
            expires_at=offer["expires_at"],
            reason=data.reason,
        )
    )


async def on_open_session(uow: UnitOfWork, ev: c.CloudEvent, data: c.OpenSession) -> None:
    _authorise(ev, data)
    await ensure_agent(uow, data.agent_id)
    conn = uow.conn
    settings = await profile(conn, data.agent_id)
    if await conn.fetchval(Q.count_open_sessions, data.agent_id) >= settings["max_sessions"]:
        raise reject(
            ev,
            data.agent_id,
            f"session limit reached ({settings['max_sessions']} open); close a session before opening another",
        )
    if data.conversation_id:
        assignment = await conn.fetchrow(Q.get_assignment, data.conversation_id)
        if assignment is None or assignment["agent_id"] != data.agent_id or assignment["released"]:
            # Not this agent's work: pick it from the queue; routing assigns it if capacity allows
            # (the session then opens on work.assigned) or refuses (-> command.rejected).
            uow.emit(c.PickWork(agent_id=data.agent_id, conversation_id=data.conversation_id, command_id=ev.id))
            return
        session_id = domain.session_id_for(data.conversation_id)
        existing = await conn.fetchrow(Q.get_session, data.agent_id, session_id)
        if existing is not None and existing["status"] == "open":
            raise reject(ev, data.agent_id, f"session {session_id!r} is already open; focus it instead")
        title = domain.title_for(assignment["conversation"], await conn.fetchval(Q.next_visitor_number, data.agent_id))
        await _open_session(
            uow,
            data.agent_id,
            session_id,
            "conversation",
            title,
            conversation_id=data.conversation_id,
            channel=assignment["channel"],
            anchor_kind="conversation",
            target={"conversation_id": data.conversation_id},
        )
        return
    if data.record is None:
        raise reject(ev, data.agent_id, "session.open needs a conversation_id of your own or a record")
    record = data.record.model_dump(exclude_none=True)
    session_id = f"rec-{data.record.type}-{data.record.id}"
    existing = await conn.fetchrow(Q.get_session, data.agent_id, session_id)
    if existing is not None and existing["status"] == "open":
        raise reject(ev, data.agent_id, f"session {session_id!r} is already open; focus it instead")
    await _open_session(
        uow,
        data.agent_id,
        session_id,
        "record",
        domain.record_title(record),
        conversation_id=None,
        channel=None,
        anchor_kind=data.record.type,
        target=record,
        record=record,
    )


async def on_close_session(uow: UnitOfWork, ev: c.CloudEvent, data: c.CloseSession) -> None:
    _authorise(ev, data)
    await ensure_agent(uow, data.agent_id)
    session = await uow.conn.fetchrow(Q.get_session, data.agent_id, data.session_id)
    refusal = domain.close_refusal(dict(session) if session else None, data.session_id, data.confirmed)
    if refusal:
        raise reject(ev, data.agent_id, refusal)
    assert session is not None
    await uow.conn.execute(Q.close_session, data.agent_id, data.session_id)
    uow.emit(
        c.SessionClosed(
            agent_id=data.agent_id,
            session_id=data.session_id,
            conversation_id=session["conversation_id"],
            channel=session["channel"],
        )
    )
    if await uow.conn.fetchval(Q.get_focus, data.agent_id) == data.session_id:
        await uow.conn.execute(Q.set_focus, data.agent_id, domain.HOME)
        uow.emit(c.SessionFocused(agent_id=data.agent_id, session_id=domain.HOME))


async def on_focus_session(uow: UnitOfWork, ev: c.CloudEvent, data: c.FocusSession) -> None:
    _authorise(ev, data)
    await ensure_agent(uow, data.agent_id)
    if data.session_id == domain.HOME:
        await uow.conn.execute(Q.set_focus, data.agent_id, domain.HOME)
        uow.emit(c.SessionFocused(agent_id=data.agent_id, session_id=domain.HOME))
        return
    session = await _session(uow, ev, data.agent_id, data.session_id)
    await uow.conn.execute(Q.set_focus, data.agent_id, data.session_id)
    if session["unread"]:
        await uow.conn.execute(Q.clear_unread, data.agent_id, data.session_id)
        uow.emit(
            c.SessionUnreadChanged(
                agent_id=data.agent_id,
                session_id=data.session_id,
                conversation_id=session["conversation_id"],
                unread=0,
                badge="",
            )
        )
    uow.emit(
        c.SessionFocused(agent_id=data.agent_id, session_id=data.session_id, conversation_id=session["conversation_id"])
    )


async def on_open_tab(uow: UnitOfWork, ev: c.CloudEvent, data: c.OpenTab) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    limit = (await profile(uow.conn, data.agent_id))["max_tabs"]
    if await uow.conn.fetchval(Q.count_tabs, data.agent_id, data.session_id) >= limit:
        raise reject(
            ev, data.agent_id, f"tab limit reached ({limit} in session {data.session_id!r}); close a tab first"
        )
    tab_id = f"{data.kind}-{uuid.uuid4().hex[:8]}"
    await uow.conn.execute(
        Q.insert_tab, data.agent_id, data.session_id, tab_id, data.kind, data.title, False, data.target
    )
    await uow.conn.execute(Q.set_focused_tab, data.agent_id, data.session_id, tab_id)
    uow.emit(
        c.TabOpened(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=tab_id,
            kind=data.kind,
            title=data.title,
            conversation_id=session["conversation_id"],
            target=data.target,
        )
    )
    uow.emit(
        c.TabFocused(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=tab_id,
            conversation_id=session["conversation_id"],
        )
    )


async def on_focus_tab(uow: UnitOfWork, ev: c.CloudEvent, data: c.FocusTab) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    if await uow.conn.fetchrow(Q.get_tab, data.agent_id, data.session_id, data.tab_id) is None:
        raise reject(ev, data.agent_id, f"no tab {data.tab_id!r} in session {data.session_id!r}")
    await uow.conn.execute(Q.set_focused_tab, data.agent_id, data.session_id, data.tab_id)
    uow.emit(
        c.TabFocused(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=data.tab_id,
            conversation_id=session["conversation_id"],
        )
    )


async def on_close_tab(uow: UnitOfWork, ev: c.CloudEvent, data: c.CloseTab) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    tab = await uow.conn.fetchrow(Q.get_tab, data.agent_id, data.session_id, data.tab_id)
    refusal = domain.tab_close_refusal(dict(tab) if tab else None, data.tab_id)
    if refusal:
        raise reject(ev, data.agent_id, refusal)
    await uow.conn.execute(Q.delete_tab, data.agent_id, data.session_id, data.tab_id)
    uow.emit(
        c.TabClosed(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=data.tab_id,
            conversation_id=session["conversation_id"],
        )
    )
    if session["focused_tab"] == data.tab_id:
        await uow.conn.execute(Q.set_focused_tab, data.agent_id, data.session_id, "anchor")
        uow.emit(
            c.TabFocused(
                agent_id=data.agent_id,
                session_id=data.session_id,
                tab_id="anchor",
                conversation_id=session["conversation_id"],
            )
        )


async def on_save_draft(uow: UnitOfWork, ev: c.CloudEvent, data: c.SaveDraft) -> None:
    """Optimistic concurrency: a save names the version it edited; a stale one is refused with
    the current version, so two devices never overwrite each other silently."""
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    if await uow.conn.fetchrow(Q.get_tab, data.agent_id, data.session_id, data.tab_id) is None:
        raise reject(ev, data.agent_id, f"no tab {data.tab_id!r} in session {data.session_id!r}")
    key = domain.draft_key(data.agent_id, data.session_id, data.tab_id, session["conversation_id"])
    current = await uow.conn.fetchrow(Q.get_draft, key)
    version = current["version"] if current else 0
    if data.version != version:
        raise reject(
            ev,
            data.agent_id,
            f"stale draft: you edited version {data.version} but the current version is "
            f"{version}; reload it and apply your changes again",
            current_version=version,
            current_fields=current["fields"] if current else {},
        )
    await uow.conn.execute(
        Q.upsert_draft,
        key,
        data.agent_id,
        data.session_id,
        data.tab_id,
        session["conversation_id"],
        data.fields,
        version + 1,
    )
    uow.emit(
        c.DraftSaved(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=data.tab_id,
            version=version + 1,
            conversation_id=session["conversation_id"],
            fields=data.fields,
        )
    )


async def on_link_record(uow: UnitOfWork, ev: c.CloudEvent, data: c.LinkRecord) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    if data.session_id == domain.HOME:
        raise reject(ev, data.agent_id, "records are linked to a conversation or record session, not to Home")
    record = data.record.model_dump(exclude_none=True)
    title = domain.record_title(record)
    await uow.conn.execute(Q.retitle_session, data.agent_id, data.session_id, title, domain.icon(title), record)
    uow.emit(
        c.SessionRetitled(
            agent_id=data.agent_id,
            session_id=data.session_id,
            conversation_id=session["conversation_id"],
            title=title,
            icon=domain.icon(title),
            record=record,
        )
    )


async def on_send_message(uow: UnitOfWork, ev: c.CloudEvent, data: c.SendMessage) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    if not session["conversation_id"]:
        raise reject(ev, data.agent_id, f"session {data.session_id!r} has no conversation to send a message to")
    uow.emit(
        c.MessagePosted(
            conversation_id=session["conversation_id"],
            sender="agent",
            sender_id=data.agent_id,
            visibility=data.visibility,
            text=data.text,
            suggestion_id=data.suggestion_id,
            command_id=ev.id,
        )
    )


# --- read side and configuration ---------------------------------------------------------------


async def workspace(conn: Conn, agent_id: str) -> dict[str, Any]:
    """The whole workspace as of one database snapshot, with the event sequence it reflects."""
    seq = await conn.fetchval(Q.get_seq, agent_id) or 0
    focus = await conn.fetchval(Q.get_focus, agent_id)
    sessions = [dict(r) for r in await conn.fetch(Q.list_sessions, agent_id)]
    tabs = [dict(r) for r in await conn.fetch(Q.list_tabs, agent_id)]
    offers = [dict(r) for r in await conn.fetch(Q.list_pending_offers, agent_id)]
    drafts = [dict(r) for r in await conn.fetch(Q.list_drafts, agent_id)]
    settings = await profile(conn, agent_id)
    if not any(s["session_id"] == domain.HOME for s in sessions):
        sessions.insert(
            0, {"session_id": domain.HOME, "kind": "home", "title": "Home", "icon": "Ho", "status": "open", "unread": 0}
        )
    voice_live = any(s.get("channel") == "voice" and s["status"] == "open" for s in sessions)
    for s in sessions:
        s["badge"] = domain.badge(s.get("unread") or 0)
        # a live voice call stays the primary session: the agent may look elsewhere, no work is offered
        s["primary"] = voice_live and s.get("channel") == "voice" and s["status"] == "open"
        s["tabs"] = [t for t in tabs if t["session_id"] == s["session_id"]]
        s["drafts"] = [
            d
            for d in drafts
            if d["session_id"] == s["session_id"]
            or (s.get("conversation_id") and d["conversation_id"] == s.get("conversation_id"))
        ]
    return {
        "agent_id": agent_id,
        "seq": seq,
        "focused_session": focus or domain.HOME,
        "sessions": sessions,
        "offers": offers,
        "profile": settings,
    }


async def apply_config(conn: Conn, cfg: dict[str, Any]) -> None:
    """The sessions section of the YAML configuration: experience profiles and who has which."""
    profiles = cfg.get("profiles") or {}
    profiles.setdefault("default", {})
    for name, settings in profiles.items():
        domain.profile_settings(settings)  # refuse unknown settings before storing anything
        await conn.execute(Q.upsert_profile, name, settings or {})
    for agent_id, spec in (cfg.get("agents") or {}).items():
        name = (spec or {}).get("profile", "default")
        if name not in profiles:
            raise ValueError(f"sessions.agents.{agent_id}: unknown experience profile {name!r}")
        await conn.execute(Q.assign_profile, agent_id, name)
