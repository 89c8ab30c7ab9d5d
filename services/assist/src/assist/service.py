"""assist's use cases: follow conversations, and emit a summary per conversation per batch."""

from __future__ import annotations

from assist import domain
from shared import contracts as c
from shared.messaging import UnitOfWork

TOUCHED = "touched:"


async def on_conversation_arrived(uow: UnitOfWork, ev: c.CloudEvent, data: c.ConversationArrived) -> None:
    await uow.conn.execute(
        "INSERT INTO conversations (conversation_id, channel, subject, customer_name) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (conversation_id) DO NOTHING",
        data.conversation_id,
        data.channel,
        data.subject,
        data.customer.name if data.customer else None,
    )


async def on_message_posted(uow: UnitOfWork, ev: c.CloudEvent, data: c.MessagePosted) -> None:
    if data.visibility != "public" or not data.text.strip():
        return
    await uow.conn.execute(
        "INSERT INTO messages (conversation_id, message_id, sender, visibility, text, posted_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        data.conversation_id,
        data.message_id,
        data.sender,
        data.visibility,
        data.text,
        ev.time,
    )
    uow.flags.add(TOUCHED + data.conversation_id)


async def summarise_touched(uow: UnitOfWork) -> None:
    """Debounce: a burst of messages in one batch gives one summary per conversation."""
    for flag in sorted(f for f in uow.flags if f.startswith(TOUCHED)):
        cid = flag[len(TOUCHED) :]
        rows = await uow.conn.fetch(
            "SELECT sender, text FROM messages WHERE conversation_id = $1 ORDER BY posted_at, message_id", cid
        )
        customer = [r["text"] for r in rows if r["sender"] == "customer"] or [r["text"] for r in rows]
        summary = domain.summarise(customer)
        ents = domain.entities([r["text"] for r in rows])
        await uow.conn.execute(
            "INSERT INTO summaries (conversation_id, summary, entities, provider, message_count) "
            "VALUES ($1, $2, $3, 'embedded', $4) ON CONFLICT (conversation_id) DO UPDATE SET summary = $2, "
            "entities = $3, provider = 'embedded', message_count = $4, updated_at = now()",
            cid,
            summary,
            ents,
            len(rows),
        )
        uow.emit(
            c.SummaryReady(
                conversation_id=cid, summary=summary, entities=ents, provider="embedded", message_count=len(rows)
            )
        )
