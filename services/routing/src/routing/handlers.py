"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from routing import service
from shared import topics
from shared.messaging import RunAhead
from shared.messaging import agents_and_conversations as keys


def register(runtime: service.RoutingRuntime, drainer: service.Drainer) -> None:
    runtime.consume(
        topics.CONVERSATIONS,
        {
            "conversation.arrived": service.on_conversation_arrived,
            "conversation.ended": service.on_conversation_ended,
        },
        before_batch=service.lock_agents,
        after_batch=service.after_batch,
        on_committed=drainer.on_committed,
        keys=keys,
    )
    runtime.consume(
        topics.SESSIONS,
        {
            "offer.accepted": service.on_offer_accepted,
            "offer.rejected": service.on_offer_rejected,
            "session.closed": service.on_session_closed,
        },
        before_batch=service.lock_agents,
        after_batch=service.after_batch,
        on_committed=drainer.on_committed,
        # the accepts and the closes of a batch, each kind in one round trip (each handler's only
        # statement: a close after an accept of the same agent runs in the next)
        ahead={
            "offer.accepted": RunAhead(service.accept_ahead, whole=True),
            "session.closed": RunAhead(service.close_ahead, whole=True, only=service.closes_work),
        },
        keys=keys,
    )
    runtime.consume(
        topics.ROUTING_COMMANDS,
        {"work.pick": service.on_pick_work, "work.transfer": service.on_transfer_work},
        before_batch=service.lock_agents,
        after_batch=service.after_batch,
        on_committed=drainer.on_committed,
        keys=keys,
    )
    runtime.consume(
        topics.PRESENCE,
        {
            "presence.changed": service.on_presence_changed,
        },
        after_batch=service.after_batch,
        on_committed=drainer.on_committed,
        keys=keys,
        # automatic changes (busy, back to available) are two records a conversation: an agent's new
        # status reaches the drain a moment later
        background=True,
    )
