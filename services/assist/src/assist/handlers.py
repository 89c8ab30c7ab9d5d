"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from assist.followup import FollowUp
from shared import topics
from shared.runtime import Runtime


def register(runtime: Runtime, follow: FollowUp) -> None:
    runtime.consume(
        topics.CONVERSATIONS,
        {"conversation.arrived": follow.on_conversation_arrived, "conversation.ended": follow.on_conversation_ended},
        after_batch=follow.after_batch,
        on_committed=follow.on_committed,
        # a conversation's start and end; its messages (below) are taken as they come
        background=True,
    )
    runtime.consume(
        topics.MESSAGES,
        {"message.posted": follow.on_message_posted},
        after_batch=follow.after_batch,
        on_committed=follow.on_committed,
    )
    runtime.consume(
        topics.ROUTING,
        {
            "work.assigned": follow.on_work_assigned,
            "work.released": follow.on_work_released,
            "work.overflowed": follow.on_work_overflowed,
        },
        after_batch=follow.after_batch,
        on_committed=follow.on_committed,
        background=True,
    )
