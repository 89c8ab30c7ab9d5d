"""One conversation as the debounced update reads it."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from assist import domain
from assist.store import AssistStore, Conversation, Message


class Transcript:
    """One conversation as the debounced update reads it, with its customer messages' vectors."""

    def __init__(self, conversation: Conversation | None, conversation_id: str, messages: list[Message]) -> None:
        self.conversation_id = conversation_id
        self.customer_name = conversation.customer_name if conversation else None
        self.subject = conversation.subject if conversation else None
        self.rows = messages
        self.vectors: dict[str, NDArray[np.float32]] = {
            m.message_id: m.vector for m in messages if m.vector is not None
        }

    @property
    def messages(self) -> list[tuple[str, str]]:
        return [(m.sender, m.text) for m in self.rows]

    @property
    def customer_rows(self) -> list[Message]:
        return [m for m in self.rows if m.sender == "customer"]

    @property
    def customer_vectors(self) -> list[NDArray[np.float32]]:
        return [self.vectors[m.message_id] for m in self.customer_rows]

    def entities(self) -> dict[str, list[str]]:
        return domain.entities([m.text for m in self.customer_rows])

    @classmethod
    async def load(cls, store: AssistStore, conversation_id: str) -> Transcript:
        messages = await store.list_messages(conversation_id)
        return cls(await store.find_conversation(conversation_id), conversation_id, messages)

    def prompt(self, max_chars: int = 6000) -> str:
        """The transcript for a chat model: the subject, then the last `max_chars` of messages."""
        body = "\n".join(f"{sender}: {text}" for sender, text in self.messages)
        return ("Subject: " + self.subject + "\n" if self.subject else "") + body[-max_chars:]
