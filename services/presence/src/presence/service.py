"""presence's use cases."""

from __future__ import annotations

from typing import Any, Literal, cast

from presence import domain
from shared import contracts as c
from shared.messaging import PoisonMessage, UnitOfWork

Source = Literal["manual", "automatic", "device", "system"]

_GET = "SELECT status, base, manual FROM agents WHERE agent_id = $1 FOR UPDATE"


async def _agent(uow: UnitOfWork, agent_id: str) -> Any:
    await uow.conn.execute("INSERT INTO agents (agent_id) VALUES ($1) ON CONFLICT DO NOTHING", agent_id)
    return await uow.conn.fetchrow(_GET, agent_id)


async def change(uow: UnitOfWork, agent_id: str, status: str, *, source: str, reason: str, manual: bool) -> bool:
    row = await _agent(uow, agent_id)
    if row["status"] == status and row["manual"] == manual:
        return False
    await uow.conn.execute(
        "UPDATE agents SET status = $2, base = $2, manual = $3, updated_at = now() WHERE agent_id = $1",
        agent_id,
        status,
        manual,
    )
    await uow.conn.execute(
        "INSERT INTO history (agent_id, status, previous, source, reason) VALUES ($1,$2,$3,$4,$5)",
        agent_id,
        status,
        row["status"],
        source,
        reason,
    )
    if row["status"] != status:
        uow.emit(
            c.PresenceChanged(
                agent_id=agent_id,
                status=status,
                base=status,
                previous=row["status"],
                source=cast(Source, source),
                reason=reason,
            )
        )
    return True


async def _load(uow: UnitOfWork, agent_id: str) -> domain.Load:
    r = await uow.conn.fetchrow(
        "SELECT total_used, is_full, exclusive_held FROM capacity WHERE agent_id = $1", agent_id
    )
    return domain.Load(r["total_used"], r["is_full"], r["exclusive_held"]) if r else domain.Load()


async def on_agent_signed_in(uow: UnitOfWork, ev: c.CloudEvent, data: c.AgentSignedIn) -> None:
    await uow.conn.execute(
        "INSERT INTO devices (agent_id, device_id, signed_in, last_seen) VALUES ($1, $2, true, now()) "
        "ON CONFLICT (agent_id, device_id) DO UPDATE SET signed_in = true, last_seen = now()",
        data.agent_id,
        data.device_id,
    )
    row = await _agent(uow, data.agent_id)
    if row["status"] == "offline":
        status = domain.automatic_status(await _load(uow, data.agent_id))
        await change(uow, data.agent_id, status, source="device", reason=f"signed in on {data.device_id}", manual=False)


async def on_agent_signed_out(uow: UnitOfWork, ev: c.CloudEvent, data: c.AgentSignedOut) -> None:
    await uow.conn.execute(
        "UPDATE devices SET signed_in = false WHERE agent_id = $1 AND device_id = $2", data.agent_id, data.device_id
    )
    still = await uow.conn.fetchval("SELECT count(*) FROM devices WHERE agent_id = $1 AND signed_in", data.agent_id)
    if not still:
        await change(uow, data.agent_id, "offline", source="device", reason="signed out on every device", manual=False)


async def on_agent_heartbeat(uow: UnitOfWork, ev: c.CloudEvent, data: c.AgentHeartbeat) -> None:
    await uow.conn.execute(
        "INSERT INTO devices (agent_id, device_id, last_seen) VALUES ($1, $2, now()) "
        "ON CONFLICT (agent_id, device_id) DO UPDATE SET last_seen = now()",
        data.agent_id,
        data.device_id,
    )


async def on_presence_set(uow: UnitOfWork, ev: c.CloudEvent, data: c.SetPresence) -> None:
    refusal = domain.set_refusal(data.status)
    if refusal:
        raise PoisonMessage(f"presence.set for {data.agent_id}: {refusal}")
    manual = data.status not in ("available",)
    status = data.status
    if not manual:  # back to an automatic status: automation resumes from the current load
        status = domain.automatic_status(await _load(uow, data.agent_id))
    await change(
        uow, data.agent_id, status, source="manual", reason=f"chosen by the agent: {data.status}", manual=manual
    )


async def on_capacity_changed(uow: UnitOfWork, ev: c.CloudEvent, data: c.CapacityChanged) -> None:
    await uow.conn.execute(
        "INSERT INTO capacity (agent_id, total_used, is_full, exclusive_held) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (agent_id) DO UPDATE SET total_used = $2, is_full = $3, exclusive_held = $4",
        data.agent_id,
        data.total_used,
        data.full,
        data.exclusive_held,
    )
    row = await _agent(uow, data.agent_id)
    if row["status"] == "offline" or not domain.automation_applies(row["status"], row["manual"]):
        return
    load = domain.Load(data.total_used, data.full, data.exclusive_held)
    await change(
        uow,
        data.agent_id,
        domain.automatic_status(load),
        source="automatic",
        reason=f"capacity: {data.total_used} in use{', full' if data.full else ''}",
        manual=False,
    )


async def on_offer_expired(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkOfferExpired) -> None:
    if data.cause != "expired":
        return
    row = await _agent(uow, data.agent_id)
    if domain.automation_applies(row["status"], row["manual"]) and row["status"] != "offline":
        await change(
            uow, data.agent_id, "inactive", source="system", reason=f"missed offer {data.offer_id}", manual=False
        )
