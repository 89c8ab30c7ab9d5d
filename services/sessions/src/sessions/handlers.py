"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from sessions import service
from shared import contracts, topics
from shared.messaging import RunAhead
from shared.runtime import Runtime


def register(runtime: Runtime) -> None:
    runtime.consume(
        topics.ROUTING,
        {
            "work.offered": service.on_work_offered,
            "work.offer_expired": service.on_work_offer_expired,
            "work.assigned": service.on_work_assigned,
            "work.released": service.on_work_released,
            "work.pick_refused": service.on_pick_refused,
            "work.queued": service.on_work_queued,
            "work.requeued": service.on_work_requeued,
            "work.overflowed": service.on_work_overflowed,
        },
        before_batch=service.lock_agents,
        # each kind's first statement for the batch's records, in one round trip (`whole`: all its
        # handler does in the database, so a record after it about the same agent or conversation
        # runs in the next round trip)
        ahead={
            "work.offered": RunAhead(service.offered_ahead, whole=True),
            "work.assigned": RunAhead(service.assigned_ahead),
            "work.released": RunAhead(service.released_ahead, whole=True, only=service.released_only),
            "work.queued": RunAhead(service.queued_ahead, whole=True, only=service.first_queued),
        },
        keys=service.keys,
    )
    runtime.consume(
        topics.SESSIONS_COMMANDS,
        {
            "offer.accept": service.on_accept_offer,
            "offer.reject": service.on_reject_offer,
            "session.open": service.on_open_session,
            "session.focus": service.on_focus_session,
            "session.close": service.on_close_session,
            "tab.open": service.on_open_tab,
            "tab.focus": service.on_focus_tab,
            "tab.close": service.on_close_tab,
            "draft.save": service.on_save_draft,
            "record.link": service.on_link_record,
            "message.send": service.on_send_message,
            "session.transfer": service.on_transfer_session,
            "supervisor.act": service.on_supervisor_act,
        },
        savepoints=True,
        before_batch=service.lock_agents,
        # a command refused at parse time (too long an id, a bad field) also answers its agent
        on_invalid=contracts.reject_invalid_command,
        ahead={
            "offer.accept": RunAhead(service.accept_ahead, whole=True),
            "session.close": RunAhead(service.close_ahead, whole=True, only=service.closes_at_once),
        },
        keys=service.keys,
    )
    runtime.consume(
        topics.PRESENCE,
        {"presence.changed": service.on_presence_changed},
        before_batch=service.lock_agents,
        after_batch=service.write_projections,
        keys=service.keys,
        # the status the workspace shows
        background=True,
    )
    runtime.consume(
        topics.CONVERSATIONS,
        {
            "conversation.arrived": service.on_conversation_arrived,
            "conversation.ended": service.on_conversation_ended,
        },
        after_batch=service.write_projections,
        keys=service.keys,
        # the waiting list's titles and priorities: offers carry their own
        background=True,
    )
    runtime.consume(topics.MESSAGES, {"message.posted": service.on_message_posted}, keys=service.keys)
    runtime.consume(
        topics.ASSIST,
        {
            "assist.summary_ready": service.on_assist,
            "assist.articles_surfaced": service.on_assist,
            "assist.replies_suggested": service.on_assist,
            "assist.case_summary_drafted": service.on_assist,
            "assist.escalation_detected": service.on_escalation_detected,
        },
        keys=service.keys,
        # suggestions for the pane
        background=True,
    )
