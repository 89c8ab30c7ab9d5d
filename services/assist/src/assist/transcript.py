"""One conversation as the debounced update reads it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from assist.store import AssistStore, Conversation, Message


@dataclass(frozen=True)
class Limits:
    """The transcript an update reads: its latest `messages`, at most `chars` characters of them
    (one message longer than that is cut to its first `chars`)."""

    messages: int = 200
    chars: int = 64_000


class Transcript:
    """One conversation as the debounced update reads it, with its customer messages' vectors."""

    def __init__(
        self,
        conversation: Conversation | None,
        conversation_id: str,
        messages: list[Message],
        total: int | None = None,
    ) -> None:
        self.conversation_id = conversation_id
        self.customer_name = conversation.customer_name if conversation else None
        self.subject = conversation.subject if conversation else None
        self.rows = messages
        # How many messages the conversation has in all (the rows may be its latest only).
        self.total = len(messages) if total is None else total
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
        """The vectors of the customer's messages that have one, in order."""
        return [v for m in self.customer_rows if (v := self.vectors.get(m.message_id)) is not None]

    @classmethod
    async def load(cls, store: AssistStore, conversation_id: str, limits: Limits | None = None) -> Transcript:
        limits = limits or Limits()
        latest = await store.list_messages(conversation_id, limits.messages)
        total = await store.count_messages(conversation_id) if len(latest) >= limits.messages else len(latest)
        return cls(
            await store.find_conversation(conversation_id), conversation_id, bounded(latest, limits.chars), total
        )

    def prompt(self, max_chars: int = 6000) -> str:
        """The transcript for a chat model: the subject, then the last `max_chars` of messages."""
        body = "\n".join(f"{sender}: {text}" for sender, text in self.messages)
        return ("Subject: " + self.subject + "\n" if self.subject else "") + body[-max_chars:]


def bounded(messages: list[Message], chars: int) -> list[Message]:
    """The latest messages that fit in `chars` characters (the last one always, cut if need be)."""
    out: list[Message] = []
    size = 0
    for m in reversed(messages):
        if out and size + len(m.text) > chars:
            break
        if len(m.text) > chars:
            m = dataclasses.replace(m, text=m.text[:chars])
        out.append(m)
        size += len(m.text)
    return out[::-1]
