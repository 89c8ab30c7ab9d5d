"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from assist.service import AssistService
from shared import topics
from shared.runtime import Runtime


def register(runtime: Runtime, assist: AssistService) -> None:
    runtime.consume(
        topics.CONVERSATIONS,
        {"conversation.arrived": assist.on_conversation_arrived, "conversation.ended": assist.on_conversation_ended},
        on_committed=assist.on_committed,
    )
    runtime.consume(topics.MESSAGES, {"message.posted": assist.on_message_posted}, on_committed=assist.on_committed)
    runtime.consume(
        topics.ROUTING,
        {
            "work.assigned": assist.on_work_assigned,
            "work.released": assist.on_work_released,
            "work.overflowed": assist.on_work_overflowed,
        },
        on_committed=assist.on_committed,
    )
    runtime.background(assist.run_debouncer)
