"""Following conversations: the transcript projection, the debounce queue per conversation, and
the debounced update (articles, replies, summaries, case drafts) when a conversation's turn comes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from assist import domain, embedding
from assist.compute import Budget, Timings, Worker
from assist.knowledge import Knowledge
from assist.store import AssistStore, Claim, Conversation, Holding, Message, NewMessage, Releasing
from assist.summaries import Summaries, record_feedback
from assist.transcript import Limits, Transcript
from shared import contracts as c
from shared.messaging import UnitOfWork

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = structlog.get_logger("switchboard.assist")

WAKE = "assist:wake"
CLAIM = 20  # conversations claimed per step, at most
POLL_S = 1.0  # the longest the debouncer sleeps (other replicas schedule conversations too)
# New messages embedded between two looks at the budget: at most this many, and at most this many
# characters (the encoder reads ~1,000 characters of a message: 256 tokens).
EMBED_CHUNK = 8
EMBED_CHUNK_CHARS = 2400
ENCODER_CHARS = 1200

Uow = UnitOfWork[AssistStore, Any]


@dataclass
class AssistBatch:
    """What a batch of events writes at its end (`FollowUp.after_batch`), in order: the
    conversations that arrived, the messages posted (with who sent each), the holds and releases."""

    arrived: list[Conversation] = field(default_factory=list)
    posted: list[tuple[NewMessage, str | None]] = field(default_factory=list)
    routed: list[Holding | Releasing] = field(default_factory=list)


def rounds(changes: list[Holding | Releasing]) -> list[list[Holding | Releasing]]:
    """The changes in rounds that name each conversation at most once, a conversation's changes in
    their order (one set-based statement may touch a row only once)."""
    out: list[list[Holding | Releasing]] = []
    last: dict[str, int] = {}
    for change in changes:
        n = last.get(change.conversation_id, -1) + 1
        if n == len(out):
            out.append([])
        out[n].append(change)
        last[change.conversation_id] = n
    return out


@dataclass(frozen=True)
class Pace:
    """How much one update may take: its time budget, the transcript it reads, how many run at once."""

    budget_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    concurrency: int = 4


def read_messages(
    fresh: list[Message], customer_texts: list[str]
) -> tuple[list[tuple[Message, list[domain.Signal]]], dict[str, list[str]]]:
    """The new customer messages' escalation signals and the conversation's entities (a worker's job)."""
    detected = [(m, signals) for m in fresh if (signals := domain.escalation_signals(m.text))]
    return detected, domain.entities(customer_texts)


def chunks(messages: list[Message]) -> list[list[Message]]:
    """The messages in order, in chunks of at most EMBED_CHUNK messages and EMBED_CHUNK_CHARS of
    what the encoder reads (one longer message makes a chunk by itself)."""
    out: list[list[Message]] = []
    size = 0
    for m in messages:
        weight = min(len(m.text), ENCODER_CHARS)
        if not out or len(out[-1]) == EMBED_CHUNK or size + weight > EMBED_CHUNK_CHARS:
            out.append([])
            size = 0
        out[-1].append(m)
        size += weight
    return out


class FollowUp:
    def __init__(
        self,
        runtime: Runtime[AssistStore, Any],
        knowledge: Knowledge,
        summaries: Summaries,
        debounce_s: float = 0.3,
        max_wait_s: float = 2.0,
        worker: Worker | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.runtime = runtime
        self.knowledge = knowledge
        self.summaries = summaries
        self.debounce_s = debounce_s
        self.max_wait_s = max_wait_s
        self.worker = worker or Worker()
        self.pace = pace or Pace()
        self.wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    # --- the projection -------------------------------------------------------------------------------

    async def on_conversation_arrived(self, uow: Uow, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
        """Written with the batch's other arrivals (`after_batch`)."""
        customer_name = data.customer.name if data.customer else None
        uow.batch.arrived.append(Conversation(data.conversation_id, data.channel, data.subject, customer_name))

    async def after_batch(self, uow: Uow) -> None:
        """The end of a batch: what its events asked for, a statement per kind (per round of the
        holds and releases), instead of one per event."""
        arrived, uow.batch.arrived = uow.batch.arrived, []
        if arrived:
            await uow.store.add_conversations(arrived)
        await self._add_messages(uow)
        routed, uow.batch.routed = uow.batch.routed, []
        for changes in rounds(routed):
            holds = [h for h in changes if isinstance(h, Holding)]
            releases = [r for r in changes if isinstance(r, Releasing)]
            due = False
            if holds:  # a first hold is due at once where messages are there already
                held = await uow.store.hold_conversations(holds, self.max_wait_s)
                due = any(h.first and h.written for h in held)
            if releases:
                due = any(await uow.store.release_conversations(releases, self.max_wait_s)) or due
            if due:
                uow.flags.add(WAKE)

    async def on_message_posted(self, uow: Uow, ev: c.CloudEvent, data: c.MessagePosted) -> None:
        """Written with the batch's other messages (`after_batch`)."""
        if data.visibility != "public" or not data.text.strip():
            return
        message = NewMessage(
            data.conversation_id, data.message_id, data.sender, data.visibility, data.text, ev.time, data.suggestion_id
        )
        uow.batch.posted.append((message, data.sender_id))

    async def _add_messages(self, uow: Uow) -> None:
        """The batch's new messages in one statement, their conversations scheduled; an agent's
        message sent from a suggestion decides it."""
        posted, uow.batch.posted = uow.batch.posted, []
        if not posted:
            return
        added = await uow.store.add_messages([m for m, _ in posted], self.debounce_s, self.max_wait_s)
        if added:
            uow.flags.add(WAKE)
        for m, sender_id in posted:
            key = (m.conversation_id, m.message_id)
            if key not in added:
                continue
            added.discard(key)  # a message twice in the batch counts once
            if m.sender == "agent" and m.suggestion_id:
                await record_feedback(uow.store, m.suggestion_id, None, m.text, sender_id, from_message=True)

    async def on_work_assigned(self, uow: Uow, ev: c.CloudEvent, data: c.WorkAssigned) -> None:
        """The agent holds the conversation now (a transfer ends the previous agent's hold); a new
        agent on the conversation gets a summary of it so far: at once when there are messages, else
        (most conversations are assigned before anyone writes) after the first one."""
        trigger = f"summary:{'transferred' if data.how == 'transferred' else 'new_agent'}:{data.agent_id}"
        holding = Holding(data.conversation_id, data.agent_id, trigger, data.previous_agent_id)
        uow.batch.routed.append(holding)

    async def on_work_released(self, uow: Uow, ev: c.CloudEvent, data: c.WorkReleased) -> None:
        """Hand-off (transfer) or close: the releasing agent no longer holds the conversation and gets
        a case-summary draft to review."""
        trigger = "transferred" if data.reason == "transferred" else "closed"
        self.case_due(uow, data.conversation_id, trigger, data.agent_id, releasing=data.agent_id)

    async def on_conversation_ended(self, uow: Uow, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
        self.case_due(uow, data.conversation_id, "closed", "")

    async def on_work_overflowed(self, uow: Uow, ev: c.CloudEvent, data: c.WorkOverflowed) -> None:
        """Escalation to another queue: a draft so the next tier starts from the story so far."""
        if data.to_queue:
            uow.batch.routed.append(Releasing(data.conversation_id, None, "case:escalated:"))

    def case_due(
        self, uow: Uow, conversation_id: str, trigger: str, agent_id: str, releasing: str | None = None
    ) -> None:
        """A case draft is due when something was written; on a close with nothing written (a call,
        say) there is nothing to draft or to wait for. `releasing`: the agent who lets go of it."""
        change = Releasing(conversation_id, releasing, f"case:{trigger}:{agent_id}", forget=trigger == "closed")
        uow.batch.routed.append(change)

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
        """The debouncer's step (`runtime.periodic`, woken by `wake`): start the updates of the
        conversations whose turn has come, as many at once as `pace.concurrency` allows, each in its
        own task so a slow one never holds the others back; when none is due, set `wake` for when the
        next one is. A finished update sets `wake` too."""
        free = self.pace.concurrency - len(self._running)
        if free <= 0:
            return 0
        async with self.runtime.transaction() as uow:
            claimed = await uow.store.claim_pending(min(CLAIM, free))
            wait = None if claimed else await uow.store.next_due()
        for claim in claimed:
            task = asyncio.create_task(self._update(claim), name=f"assist-update-{claim.conversation_id}")
            self._running.add(task)
            task.add_done_callback(self._finished)
        if wait is not None and wait < POLL_S:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(max(wait, 0.005), self.wake.set)
        return len(claimed)

    async def _update(self, claim: Claim) -> None:
        try:
            await self.process(claim.conversation_id, claim.triggers, claim.version)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the claim's lease runs out and the update is tried again
            log.warning("assist_update_failed", conversation_id=claim.conversation_id, error=repr(exc))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.wake.set()

    async def settle(self) -> None:
        """Wait for the updates under way (tests, and a drain before stopping)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def stop(self) -> None:
        """Let the updates under way finish within their budget, cancel the rest (their leases let
        another replica take them), and stop the worker."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=self.pace.budget_s)
        for task in list(self._running):
            task.cancel()
        await self.settle()
        if self._timer is not None:
            self._timer.cancel()
        await self.worker.close()

    # --- the update --------------------------------------------------------------------------------------

    async def process(self, conversation_id: str, triggers: list[str], version: int | None = None) -> dict[str, Any]:
        """One conversation's update: vectors and escalation signals for new customer messages, learned
        replies, articles, suggested replies, and the summaries its triggers ask for, over a bounded
        transcript. The CPU work runs on the worker threads, within the update's time budget; model
        calls happen between two transactions; the writes and events commit together."""
        budget = Budget(self.pace.budget_s, conversation_id)
        timings = Timings()
        async with self.runtime.transaction() as uow:
            await self.knowledge.refresh(uow.store)
            t = await Transcript.load(uow.store, conversation_id, self.pace.limits)
        fresh = [m for m in t.customer_rows if m.message_id not in t.vectors]
        with timings("articles"):
            embedded = await self.embed(t, fresh, budget)
        detected, ents = await budget.run(
            self.worker,
            read_messages,
            [m for m in fresh if m.message_id in embedded],
            [m.text for m in t.customer_rows],
        )
        summary_for = [x for x in triggers if x.startswith("summary:")]
        case_for = [x for x in triggers if x.startswith("case:")]
        with timings("summary"):
            summary = await self.summaries.summarise(t, budget) if t.rows and summary_for else None
            case_kind = case_for[-1].split(":")[1] if case_for else ""
            case = await self.summaries.draft_case(t, ents, case_kind, budget) if t.rows and case_for else None
        out: dict[str, Any] = {}
        async with self.runtime.transaction() as uow:
            store = uow.store
            if embedded:
                await store.set_message_vectors(conversation_id, [(i, t.vectors[i]) for i in embedded])
            for m, signals in detected:
                await self.flag_escalation(uow, conversation_id, m, signals)
            with timings("replies"):
                await self.knowledge.learn_replies(store, t, ents)
            if t.customer_vectors:
                with timings("articles"):
                    out["articles"] = await self.knowledge.surface(uow, t, self.worker)
                with timings("replies"):
                    out["replies"] = await self.knowledge.suggest(uow, t, ents)
            with timings("summary"):
                if summary is not None:
                    out["summary"] = await self.summaries.emit_summary(uow, t, summary, ents, summary_for[-1])
                if case is not None:
                    out["case"] = await self.summaries.emit_case(uow, t, case, case_for[-1])
            if version is not None:
                await store.finish_pending(conversation_id, version, triggers)
            if summary_for and not t.rows:
                # Assigned before its first message got here: summarise when it does.
                await store.keep_triggers(conversation_id, summary_for)
            if len(embedded) < len(fresh):  # out of time: the older new messages on the next update
                await self.schedule(uow, conversation_id, now=True)
        kinds = [k for k in ("articles", "replies") if k in out] + (["summary"] if summary or case else [])
        timings.observe(kinds)
        log.info(
            "assist_updated",
            conversation_id=conversation_id,
            duration_ms=round(budget.elapsed * 1000, 1),
            compute_ms=round(budget.used * 1000, 1),
            outputs=kinds,
            embedded=len(embedded),
            **({"cut": budget.cuts} if budget.cuts else {}),
        )
        return out

    async def embed(self, t: Transcript, fresh: list[Message], budget: Budget) -> list[str]:
        """Vectors for new customer messages, the latest first, a chunk at a time while the budget
        lasts (the latest chunk always); the ids embedded, which `t.vectors` now holds."""
        done: list[str] = []
        for chunk in chunks(fresh[::-1]):
            if done and budget.spent:
                budget.cut("embedding", f"{len(fresh) - len(done)} older new messages left for the next update")
                break
            vectors = await budget.run(self.worker, embedding.encode, [m.text for m in chunk])
            t.vectors.update((m.message_id, v) for m, v in zip(chunk, vectors, strict=True))
            done.extend(m.message_id for m in chunk)
        return done

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
