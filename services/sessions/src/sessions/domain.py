"""Workspace rules as plain functions: titles, icons, badges, what a command may do."""

from __future__ import annotations

from typing import Any

from shared.contracts import icon_of

HOME = "home"
MAX_SESSIONS = 10
UNREAD_BADGE_CAP = 9


def title_for(conversation: dict[str, Any], visitor_number: int | None) -> str:
    """The customer's name, else the record's title, else "Visitor N" for an unknown customer."""
    customer = conversation.get("customer") or {}
    name = (customer.get("name") or "").strip()
    if name:
        return name
    record = conversation.get("record") or {}
    if (record.get("title") or "").strip():
        return record["title"].strip()
    return f"Visitor {visitor_number or 1}"


def needs_visitor_number(conversation: dict[str, Any]) -> bool:
    customer = conversation.get("customer") or {}
    record = conversation.get("record") or {}
    return not (customer.get("name") or "").strip() and not (record.get("title") or "").strip()


def icon(title: str) -> str:
    return icon_of(title)


def badge(unread: int) -> str:
    return "" if unread <= 0 else (f"{UNREAD_BADGE_CAP}+" if unread > UNREAD_BADGE_CAP else str(unread))


def session_id_for(conversation_id: str) -> str:
    return f"conv-{conversation_id}"


def close_refusal(session: dict[str, Any] | None, session_id: str, confirmed: bool) -> str | None:
    """Why `session.close` cannot be carried out (None: it can)."""
    if session_id == HOME:
        return "the Home session cannot be closed"
    if session is None:
        return f"no session {session_id!r} in this agent's workspace"
    if session["status"] != "open":
        return f"session {session_id!r} is already closed"
    if not confirmed:
        return f"closing session {session_id!r} needs confirmation: send session.close with confirmed: true"
    return None
