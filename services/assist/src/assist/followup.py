"""Following conversations: the transcript projection, the debounce queue per conversation, and
the debounced update (articles, replies, summaries, case drafts) when a conversation's turn comes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from assist import domain, embedding
from assist.knowledge import Knowledge
from assist.store import AssistStore, Message
from assist.summaries import Summaries, record_feedback
from assist.transcript import Transcript
from shared import contracts as c
from shared.messaging import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import Runtime

WAKE = "assist:wake"
CLAIM = 20  # conversations claimed per step
POLL_S = 1.0  # the longest the debouncer sleeps (other replicas schedule conversations too)

Uow = UnitOfWork[AssistStore, Any]


class FollowUp:
    def __init__(
        self,
        runtime: Runtime[AssistStore, Any],
        knowledge: Knowledge,
        summaries: Summaries,
        debounce_s: float = 0.3,
        max_wait_s: float = 2.0,
    ) -> None:
        self.runtime = runtime
        self.knowledge = knowledge
        self.summaries = summaries
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    # --- the projection -------------------------------------------------------------------------------

    async def on_conversation_arrived(self, uow: Uow, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
        await uow.store.add_conversation(
            data.conversation_id, data.channel, data.subject, data.customer.name if data.customer else None
        )

    async def on_message_posted(self, uow: Uow, ev: c.CloudEvent, data: c.MessagePosted) -> None:
        if data.visibility != "public" or not data.text.strip():
            return
        added = await uow.store.add_message(
            data.conversation_id,
            data.message_id,
            data.sender,
            data.visibility,
            data.text,
            ev.time,
            data.suggestion_id,
        )
        if not added:
            return
        if data.sender == "agent" and data.suggestion_id:
            await record_feedback(uow.store, data.suggestion_id, None, data.text, data.sender_id, from_message=True)
        await self.schedule(uow, data.conversation_id)

    async def on_work_assigned(self, uow: Uow, ev: c.CloudEvent, data: c.WorkAssigned) -> None:
        """A new agent on the conversation gets a summary of it so far."""
        if await uow.store.add_conversation_agent(data.conversation_id, data.agent_id):
            trigger = f"summary:{'transferred' if data.how == 'transferred' else 'new_agent'}:{data.agent_id}"
            if await uow.store.count_messages(data.conversation_id):
                await self.schedule(uow, data.conversation_id, [trigger], now=True)
            else:  # most conversations are assigned before anyone writes: wait for the first message
                await uow.store.keep_triggers(data.conversation_id, [trigger])

    async def on_work_released(self, uow: Uow, ev: c.CloudEvent, data: c.WorkReleased) -> None:
        """Hand-off (transfer) or close: the releasing agent gets a case-summary draft to review."""
        trigger = "transferred" if data.reason == "transferred" else "closed"
        await self.case_due(uow, data.conversation_id, trigger, data.agent_id)

    async def on_conversation_ended(self, uow: Uow, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
        await self.case_due(uow, data.conversation_id, "closed", "")

    async def on_work_overflowed(self, uow: Uow, ev: c.CloudEvent, data: c.WorkOverflowed) -> None:
        """Escalation to another queue: a draft so the next tier starts from the story so far."""
        if data.to_queue and await uow.store.count_messages(data.conversation_id):
            await self.schedule(uow, data.conversation_id, ["case:escalated:"], now=True)

    async def case_due(self, uow: Uow, conversation_id: str, trigger: str, agent_id: str) -> None:
        if await uow.store.count_messages(conversation_id):
            await self.schedule(uow, conversation_id, [f"case:{trigger}:{agent_id}"], now=True)
        elif trigger == "closed":  # nothing was written (a call, say): nothing to draft or to wait for
            await uow.store.forget_pending(conversation_id)

    # --- the debounce queue -------------------------------------------------------------------------------

    async def schedule(
        self, uow: Uow, conversation_id: str, triggers: list[str] | None = None, now: bool = False
    ) -> None:
        """Debounce: every message pushes the conversation's turn back by the debounce, but never past
        `max_wait` from the first message of the burst; a trigger (summary, case) is due at once."""
        await uow.store.schedule(conversation_id, 0.0 if now else self.debounce_s, self.max_wait_s, triggers or [])
        uow.flags.add(WAKE)

    def on_committed(self, uow: Uow) -> None:
        if WAKE in uow.flags:
            self.wake.set()

    async def step(self) -> int:
        """The debouncer's step (`runtime.periodic`, woken by `wake`): process the conversations whose
        turn has come; when none has, set `wake` for when the next one's comes."""
        async with self.runtime.transaction() as uow:
            claimed = await uow.store.claim_pending(CLAIM)
            wait = None if claimed else await uow.store.next_due()
        for claim in claimed:
            await self.process(claim.conversation_id, claim.triggers, claim.version)
        if wait is not None and wait < POLL_S:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(max(wait, 0.005), self.wake.set)
        return len(claimed)

    # --- the update --------------------------------------------------------------------------------------

    async def process(self, conversation_id: str, triggers: list[str], version: int | None = None) -> dict[str, Any]:
        """One conversation's update: vectors and escalation signals for new customer messages, learned
        replies, articles, suggested replies, and the summaries its triggers ask for. Model calls happen
        between two transactions; the writes and events commit together."""
        async with self.runtime.transaction() as uow:
            await self.knowledge.refresh(uow.store)
            t = await Transcript.load(uow.store, conversation_id)
        fresh = [m for m in t.customer_rows if m.message_id not in t.vectors]
        if fresh:
            vectors = await asyncio.to_thread(embedding.encoder().encode, [m.text for m in fresh])
            t.vectors.update((m.message_id, v) for m, v in zip(fresh, vectors, strict=True))
        detected = [(m, signals) for m in fresh if (signals := domain.escalation_signals(m.text))]
        ents = t.entities()
        summary_for = [x for x in triggers if x.startswith("summary:")]
        case_for = [x for x in triggers if x.startswith("case:")]
        summary = await self.summaries.summarise(t) if t.rows and summary_for else None
        case = await self.summaries.draft_case(t, ents, case_for[-1].split(":")[1]) if t.rows and case_for else None
        out: dict[str, Any] = {}
        async with self.runtime.transaction() as uow:
            store = uow.store
            if fresh:
                await store.set_message_vectors(
                    conversation_id, [(m.message_id, t.vectors[m.message_id]) for m in fresh]
                )
            for m, signals in detected:
                await self.flag_escalation(uow, conversation_id, m, signals)
            await self.knowledge.learn_replies(store, t, ents)
            if t.customer_rows:
                out["articles"] = await self.knowledge.surface(uow, t)
                out["replies"] = await self.knowledge.suggest(uow, t, ents)
            if summary is not None:
                out["summary"] = await self.summaries.emit_summary(uow, t, summary, ents, summary_for[-1])
            if case is not None:
                out["case"] = await self.summaries.emit_case(uow, t, case, case_for[-1])
            if version is not None:
                await store.finish_pending(conversation_id, version, triggers)
            if summary_for and not t.rows:
                # Assigned before its first message got here: summarise when it does.
                await store.keep_triggers(conversation_id, summary_for)
        return out

    async def flag_escalation(
        self, uow: Uow, conversation_id: str, message: Message, signals: list[domain.Signal]
    ) -> None:
        """Announce the signals a customer message shows that the conversation has not shown before."""
        new = await uow.store.flag_escalation(conversation_id, signals, message.message_id)
        if new:
            uow.emit(
                c.EscalationDetected(
                    conversation_id=conversation_id,
                    signals=new,
                    message_id=message.message_id,
                    excerpt=domain.excerpt(message.text),
                )
            )
