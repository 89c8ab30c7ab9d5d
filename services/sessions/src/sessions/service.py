"""sessions' use cases: the agent's workspace, event by event, and the agent's commands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sessions import domain
from shared import contracts as c
from shared.db import Queries
from shared.messaging import Rejection, UnitOfWork

Q = Queries("sessions")


def _now() -> datetime:
    return datetime.now(UTC)


def reject(ev: c.CloudEvent, agent_id: str, reason: str) -> Rejection:
    return Rejection(c.CommandRejected(agent_id=agent_id, command_id=ev.id, command_type=ev.type, reason=reason))


async def ensure_agent(uow: UnitOfWork, agent_id: str) -> None:
    await uow.conn.execute(Q.ensure_agent, agent_id)


# --- routing.v1 --------------------------------------------------------------------------------


async def on_work_offered(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkOffered) -> None:
    await ensure_agent(uow, data.agent_id)
    title = (
        domain.title_for(data.conversation, None) if not domain.needs_visitor_number(data.conversation) else "Visitor"
    )
    inserted = await uow.conn.fetchval(
        Q.insert_offer,
        data.offer_id,
        data.agent_id,
        data.conversation_id,
        data.channel,
        data.queue,
        title,
        data.conversation,
        data.expires_at,
    )
    if inserted:
        uow.emit(
            c.OfferReceived(
                agent_id=data.agent_id,
                offer_id=data.offer_id,
                conversation_id=data.conversation_id,
                channel=data.channel,
                expires_at=data.expires_at,
                title=title,
                queue=data.queue,
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
    if data.offer_id:
        offer = await conn.fetchrow(Q.get_offer, data.offer_id)
        if offer is not None:
            await conn.execute(Q.set_offer_status, data.offer_id, "assigned")
    existing = await conn.fetchrow(Q.find_open_session_by_conversation, data.conversation_id)
    if existing is not None:
        return  # already open (a redelivered assignment): one session per conversation
    visitor = None
    if domain.needs_visitor_number(data.conversation):
        visitor = await conn.fetchval(Q.next_visitor_number, data.agent_id)
    title = domain.title_for(data.conversation, visitor)
    session_id = domain.session_id_for(data.conversation_id)
    anchor_tab = "conversation"
    await conn.execute(
        Q.insert_session,
        data.agent_id,
        session_id,
        "conversation",
        data.conversation_id,
        data.channel,
        title,
        domain.icon(title),
        anchor_tab,
    )
    await conn.execute(
        Q.insert_tab,
        data.agent_id,
        session_id,
        anchor_tab,
        "conversation",
        title,
        True,
        {"conversation_id": data.conversation_id},
    )
    uow.emit(
        c.SessionStarted(
            agent_id=data.agent_id,
            session_id=session_id,
            conversation_id=data.conversation_id,
            channel=data.channel,
            title=title,
            icon=domain.icon(title),
            anchor_tab_id=anchor_tab,
        )
    )
    uow.emit(
        c.TabOpened(
            agent_id=data.agent_id,
            session_id=session_id,
            tab_id=anchor_tab,
            kind="conversation",
            title=title,
            conversation_id=data.conversation_id,
        )
    )
    await conn.execute(Q.set_focus, data.agent_id, session_id)
    uow.emit(c.SessionFocused(agent_id=data.agent_id, session_id=session_id, conversation_id=data.conversation_id))


async def on_presence_changed(uow: UnitOfWork, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
    await ensure_agent(uow, data.agent_id)
    await uow.conn.execute(Q.set_presence, data.agent_id, data.status)


# --- sessions.commands.v1 ----------------------------------------------------------------------


def _authorise(ev: c.CloudEvent, data: Any) -> None:
    if ev.subject and ev.subject != data.agent_id:
        raise reject(
            ev,
            data.agent_id,
            f"the command's subject {ev.subject!r} does not match data.agent_id "
            f"{data.agent_id!r}: an agent acts on its own workspace only",
        )


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
    session = await uow.conn.fetchrow(Q.get_session, data.agent_id, data.session_id)
    if session is None or session["status"] != "open":
        raise reject(ev, data.agent_id, f"no open session {data.session_id!r} to focus")
    await uow.conn.execute(Q.set_focus, data.agent_id, data.session_id)
    if session["unread"]:
        await uow.conn.execute(
            "UPDATE sessions SET unread = 0 WHERE agent_id = $1 AND session_id = $2", data.agent_id, data.session_id
        )
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


async def on_unsupported_command(uow: UnitOfWork, ev: c.CloudEvent, data: Any) -> None:
    raise reject(ev, data.agent_id, f"{ev.type} is not available in this version of Switchboard yet")


# --- read side ---------------------------------------------------------------------------------


async def workspace(conn: Any, agent_id: str) -> dict[str, Any]:
    focus = await conn.fetchval(Q.get_focus, agent_id)
    sessions = [dict(r) for r in await conn.fetch(Q.list_sessions, agent_id)]
    tabs = [dict(r) for r in await conn.fetch(Q.list_tabs, agent_id)]
    offers = [dict(r) for r in await conn.fetch(Q.list_pending_offers, agent_id)]
    if not any(s["session_id"] == domain.HOME for s in sessions):
        sessions.insert(
            0, {"session_id": domain.HOME, "kind": "home", "title": "Home", "icon": "Ho", "status": "open", "unread": 0}
        )
    for s in sessions:
        s["badge"] = domain.badge(s.get("unread") or 0)
        s["tabs"] = [t for t in tabs if t["session_id"] == s["session_id"]]
    return {"agent_id": agent_id, "focused_session": focus or domain.HOME, "sessions": sessions, "offers": offers}
