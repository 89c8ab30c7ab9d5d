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


DEFAULT_PROFILE: dict[str, Any] = {
    "max_sessions": 10,
    "max_tabs": 10,
    "remember_tabs": True,
    "pane_tools": ["summary", "articles", "replies", "case_summary"],
    "offer_notifications": {"show_timeout": True, "sound": "chime"},
}
# Channels an agent auto-accepts are routing's decision (routing.agents[].auto_accept), not a
# workspace setting: routing assigns without an offer and sessions opens the session.
PANE_KINDS = {
    "assist.summary_ready": "summary",
    "assist.articles_surfaced": "articles",
    "assist.replies_suggested": "replies",
    "assist.case_summary_drafted": "case_summary",
}
# Which pane tool comes first for the kind of tab in focus.
PANE_FOCUS = {"conversation": "replies", "case": "case_summary", "knowledge": "articles", "customer": "summary"}


def profile_settings(stored: dict[str, Any] | None) -> dict[str, Any]:
    """An experience profile's settings over the defaults; unknown keys are refused."""
    stored = stored or {}
    unknown = set(stored) - set(DEFAULT_PROFILE)
    if unknown:
        raise ValueError(
            f"unknown experience profile setting(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(DEFAULT_PROFILE))}"
        )
    return {**DEFAULT_PROFILE, **stored}


def draft_key(agent_id: str, session_id: str, tab_id: str, conversation_id: str | None) -> str:
    if conversation_id:
        return f"conv:{conversation_id}:{tab_id}"
    return f"sess:{agent_id}:{session_id}:{tab_id}"


def tab_close_refusal(tab: dict[str, Any] | None, tab_id: str) -> str | None:
    if tab is None:
        return f"no tab {tab_id!r} in this session"
    if tab["anchor"]:
        return f"the anchor tab {tab_id!r} cannot be closed on its own; close the session instead"
    return None


def record_title(record: dict[str, Any]) -> str:
    title = (record.get("title") or "").strip()
    return title or f"{record.get('type', 'record').capitalize()} {record.get('id', '')}".strip()


def pane_view(pane: dict[str, Any], tools: list[str], focused_kind: str | None) -> dict[str, Any]:
    """The pane as the agent sees it: only the profile's tools, the focused tab's tool first."""
    shown = {k: v for k, v in pane.items() if k in tools}
    first = PANE_FOCUS.get(focused_kind or "")
    order = sorted(shown, key=lambda k: (k != first, tools.index(k)))
    return {"tools": order, "focused_tool": order[0] if order else None, **shown}
