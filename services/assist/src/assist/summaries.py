"""What agents read and review: conversation summaries, case-summary drafts, and their verdicts on
suggested replies."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from assist import domain
from assist.compute import Budget, Worker
from assist.index import Index
from assist.providers import EMBEDDED, Assistant, Generated, parse_json_object
from assist.store import AssistStore
from assist.transcript import Transcript
from shared import contracts as c
from shared.messaging import UnitOfWork

T = TypeVar("T")

SUMMARY_MODEL = "textrank"
CASE_MODEL = "textrank+rules"
# What an update out of time makes instead (compute.Budget): no pairwise comparison of sentences.
QUICK_SUMMARY_MODEL = "opening-sentences"
QUICK_CASE_MODEL = "rules"


def parts(trigger: str) -> tuple[str, str, str]:
    """'case:closed:agent-1' → ('case', 'closed', 'agent-1')."""
    what, _, rest = trigger.partition(":")
    kind, _, agent_id = rest.partition(":")
    return what, kind, agent_id


class Summaries:
    def __init__(self, assistant: Assistant, index: Index, worker: Worker | None = None) -> None:
        self.assistant = assistant
        self.index = index
        self.worker = worker or Worker()

    def _intent(self, t: Transcript) -> str:
        vectors = t.customer_vectors
        return self.index.intent(np.stack(vectors)) if vectors else "general_inquiry"

    async def _run(self, budget: Budget | None, fn: Callable[[], T]) -> T:
        return await (budget.run(self.worker, fn) if budget else self.worker.run(fn))

    def _rank(self, budget: Budget | None, step: str) -> bool:
        """Whether there is time left for TextRank; once the budget is spent, the cut is recorded."""
        if budget is None or not budget.spent:
            return True
        budget.cut(step, "the customer's opening sentences instead of TextRank")
        return False

    async def summarise(self, t: Transcript, budget: Budget | None = None) -> tuple[Generated[str], str]:
        """The summary (by the configured provider, or TextRank on a worker thread) and the
        conversation's intent."""
        messages = t.messages

        async def embedded() -> str:
            rank = self._rank(budget, "summary")
            return await self._run(budget, functools.partial(domain.summarise, messages, rank=rank))

        generated = await self.assistant.generate(
            "summary",
            "You summarise customer-service conversations for the next agent. Answer with at most three "
            "plain sentences. Keep order numbers, amounts, emails and dates exactly as written.",
            t.prompt(),
            lambda text: text.strip()[:600],
            embedded,
            SUMMARY_MODEL,
        )
        if generated.provider == EMBEDDED and budget is not None and "summary" in budget.cuts:
            generated = dataclasses.replace(generated, model=QUICK_SUMMARY_MODEL)
        return generated, self._intent(t)

    async def emit_summary(
        self,
        uow: UnitOfWork[AssistStore, Any],
        t: Transcript,
        result: tuple[Generated[str], str],
        ents: dict[str, list[str]],
        trigger: str,
    ) -> str:
        generated, intent = result
        _, kind, agent_id = parts(trigger)
        await uow.store.upsert_summary(
            t.conversation_id,
            summary=generated.value,
            entities=ents,
            provider=generated.provider,
            model=generated.model,
            intent=intent,
            trigger=kind,
            message_count=t.total,
        )
        uow.emit(
            c.SummaryReady(
                conversation_id=t.conversation_id,
                summary=generated.value,
                entities=ents,
                provider=generated.provider,
                model=generated.model,
                intent=intent,
                trigger=kind,
                message_count=t.total,
                **({"agent_id": agent_id} if agent_id else {}),
                **({"fallback": generated.fallback} if generated.fallback else {}),
            )
        )
        return generated.value

    async def draft_case(
        self, t: Transcript, ents: dict[str, list[str]], kind: str, budget: Budget | None = None
    ) -> Generated[dict[str, Any]]:
        rank = self._rank(budget, "case_summary")
        embedded = await self._run(
            budget,
            functools.partial(domain.case_summary, t.messages, self._intent(t), ents, kind, t.customer_name, rank=rank),
        )

        def parse(text: str) -> dict[str, Any]:
            doc = parse_json_object(text)
            return {
                **embedded,
                "issue": str(doc["issue"])[:400],
                "actions": [str(a) for a in doc.get("actions") or []][:6],
                "resolution": doc.get("resolution") or None,
                "next_steps": [str(a) for a in doc.get("next_steps") or []][:6],
            }

        return await self.assistant.generate(
            "case_summary",
            "You draft case notes from a customer-service conversation. Answer with one JSON object with the "
            'keys "issue" (one sentence), "actions" (list of what the agent did), "resolution" (string or '
            'null) and "next_steps" (list). Keep order numbers and amounts exactly as written.',
            t.prompt(),
            parse,
            lambda: embedded,
            CASE_MODEL if rank else QUICK_CASE_MODEL,
        )

    async def emit_case(
        self, uow: UnitOfWork[AssistStore, Any], t: Transcript, generated: Generated[dict[str, Any]], trigger: str
    ) -> dict[str, Any]:
        _, kind, agent_id = parts(trigger)
        draft = {**generated.value, "message_count": t.total}
        previous = await uow.store.find_case_summary(t.conversation_id)
        if previous and previous.draft.get("message_count") == t.total and previous.trigger == kind:
            return dict(previous.draft)  # the same transcript, drafted already (e.g. released, then ended)
        await uow.store.upsert_case_summary(
            t.conversation_id, draft, kind, agent_id or None, generated.provider, generated.model
        )
        uow.emit(
            c.CaseSummaryDrafted(
                conversation_id=t.conversation_id,
                draft=draft,
                trigger=kind,
                agent_id=agent_id or None,
                provider=generated.provider,
                model=generated.model,
                **({"fallback": generated.fallback} if generated.fallback else {}),
            )
        )
        return draft


async def record_feedback(
    store: AssistStore,
    suggestion_id: str,
    verdict: str | None,
    text: str | None,
    agent_id: str | None,
    from_message: bool = False,
) -> tuple[bool, str]:
    """Accept, edit or reject a suggestion (once). A sent message decides by its text."""
    suggestion = await store.find_suggestion(suggestion_id)
    if suggestion is None:
        return False, f"no suggestion {suggestion_id!r}"
    if suggestion.verdict is not None:
        if from_message:
            return False, "already decided"
        return False, f"suggestion {suggestion_id!r} was already {suggestion.verdict}"
    if verdict is None:
        same = domain.normalise_text(text or "") == domain.normalise_text(suggestion.text)
        verdict = "accepted" if same else "edited"
    await store.decide_suggestion(suggestion_id, verdict, text, agent_id)
    return True, verdict
