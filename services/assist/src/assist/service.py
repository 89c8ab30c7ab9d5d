"""assist's use cases, by concern: `knowledge` (the knowledge base and reply library, search),
`followup` (the conversations followed and their debounced updates) and `summaries` (summaries,
case drafts, feedback on suggestions). `AssistService` is the one object that holds them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assist.compute import Worker
from assist.followup import FollowUp, Pace
from assist.knowledge import Knowledge, Mode
from assist.providers import Assistant
from assist.summaries import Summaries

if TYPE_CHECKING:
    from assist.store import AssistStore
    from shared.runtime import Runtime


class AssistService:
    def __init__(
        self,
        runtime: Runtime[AssistStore, Any],
        assistant: Assistant,
        debounce_s: float = 0.3,
        max_wait_s: float = 2.0,
        pace: Pace | None = None,
        threads: int = 2,
    ) -> None:
        self.runtime = runtime
        self.assistant = assistant
        self.worker = Worker(threads)
        self.knowledge = Knowledge()
        self.summaries = Summaries(assistant, self.knowledge.index, self.worker)
        self.followup = FollowUp(runtime, self.knowledge, self.summaries, debounce_s, max_wait_s, self.worker, pace)

    @property
    def retrieval_mode(self) -> Mode:
        return self.knowledge.retrieval_mode

    @retrieval_mode.setter
    def retrieval_mode(self, mode: Mode) -> None:
        self.knowledge.retrieval_mode = mode

    async def process(self, conversation_id: str, triggers: list[str], version: int | None = None) -> dict[str, Any]:
        """One conversation's update now (what the debouncer runs when its turn comes)."""
        return await self.followup.process(conversation_id, triggers, version)
