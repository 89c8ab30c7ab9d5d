"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from assist import service
from shared import topics
from shared.runtime import Runtime


def register(runtime: Runtime) -> None:
    runtime.consume(topics.CONVERSATIONS, {"conversation.arrived": service.on_conversation_arrived})
    runtime.consume(
        topics.MESSAGES, {"message.posted": service.on_message_posted}, after_batch=service.summarise_touched
    )
