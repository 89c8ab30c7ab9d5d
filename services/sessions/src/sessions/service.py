"""sessions' use cases: the agent's workspace, event by event, and the agent's commands."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sessions import domain
from sessions.config import DEFAULT_PROFILE, SessionProfile, SessionsConfig
from sessions.domain import (
    ANCHOR,
    HOME,
    TRANSCRIPT_PAGE,
    Assigned,
    Assignment,
    Closed,
    ConversationInfo,
    Disposition,
    Draft,
    Message,
    Offer,
    PaneChange,
    Presence,
    Session,
    SupervisorAction,
    Tab,
)
from sessions.store import SessionsStore
from shared import contracts as c
from shared.messaging import Rejection, UnitOfWork, agents_and_conversations


@dataclass
class SessionsBatch:
    """What a batch's handlers leave to its end (`write_projections`): projections no handler of
    the batch reads back, each written in one statement, last announcement per key."""

    presences: dict[str, Presence] = field(default_factory=dict)
    conversations: dict[str, ConversationInfo] = field(default_factory=dict)


Uow = UnitOfWork[SessionsStore, SessionsBatch]


def _now() -> datetime:
    return datetime.now(UTC)


def reject(ev: c.CloudEvent, agent_id: str, reason: str, **extra: Any) -> Rejection:
    return Rejection(
        c.CommandRejected(agent_id=agent_id, command_id=ev.id, command_type=ev.type, reason=reason, **extra)
    )


async def stamp_sequence(uow: Uow, events: list[c.CloudEvent]) -> None:
    """Sequencer: number each agent's sessions.v1 events (data.seq), one row lock per agent."""
    mine = [ev for ev in events if ev.type in c.TYPES_BY_TOPIC[c.topics.SESSIONS]]
    if not mine:
        return
    counts = Counter(ev.data["agent_id"] for ev in mine)
    # one statement for the batch's agents, locked in sorted order: no deadlock between two batches
    last = await uow.store.bump_seqs(dict(counts))
    next_seq = {agent_id: last[agent_id] - n + 1 for agent_id, n in counts.items()}
    for ev in mine:
        agent_id = ev.data["agent_id"]
        ev.data["seq"] = next_seq[agent_id]
        next_seq[agent_id] += 1


async def profile(store: SessionsStore, agent_id: str) -> SessionProfile:
    """The agent's experience profile (the defaults when none is stored)."""
    return await store.find_profile(agent_id) or SessionProfile()


async def _session(uow: Uow, ev: c.CloudEvent, agent_id: str, session_id: str) -> Session:
    session = await uow.store.find_session(agent_id, session_id)
    if session is None or session.status != "open":
        raise reject(ev, agent_id, f"no open session {session_id!r} in this agent's workspace")
    return session


def _authorise(ev: c.CloudEvent, data: Any) -> None:
    if ev.subject and ev.subject != data.agent_id:
        raise reject(
            ev,
            data.agent_id,
            f"the command's subject {ev.subject!r} does not match data.agent_id {data.agent_id!r}: "
            "an agent acts on its own workspace only",
        )


async def _open_session(
    uow: Uow,
    session: Session,
    anchor: Tab,
    *,
    record: dict[str, Any] | None = None,
    earlier: list[Message] | None = None,
    answered_by: c.CloudEvent | None = None,
) -> None:
    """Open (or reopen) the session (`_session_and_anchor`) in the agent's focus; a conversation's
    earlier messages follow (`earlier` when the caller read them already). `answered_by`: the event
    whose opening may have run ahead (`assigned_ahead`)."""
    store = uow.store
    agent_id, session_id, conversation_id = session.agent_id, session.session_id, session.conversation_id

    def open_it() -> Awaitable[bool]:
        return store.open_session(session, anchor)

    if await (open_it() if answered_by is None else uow.answered(answered_by, open_it, "open_session")):
        # reopened: it takes the new title
        await store.retitle_session(agent_id, session_id, session.title, session.icon, record)
        if not (await profile(store, agent_id)).remember_tabs:
            await store.forget_app_tabs(agent_id, session_id)
    uow.emit(
        c.SessionStarted(
            agent_id=agent_id,
            session_id=session_id,
            conversation_id=conversation_id,
            channel=session.channel,
            title=session.title,
            icon=session.icon,
            anchor_tab_id=ANCHOR,
        )
    )
    uow.emit(
        c.TabOpened(
            agent_id=agent_id,
            session_id=session_id,
            tab_id=ANCHOR,
            kind=anchor.kind,
            title=session.title,
            conversation_id=conversation_id,
        )
    )
    if conversation_id:
        if earlier is None:
            earlier = await store.list_messages_before(conversation_id, None, domain.TRANSCRIPT_PAGE)
        _deliver_earlier_messages(uow, agent_id, session_id, conversation_id, earlier)
    uow.emit(c.SessionFocused(agent_id=agent_id, session_id=session_id, conversation_id=conversation_id))


def _session_and_anchor(
    agent_id: str,
    session_id: str,
    kind: str,
    title: str,
    conversation_id: str | None,
    channel: str | None,
    anchor_kind: str,
    target: dict[str, Any],
) -> tuple[Session, Tab]:
    """A session to open, with its anchor tab in its focus; its icon is its title's."""
    icon = domain.icon(title)
    session = Session(agent_id, session_id, kind, title, icon, conversation_id, channel, focused_tab=ANCHOR)
    return session, Tab(session_id, ANCHOR, anchor_kind, title, anchor=True, target=target)


def _conversation_session(agent_id: str, conversation_id: str, channel: str, title: str) -> tuple[Session, Tab]:
    """The session of a conversation the agent holds, with its anchor: the conversation."""
    session_id = domain.session_id_for(conversation_id)
    target = {"conversation_id": conversation_id}
    return _session_and_anchor(
        agent_id, session_id, "conversation", title, conversation_id, channel, "conversation", target
    )


def _deliver_earlier_messages(
    uow: Uow, agent_id: str, session_id: str, conversation_id: str, earlier: list[Message]
) -> None:
    """Flow 8: the new holder's stream carries what was said before it held the conversation (the
    customer's first words, a previous agent's replies), so a client reading only its agent's stream
    shows the whole conversation; older pages come with conversation.history."""
    for m in earlier:
        uow.emit(
            c.MessageReceived(
                agent_id=agent_id,
                session_id=session_id,
                conversation_id=conversation_id,
                message_id=m.message_id,
                sender=m.sender,  # type: ignore[arg-type]
                sender_id=m.sender_id,
                visibility=m.visibility,  # type: ignore[arg-type]
                text=m.text,
                time=m.time,
                suggestion_id=m.suggestion_id,
                command_id=m.command_id,
            )
        )


async def _close_transferred(uow: Uow, session: Session) -> None:
    await uow.store.close_session(session.agent_id, session.session_id)
    uow.emit(
        c.SessionClosed(
            agent_id=session.agent_id,
            session_id=session.session_id,
            conversation_id=session.conversation_id,
            channel=session.channel,
            reason="transferred",
        )
    )


# --- every batch ------------------------------------------------------------------------------


async def lock_agents(uow: Uow, payloads: list[c.Payload]) -> None:
    """First in every batch: lock the agents the batch is about, in sorted order (their sequence rows,
    which the sequencer takes again last). Handlers then lock each agent's rows in the batch's order,
    and two replicas' batches about the same agents would otherwise each hold one and wait for the
    other's: PostgreSQL kills one of them (a deadlock), and the batch is retried."""
    agents = sorted({agent for p in payloads if isinstance(agent := getattr(p, "agent_id", None), str)})
    if agents:
        await uow.store.bump_seqs(dict.fromkeys(agents, 0))


async def write_projections(uow: Uow) -> None:
    """Last in a batch of presence.v1 or conversations.v1: the presences and arrivals its handlers
    collected, one statement each (not one per event), in the batch's transaction."""
    if uow.batch.presences:
        await uow.store.upsert_presences(list(uow.batch.presences.values()))
    if uow.batch.conversations:
        await uow.store.upsert_conversations(list(uow.batch.conversations.values()))


# --- run ahead (`Consumer.ahead`): the handlers' first statements for a batch's records at once ---


def keys(payload: c.Payload) -> list[Hashable]:
    """What a record is about: its agents and conversations, and the conversation a conversation's
    session holds (a close names only the session)."""
    found = agents_and_conversations(payload)
    session_id = getattr(payload, "session_id", None)
    if isinstance(session_id, str) and (conversation := domain.conversation_of(session_id)) is not None:
        found.append(("conversation", conversation))
    return found


async def offered_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.WorkOffered]]) -> list[SessionProfile | None]:
    return await uow.store.receive_offers([(_offered(data), ev.time) for ev, data in items])


async def assigned_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.WorkAssigned]]) -> list[Assigned]:
    """The assignments, then the sessions they open, each kind in one round trip. A session opens at
    once when nobody's session held the conversation (no transfer to carry out first) and its title
    needs no visitor number (a statement of its own): the handler's path to `open_session` then has
    no statement, and it takes the answer (`open_session`)."""
    helds = await uow.store.assign_many([_assignment(data) for _, data in items])
    opening = [
        (
            ev,
            _conversation_session(
                data.agent_id, data.conversation_id, data.channel, domain.title_for(data.conversation, None)
            ),
        )
        for (ev, data), held in zip(items, helds, strict=True)
        if held.session is None and not domain.needs_visitor_number(data.conversation)
    ]
    if opening:
        reopened = await uow.store.open_sessions([opened for _, opened in opening])
        for (ev, _), answer in zip(opening, reopened, strict=True):
            uow.answers[(ev.id, "open_session")] = answer
    return helds


async def queued_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.WorkQueued]]) -> list[None]:
    await uow.store.upsert_waiting_works([_waiting(ev, data) for ev, data in items])
    return [None] * len(items)


def first_queued(data: c.WorkQueued) -> bool:
    """A re-announced place in line has no statement: its handler returns first."""
    return not data.update


async def released_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.WorkReleased]]) -> list[None]:
    await uow.store.release_assignments([(data.conversation_id, data.agent_id) for _, data in items])
    return [None] * len(items)


def released_only(data: c.WorkReleased) -> bool:
    """Released, not transferred away: the release is all its handler does (a transfer also closes the
    agent's session, in its turn)."""
    return data.reason != "transferred"


async def accept_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.AcceptOffer]]) -> list[Offer | None]:
    now = _now()
    return await uow.store.answer_offers([(data.offer_id, data.agent_id, "accepted", now) for _, data in items])


async def close_ahead(uow: Uow, items: list[tuple[c.CloudEvent, c.CloseSession]]) -> list[Closed | None]:
    """The closes that are one statement (`closes_at_once`); the others' handlers read first."""
    return await uow.store.close_and_unfocus_many([(d.agent_id, d.session_id, d.note) for _, d in items])


# --- routing.v1 --------------------------------------------------------------------------------


def _offered(data: c.WorkOffered) -> Offer:
    conversation = data.conversation
    title = domain.title_for(conversation, None) if not domain.needs_visitor_number(conversation) else "Visitor"
    return Offer(
        data.offer_id,
        data.agent_id,
        data.conversation_id,
        data.channel,
        data.expires_at,
        queue=data.queue,
        title=title,
        conversation=conversation,
    )


async def on_work_offered(uow: Uow, ev: c.CloudEvent, data: c.WorkOffered) -> None:
    offer = _offered(data)
    title = offer.title
    agent_profile = await uow.answered(ev, lambda: uow.store.receive_offer(offer, ev.time))
    if agent_profile is not None:  # a new offer (not a redelivered one)
        notify = agent_profile.offer_notifications
        uow.emit(
            c.OfferReceived(
                agent_id=data.agent_id,
                offer_id=data.offer_id,
                conversation_id=data.conversation_id,
                channel=data.channel,
                expires_at=data.expires_at,
                title=title,
                queue=data.queue,
                notification=notify.model_dump(),
                subject=domain.offer_subject(data.conversation),
            )
        )


async def on_work_offer_expired(uow: Uow, ev: c.CloudEvent, data: c.WorkOfferExpired) -> None:
    offer = await uow.store.withdraw_offer(data.offer_id)
    if offer is None:  # answered, assigned or withdrawn already
        return
    uow.emit(
        c.OfferWithdrawn(
            agent_id=offer.agent_id,
            offer_id=data.offer_id,
            conversation_id=data.conversation_id,
            channel=data.channel,
            expires_at=data.expires_at,
            reason=data.cause,
        )
    )


def _assignment(data: c.WorkAssigned) -> tuple[Assignment, str | None, int]:
    assignment = Assignment(data.conversation_id, data.agent_id, data.channel, data.conversation, queue=data.queue)
    return assignment, data.offer_id, domain.TRANSCRIPT_PAGE


async def on_work_assigned(uow: Uow, ev: c.CloudEvent, data: c.WorkAssigned) -> None:
    store = uow.store
    held = await uow.answered(ev, lambda: store.assign(*_assignment(data)))
    existing = held.session
    if existing is not None:
        if existing.agent_id == data.agent_id:
            return  # already open (a redelivered assignment): one session per conversation
        # transferred: the previous holder's session closes before the new one opens
        await _close_transferred(uow, existing)
    visitor = None
    if domain.needs_visitor_number(data.conversation):
        visitor = await store.next_visitor_number(data.agent_id)
    title = domain.title_for(data.conversation, visitor)
    session, anchor = _conversation_session(data.agent_id, data.conversation_id, data.channel, title)
    await _open_session(
        uow, session, anchor, record=data.conversation.get("record"), earlier=held.earlier, answered_by=ev
    )
    if held.said:  # what assist said before this agent held it: the pane shows it from the start
        change = await store.merge_open_pane(data.conversation_id, held.said)
        if change is not None:
            _pane_updated(uow, change, next(iter(held.said)))
    if held.signals:  # flagged while it waited: the new holder's pane shows it from the start
        flag = {"signals": held.signals, "message_id": None, "excerpt": None}
        await _flag_escalation(uow, data.conversation_id, flag)


async def on_work_released(uow: Uow, ev: c.CloudEvent, data: c.WorkReleased) -> None:
    await uow.answered(ev, lambda: uow.store.release_assignment(data.conversation_id, data.agent_id))
    if data.reason != "transferred":
        return
    # transferred away: the agent's session for it closes (its record stays in the closed list)
    await _close(uow, data.agent_id, domain.session_id_for(data.conversation_id), reason="transferred")


async def on_pick_refused(uow: Uow, ev: c.CloudEvent, data: c.WorkPickRefused) -> None:
    uow.emit(
        c.CommandRejected(
            agent_id=data.agent_id,
            command_id=data.command_id or ev.id,
            command_type="session.open",
            reason=f"cannot pick {data.conversation_id}: {data.reason}",
        )
    )


async def on_work_queued(uow: Uow, ev: c.CloudEvent, data: c.WorkQueued) -> None:
    """Waiting in a queue (Home's open work of my queues). A re-announced position changes nothing
    Home shows (moves between queues come as work.overflowed), so it costs no write."""
    if data.update:
        return
    await uow.answered(ev, lambda: uow.store.upsert_waiting_work(*_waiting(ev, data)))


def _waiting(ev: c.CloudEvent, data: c.WorkQueued) -> tuple[str, str, str, str | None, datetime]:
    return data.conversation_id, data.channel, data.queue, "waiting", ev.time


async def on_work_requeued(uow: Uow, ev: c.CloudEvent, data: c.WorkRequeued) -> None:
    await uow.store.upsert_waiting_work(data.conversation_id, data.channel, data.queue, "waiting", ev.time)


async def on_work_overflowed(uow: Uow, ev: c.CloudEvent, data: c.WorkOverflowed) -> None:
    if data.to_queue:  # no target queue: it was kept waiting where it was
        await uow.store.move_waiting_work(data.conversation_id, data.to_queue)


async def on_presence_changed(uow: Uow, ev: c.CloudEvent, data: c.PresenceChanged) -> None:
    # stored at the batch's end with the batch's other presences (`write_projections`)
    uow.batch.presences[data.agent_id] = Presence(
        data.agent_id,
        data.status,
        data.source,
        ev.time,
        base=data.base,
        closed_channels=list(data.closed_channels),
        colour=data.colour,
    )
    uow.emit(
        c.PresenceUpdated(
            agent_id=data.agent_id,
            status=data.status,
            base=data.base,
            previous=data.previous,
            source=data.source,
            reason=data.reason,
            closed_channels=data.closed_channels,
            colour=data.colour,
        )
    )


# --- conversations.v1 --------------------------------------------------------------------------


async def on_conversation_arrived(uow: Uow, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
    title = domain.arrival_title(
        data.customer.name if data.customer else None, data.record.title if data.record else None, data.subject
    )
    # stored at the batch's end with the batch's other arrivals (`write_projections`)
    uow.batch.conversations[data.conversation_id] = ConversationInfo(
        data.conversation_id, data.channel, ev.time, title=title, priority=data.priority
    )


async def on_conversation_ended(uow: Uow, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
    uow.batch.conversations.pop(data.conversation_id, None)  # arrived earlier in this batch: ended all the same
    await uow.store.forget_conversation(data.conversation_id)


# --- conversations.messages.v1 and assist.v1 ---------------------------------------------------


async def on_message_posted(uow: Uow, ev: c.CloudEvent, data: c.MessagePosted) -> None:
    """Every message joins its conversation's transcript (once); the agent holding the conversation
    receives it, in order, and its unread count rises unless it is the agent's own or in focus."""
    posted = await uow.store.post_message(
        Message(
            data.conversation_id,
            data.message_id,
            data.sender,
            data.text,
            ev.time,
            sender_id=data.sender_id,
            visibility=data.visibility,
            suggestion_id=data.suggestion_id,
            command_id=data.command_id,
        )
    )
    if posted is None:
        return  # posted again under another event id: delivered already
    message, session = posted.message, posted.session
    if session is None:
        return
    uow.emit(
        c.MessageReceived(
            agent_id=session.agent_id,
            session_id=session.session_id,
            conversation_id=data.conversation_id,
            message_id=message.message_id,
            sender=data.sender,
            sender_id=message.sender_id,
            visibility=data.visibility,
            text=message.text,
            time=message.time,
            suggestion_id=message.suggestion_id,
            command_id=message.command_id,
        )
    )
    if data.sender_id == session.agent_id:
        return
    if posted.focus == session.session_id:
        return  # the agent is looking at it
    unread = await uow.store.bump_unread(session.agent_id, session.session_id)
    uow.emit(
        c.SessionUnreadChanged(
            agent_id=session.agent_id,
            session_id=session.session_id,
            conversation_id=data.conversation_id,
            unread=unread,
            badge=domain.badge(unread),
        )
    )


async def on_assist(uow: Uow, ev: c.CloudEvent, data: Any) -> None:
    """Assist's outputs are remembered per conversation (assist speaks as soon as the customer does,
    often before anyone accepts), and placed in the pane of the agent holding it, if any."""
    kind = domain.PANE_KINDS[ev.type]
    content = {k: v for k, v in ev.data.items() if k != "conversation_id"}
    change = await uow.store.merge_open_pane(data.conversation_id, {kind: content}, remember=True)
    if change is None or kind not in change.tools:
        return
    _pane_updated(uow, change, kind)


def _pane_updated(uow: Uow, change: PaneChange, updated: str) -> None:
    session = change.session
    uow.emit(
        c.PaneUpdated(
            agent_id=session.agent_id,
            session_id=session.session_id,
            conversation_id=session.conversation_id,
            pane=domain.pane_view(session.pane, change.tools, change.focused_kind),
            updated=updated,
        )
    )


async def on_escalation_detected(uow: Uow, ev: c.CloudEvent, data: c.EscalationDetected) -> None:
    """The conversation's escalation flags (the supervisor overview); the holding agent's pane shows them."""
    signals = await uow.store.add_escalation(data.conversation_id, list(data.signals))
    await _flag_escalation(
        uow, data.conversation_id, {"signals": signals, "message_id": data.message_id, "excerpt": data.excerpt}
    )


async def _flag_escalation(uow: Uow, conversation_id: str, flag: dict[str, Any]) -> None:
    """The flag joins the pane of the session holding the conversation, if any."""
    change = await uow.store.merge_open_pane(conversation_id, {domain.ESCALATION: flag})
    if change is not None:
        _pane_updated(uow, change, domain.ESCALATION)


# --- sessions.commands.v1 ----------------------------------------------------------------------


async def _answer_offer(uow: Uow, ev: c.CloudEvent, data: c.AcceptOffer | c.RejectOffer, status: str) -> Offer:
    """The agent's own pending offer takes `status`, in one statement; otherwise the reason why not."""
    now = _now()
    answered = await uow.answered(ev, lambda: uow.store.answer_offer(data.offer_id, data.agent_id, status, now))
    if answered is not None:
        return answered
    offer = await uow.store.find_offer(data.offer_id)
    if offer is None or offer.agent_id != data.agent_id:
        raise reject(ev, data.agent_id, f"no offer {data.offer_id!r} for {data.agent_id}")
    if offer.status != "pending":
        raise reject(ev, data.agent_id, f"offer {data.offer_id!r} is {offer.status}, no longer open")
    raise reject(ev, data.agent_id, f"offer {data.offer_id!r} expired at {offer.expires_at.isoformat()}")


async def on_accept_offer(uow: Uow, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
    _authorise(ev, data)
    offer = await _answer_offer(uow, ev, data, "accepted")
    uow.emit(
        c.OfferAccepted(
            agent_id=data.agent_id,
            offer_id=data.offer_id,
            conversation_id=offer.conversation_id,
            channel=offer.channel,
            expires_at=offer.expires_at,
        )
    )


async def on_reject_offer(uow: Uow, ev: c.CloudEvent, data: c.RejectOffer) -> None:
    _authorise(ev, data)
    offer = await _answer_offer(uow, ev, data, "rejected")
    uow.emit(
        c.OfferRejected(
            agent_id=data.agent_id,
            offer_id=data.offer_id,
            conversation_id=offer.conversation_id,
            channel=offer.channel,
            expires_at=offer.expires_at,
            reason=data.reason,
        )
    )


async def on_open_session(uow: Uow, ev: c.CloudEvent, data: c.OpenSession) -> None:
    _authorise(ev, data)
    store = uow.store
    await store.ensure_agent(data.agent_id)
    limit = (await profile(store, data.agent_id)).max_sessions
    if await store.count_open_sessions(data.agent_id) >= limit:
        raise reject(ev, data.agent_id, f"session limit reached ({limit} open); close a session before opening another")
    if data.conversation_id:
        assignment = await store.find_assignment(data.conversation_id)
        if assignment is None or assignment.agent_id != data.agent_id or assignment.released:
            # Not this agent's work: pick it from the queue; routing assigns it if capacity allows
            # (the session then opens on work.assigned) or refuses (-> command.rejected).
            uow.emit(c.PickWork(agent_id=data.agent_id, conversation_id=data.conversation_id, command_id=ev.id))
            return
        session_id = domain.session_id_for(data.conversation_id)
        await _not_open(uow, ev, data.agent_id, session_id)
        title = domain.title_for(assignment.conversation, await store.next_visitor_number(data.agent_id))
        await _open_session(uow, *_conversation_session(data.agent_id, data.conversation_id, assignment.channel, title))
        return
    if data.record is None:
        raise reject(ev, data.agent_id, "session.open needs a conversation_id of your own or a record")
    record = data.record.model_dump(exclude_none=True)
    session_id = f"rec-{data.record.type}-{data.record.id}"
    await _not_open(uow, ev, data.agent_id, session_id)
    opened = _session_and_anchor(
        data.agent_id, session_id, "record", domain.record_title(record), None, None, data.record.type, record
    )
    await _open_session(uow, *opened, record=record)


async def _not_open(uow: Uow, ev: c.CloudEvent, agent_id: str, session_id: str) -> None:
    existing = await uow.store.find_session(agent_id, session_id)
    if existing is not None and existing.status == "open":
        raise reject(ev, agent_id, f"session {session_id!r} is already open; focus it instead")


async def on_close_session(uow: Uow, ev: c.CloudEvent, data: c.CloseSession) -> None:
    """A confirmed close without a disposition is one statement; the reasons for a refusal, and the
    disposition's check, are read only when needed."""
    _authorise(ev, data)
    store = uow.store
    if not closes_at_once(data):
        refusal = domain.close_refusal(
            await store.find_session(data.agent_id, data.session_id), data.session_id, data.confirmed
        )
        if refusal:
            raise reject(ev, data.agent_id, refusal)
        known = [d.code for d in await store.list_dispositions()] if data.disposition is not None else []
        if known and data.disposition not in known:
            raise reject(
                ev, data.agent_id, f"unknown disposition {data.disposition!r}; known dispositions: {', '.join(known)}"
            )
    closing = _close(uow, data.agent_id, data.session_id, disposition=data.disposition, note=data.note, answered_by=ev)
    if await closing is None:
        session = await store.find_session(data.agent_id, data.session_id)  # none open: say why
        refusal = domain.close_refusal(session, data.session_id, data.confirmed)
        raise reject(ev, data.agent_id, refusal or f"session {data.session_id!r} is not open")


async def _close(
    uow: Uow,
    agent_id: str,
    session_id: str,
    *,
    disposition: str | None = None,
    note: str | None = None,
    reason: str | None = None,
    answered_by: c.CloudEvent | None = None,
) -> Session | None:
    """Close the open session (routing releases the capacity on session.closed); Home takes the focus
    if it had it. None when it was not open. `answered_by`: the command whose close ran ahead."""

    def close() -> Awaitable[Closed | None]:
        return uow.store.close_and_unfocus(agent_id, session_id, disposition=disposition, note=note, reason=reason)

    closed = await (close() if answered_by is None else uow.answered(answered_by, close))
    if closed is None:
        return None
    session = closed.session
    uow.emit(
        c.SessionClosed(
            agent_id=session.agent_id,
            session_id=session.session_id,
            conversation_id=session.conversation_id,
            channel=session.channel,
            reason=session.close_reason,
            disposition=session.disposition,
            note=session.note,
        )
    )
    if closed.unfocused:
        uow.emit(c.SessionFocused(agent_id=agent_id, session_id=HOME))
    return session


def closes_at_once(data: c.CloseSession) -> bool:
    """A confirmed close of a session other than Home, without a disposition: one statement, which
    may run ahead (`close_ahead`). Any other close reads first why it could be refused."""
    return data.disposition is None and data.confirmed and data.session_id != HOME


async def on_focus_session(uow: Uow, ev: c.CloudEvent, data: c.FocusSession) -> None:
    _authorise(ev, data)
    await uow.store.ensure_agent(data.agent_id)
    if data.session_id == HOME:
        await uow.store.set_focus(data.agent_id, HOME)
        uow.emit(c.SessionFocused(agent_id=data.agent_id, session_id=HOME))
        return
    session = await _session(uow, ev, data.agent_id, data.session_id)
    await uow.store.set_focus(data.agent_id, data.session_id)
    if session.unread:
        await uow.store.clear_unread(data.agent_id, data.session_id)
        uow.emit(
            c.SessionUnreadChanged(
                agent_id=data.agent_id,
                session_id=data.session_id,
                conversation_id=session.conversation_id,
                unread=0,
                badge="",
            )
        )
    uow.emit(
        c.SessionFocused(agent_id=data.agent_id, session_id=data.session_id, conversation_id=session.conversation_id)
    )


async def on_open_tab(uow: Uow, ev: c.CloudEvent, data: c.OpenTab) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    limit = (await profile(uow.store, data.agent_id)).max_tabs
    if await uow.store.count_tabs(data.agent_id, data.session_id) >= limit:
        raise reject(
            ev, data.agent_id, f"tab limit reached ({limit} in session {data.session_id!r}); close a tab first"
        )
    tab_id = f"{data.kind}-{uuid.uuid4().hex[:8]}"
    await uow.store.insert_tab(data.agent_id, Tab(data.session_id, tab_id, data.kind, data.title, target=data.target))
    await uow.store.set_focused_tab(data.agent_id, data.session_id, tab_id)
    uow.emit(
        c.TabOpened(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=tab_id,
            kind=data.kind,
            title=data.title,
            conversation_id=session.conversation_id,
            target=data.target,
        )
    )
    uow.emit(
        c.TabFocused(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=tab_id,
            conversation_id=session.conversation_id,
        )
    )


async def _tab(uow: Uow, ev: c.CloudEvent, agent_id: str, session_id: str, tab_id: str) -> Tab:
    tab = await uow.store.find_tab(agent_id, session_id, tab_id)
    if tab is None:
        raise reject(ev, agent_id, f"no tab {tab_id!r} in session {session_id!r}")
    return tab


async def on_focus_tab(uow: Uow, ev: c.CloudEvent, data: c.FocusTab) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    await _tab(uow, ev, data.agent_id, data.session_id, data.tab_id)
    await uow.store.set_focused_tab(data.agent_id, data.session_id, data.tab_id)
    uow.emit(
        c.TabFocused(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=data.tab_id,
            conversation_id=session.conversation_id,
        )
    )


async def on_close_tab(uow: Uow, ev: c.CloudEvent, data: c.CloseTab) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    tab = await uow.store.find_tab(data.agent_id, data.session_id, data.tab_id)
    refusal = domain.tab_close_refusal(tab, data.tab_id)
    if refusal:
        raise reject(ev, data.agent_id, refusal)
    await uow.store.delete_tab(data.agent_id, data.session_id, data.tab_id)
    uow.emit(
        c.TabClosed(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=data.tab_id,
            conversation_id=session.conversation_id,
        )
    )
    if session.focused_tab == data.tab_id:
        await uow.store.set_focused_tab(data.agent_id, data.session_id, ANCHOR)
        uow.emit(
            c.TabFocused(
                agent_id=data.agent_id,
                session_id=data.session_id,
                tab_id=ANCHOR,
                conversation_id=session.conversation_id,
            )
        )


async def on_save_draft(uow: Uow, ev: c.CloudEvent, data: c.SaveDraft) -> None:
    """Optimistic concurrency: a save names the version it edited; a stale one is refused with
    the current version, so two devices never overwrite each other silently."""
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    await _tab(uow, ev, data.agent_id, data.session_id, data.tab_id)
    key = domain.draft_key(data.agent_id, data.session_id, data.tab_id, session.conversation_id)
    current = await uow.store.find_draft(key)
    version = current.version if current else 0
    if data.version != version:
        raise reject(
            ev,
            data.agent_id,
            f"stale draft: you edited version {data.version} but the current version is "
            f"{version}; reload it and apply your changes again",
            current_version=version,
            current_fields=current.fields if current else {},
        )
    await uow.store.upsert_draft(
        Draft(key, data.agent_id, data.session_id, data.tab_id, session.conversation_id, data.fields, version + 1)
    )
    uow.emit(
        c.DraftSaved(
            agent_id=data.agent_id,
            session_id=data.session_id,
            tab_id=data.tab_id,
            version=version + 1,
            conversation_id=session.conversation_id,
            fields=data.fields,
        )
    )


async def on_link_record(uow: Uow, ev: c.CloudEvent, data: c.LinkRecord) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    if data.session_id == HOME:
        raise reject(ev, data.agent_id, "records are linked to a conversation or record session, not to Home")
    record = data.record.model_dump(exclude_none=True)
    title = domain.record_title(record)
    await uow.store.retitle_session(data.agent_id, data.session_id, title, domain.icon(title), record)
    uow.emit(
        c.SessionRetitled(
            agent_id=data.agent_id,
            session_id=data.session_id,
            conversation_id=session.conversation_id,
            title=title,
            icon=domain.icon(title),
            record=record,
        )
    )


async def on_send_message(uow: Uow, ev: c.CloudEvent, data: c.SendMessage) -> None:
    _authorise(ev, data)
    session = await _session(uow, ev, data.agent_id, data.session_id)
    if not session.conversation_id:
        raise reject(ev, data.agent_id, f"session {data.session_id!r} has no conversation to send a message to")
    uow.emit(
        c.MessagePosted(
            conversation_id=session.conversation_id,
            sender="agent",
            sender_id=data.agent_id,
            visibility=data.visibility,
            text=data.text,
            suggestion_id=data.suggestion_id,
            command_id=ev.id,
        )
    )


async def _held(uow: Uow, ev: c.CloudEvent, agent_id: str, session_id: str) -> Session:
    session = await _session(uow, ev, agent_id, session_id)
    if not session.conversation_id:
        raise reject(ev, agent_id, f"session {session_id!r} holds no conversation to transfer")
    return session


async def on_transfer_session(uow: Uow, ev: c.CloudEvent, data: c.TransferSession) -> None:
    """The agent hands its conversation to a queue or an agent; routing carries it out (the session
    closes on work.released, reason transferred) or refuses it."""
    _authorise(ev, data)
    session = await _held(uow, ev, data.agent_id, data.session_id)
    if data.to_agent == data.agent_id:
        raise reject(ev, data.agent_id, "you hold this conversation already; transfer it to another agent or a queue")
    uow.emit(
        c.TransferWork(
            conversation_id=session.conversation_id,
            agent_id=data.agent_id,
            to_queue=data.to_queue,
            to_agent=data.to_agent,
            command_id=ev.id,
        )
    )


# --- supervisor.act ----------------------------------------------------------------------------

ParticipantMode = Literal["observe", "listen", "whisper", "barge", "left"]
PARTICIPANT_MODES: dict[str, ParticipantMode] = {
    "observe": "observe",
    "listen": "listen",
    "leave": "left",
    "barge": "barge",
}


async def on_supervisor_act(uow: Uow, ev: c.CloudEvent, data: c.SupervisorAct) -> None:
    """A supervisor's action on the agent (the key) or on a conversation the agent holds: recorded,
    told to the agent, then carried out. The gateway checked the supervisor's role."""
    _authorise(ev, data)
    store = uow.store
    await store.ensure_agent(data.agent_id)
    session: Session | None = None
    if data.conversation_id is not None:
        session = await store.find_open_session(data.conversation_id)
        if session is None or session.agent_id != data.agent_id:
            raise reject(
                ev,
                data.agent_id,
                f"supervisor.act {data.action}: conversation {data.conversation_id!r} is not held by {data.agent_id}",
            )
    if data.action == "force_transfer" and data.to_agent == data.agent_id:
        raise reject(ev, data.agent_id, f"force_transfer: {data.agent_id} holds the conversation already")
    detail = domain.supervisor_detail(
        data.supervisor_id,
        data.action,
        session.title if session else None,
        text=data.text,
        to_queue=data.to_queue,
        to_agent=data.to_agent,
        status=data.status,
        reason=data.reason,
    )
    action = SupervisorAction(
        data.supervisor_id,
        data.agent_id,
        data.action,
        ev.time,
        conversation_id=data.conversation_id,
        session_id=session.session_id if session else None,
        detail=detail,
    )
    await store.insert_supervisor_action(action)
    uow.emit(
        c.SupervisorActionRecorded(
            agent_id=data.agent_id,
            supervisor_id=data.supervisor_id,
            action=data.action,
            conversation_id=action.conversation_id,
            session_id=action.session_id,
            detail=detail,
            time=action.time,
        )
    )
    await _carry_out(uow, ev, data, session)


async def _carry_out(uow: Uow, ev: c.CloudEvent, data: c.SupervisorAct, session: Session | None) -> None:
    if data.action == "set_presence":
        uow.emit(c.SetPresence(agent_id=data.agent_id, status=data.status))
        return
    assert session is not None and session.conversation_id is not None  # the contract requires a conversation
    cid = session.conversation_id
    if data.action == "whisper":
        uow.emit(
            c.MessagePosted(
                conversation_id=cid,
                sender="supervisor",
                sender_id=data.supervisor_id,
                visibility="internal",
                text=data.text or "",
                command_id=ev.id,
            )
        )
    elif data.action in PARTICIPANT_MODES:
        uow.emit(
            c.ParticipantChanged(
                conversation_id=cid,
                participant_id=data.supervisor_id,
                role="supervisor",
                mode=PARTICIPANT_MODES[data.action],
                channel=session.channel,
            )
        )
        if data.action == "barge" and data.text:
            uow.emit(
                c.MessagePosted(
                    conversation_id=cid,
                    sender="supervisor",
                    sender_id=data.supervisor_id,
                    visibility="public",
                    text=data.text,
                    command_id=ev.id,
                )
            )
    elif data.action == "force_transfer":
        uow.emit(
            c.TransferWork(
                conversation_id=cid,
                agent_id=data.agent_id,
                to_queue=data.to_queue,
                to_agent=data.to_agent,
                command_id=ev.id,
            )
        )
    elif data.action == "force_close":
        await _close(uow, session.agent_id, session.session_id, reason="forced")


# --- read side and configuration ---------------------------------------------------------------


async def workspace(store: SessionsStore, agent_id: str, queues: list[str] | None = None) -> dict[str, Any]:
    """The whole workspace as of the store's snapshot, with the event sequence it reflects: sessions
    (each with its last 50 messages), offers, presence, Home's dashboard (open work of `queues`, of
    all queues when None), channels and dispositions. `statuses` is the gateway's to fill."""
    now = _now()
    sessions = await store.list_sessions(agent_id)
    offers = await store.list_pending_offers(agent_id)
    view = domain.workspace_view(
        agent_id,
        seq=await store.get_seq(agent_id),
        focus=await store.find_focus(agent_id),
        sessions=sessions,
        tabs=await store.list_tabs(agent_id),
        offers=offers,
        drafts=await store.list_drafts(agent_id),
        profile=(await profile(store, agent_id)).model_dump(mode="json"),
    )
    conversations = sorted({s.conversation_id for s in sessions if s.conversation_id})
    recent = await store.list_recent_messages(conversations, TRANSCRIPT_PAGE + 1)
    for v in view["sessions"]:
        v["transcript"], v["transcript_more"] = domain.transcript_page(
            recent.get(v.get("conversation_id") or "", []), TRANSCRIPT_PAGE
        )
    presence = await store.find_presence(agent_id)
    view.update(
        server_time=now.isoformat(),
        presence=_presence_view(presence) if presence else None,
        statuses=[],
        channels=domain.channels_seen(sessions, offers),
        dashboard=await _dashboard(store, agent_id, queues, sessions, now),
        dispositions=[{"code": d.code, "label": d.label} for d in await store.list_dispositions()],
    )
    return view


def _presence_view(presence: Presence) -> dict[str, Any]:
    return {
        "status": presence.status,
        "base": presence.base,
        "closed_channels": presence.closed_channels,
        "since": presence.since,
        "source": presence.source,
    }


async def _dashboard(
    store: SessionsStore, agent_id: str, queues: list[str] | None, sessions: list[Session], now: datetime
) -> dict[str, Any]:
    queues_of = {a.conversation_id: a.queue for a in await store.list_assignments(agent_id)}
    return domain.dashboard_view(sessions, queues_of, await store.list_waiting_work(queues), now)


async def dashboard(store: SessionsStore, agent_id: str, queues: list[str] | None) -> dict[str, Any]:
    """Home's dashboard: {my_work, queue_work (open work of `queues`; all queues when None), closed}."""
    return await _dashboard(store, agent_id, queues, await store.list_sessions(agent_id), _now())


async def transcript(
    store: SessionsStore, conversation_id: str, before_message_id: str | None = None, limit: int = TRANSCRIPT_PAGE
) -> dict[str, Any]:
    """A page of a conversation's messages, oldest first, older than `before_message_id` (the newest
    when None): {"conversation_id", "messages", "more"}. No access check: for supervisors."""
    limit = max(1, min(limit, 200))
    page = await store.list_messages_before(conversation_id, before_message_id, limit + 1)
    messages, more = domain.transcript_page(page, limit)
    return {"conversation_id": conversation_id, "messages": messages, "more": more}


async def history(
    store: SessionsStore, agent_id: str, conversation_id: str, before_message_id: str | None, limit: int = 50
) -> dict[str, Any]:
    """The agent's `conversation.history` read: like `transcript`, for a conversation the agent holds or
    held; raises PermissionError (its message says why) otherwise."""
    if not await store.held_conversation(agent_id, conversation_id):
        raise PermissionError(f"{agent_id} has not held conversation {conversation_id!r}; its history is not theirs")
    return await transcript(store, conversation_id, before_message_id, limit)


async def list_supervisor_actions(
    store: SessionsStore, conversation_id: str | None, limit: int = 100
) -> list[dict[str, Any]]:
    """Supervisors' recorded actions, newest first, of one conversation (or all):
    [{supervisor_id, agent_id, action, conversation_id, session_id, detail, time}]."""
    return [
        {
            "supervisor_id": a.supervisor_id,
            "agent_id": a.agent_id,
            "action": a.action,
            "conversation_id": a.conversation_id,
            "session_id": a.session_id,
            "detail": a.detail,
            "time": a.time,
        }
        for a in await store.list_supervisor_actions(conversation_id, max(1, min(limit, 1000)))
    ]


async def agents_sessions(store: SessionsStore) -> dict[str, list[dict[str, Any]]]:
    """Every agent's open conversation sessions, for the supervisor overview:
    {agent_id: [{session_id, conversation_id, channel, title, opened_at, unread}]}."""
    held: dict[str, list[dict[str, Any]]] = {}
    for s in await store.list_open_conversation_sessions():
        held.setdefault(s.agent_id, []).append(
            {
                "session_id": s.session_id,
                "conversation_id": s.conversation_id,
                "channel": s.channel,
                "title": s.title,
                "opened_at": s.opened_at,
                "unread": s.unread,
            }
        )
    return held


async def escalations(store: SessionsStore) -> dict[str, list[str]]:
    """The escalation signals seen per live conversation: {conversation_id: ["asks_for_manager", "upset"]}."""
    return await store.list_escalations()


async def apply_config(store: SessionsStore, cfg: SessionsConfig) -> None:
    """The sessions section of the YAML configuration: experience profiles, who has which, and the
    wrap-up dispositions."""
    profiles = {DEFAULT_PROFILE: SessionProfile(), **cfg.profiles}
    for name, settings in profiles.items():
        await store.upsert_profile(name, settings)
    for agent_id, spec in cfg.agents.items():
        await store.assign_profile(agent_id, spec.profile)
    await store.replace_dispositions([Disposition(d.code, d.label) for d in cfg.dispositions])


async def put_profile(store: SessionsStore, name: str, settings: SessionProfile, agents: list[str]) -> None:
    """A supervisor's edit: store one profile and give it to `agents`."""
    await store.upsert_profile(name, settings)
    for agent_id in agents:
        await store.assign_profile(agent_id, name)
