"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from sessions import service
from shared import topics
from shared.runtime import Runtime

UNSUPPORTED = ("session.open", "tab.open", "tab.focus", "tab.close", "draft.save", "record.link", "message.send")


def register(runtime: Runtime) -> None:
    runtime.consume(
        topics.ROUTING,
        {
            "work.offered": service.on_work_offered,
            "work.offer_expired": service.on_work_offer_expired,
            "work.assigned": service.on_work_assigned,
        },
    )
    runtime.consume(
        topics.SESSIONS_COMMANDS,
        {
            "offer.accept": service.on_accept_offer,
            "offer.reject": service.on_reject_offer,
            "session.close": service.on_close_session,
            "session.focus": service.on_focus_session,
            **{t: service.on_unsupported_command for t in UNSUPPORTED},
        },
        savepoints=True,
    )
    runtime.consume(topics.PRESENCE, {"presence.changed": service.on_presence_changed})
