"""presence's use cases: manual choices, automatic rules, devices, per-channel presence."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

import structlog

from presence import domain
from shared import contracts as c
from shared.db import Conn, Queries
from shared.messaging import PoisonMessage, UnitOfWork
from shared.tx import PgTx

Q = Queries("presence")
Source = Literal["manual", "automatic", "device", "system"]
log = structlog.get_logger("switchboard.presence")


def _now() -> datetime:
    return datetime.now(UTC)


async def load_state(conn: Conn, agent_id: str) -> tuple[domain.AgentState, str]:
    await conn.execute(Q.ensure_agent, agent_id)
    r = await conn.fetchrow(Q.get_agent, agent_id)
    assert r is not None
    state = domain.AgentState(
        r["status"],
        r["base"],
        r["manual"],
        r["status_before"],
        r["manual_before"],
        r["disconnected_at"],
        r["idle"],
        tuple(r["closed_channels"]),
    )
    return state, r["profile"]


async def statuses(uow: UnitOfWork) -> dict[str, domain.Status]:
    if "statuses" not in uow.batch:
        known = domain.base_statuses()
        for r in await uow.conn.fetch(Q.list_statuses):
            known[r["name"]] = domain.Status(r["name"], r["base"], r["colour"], r["custom"])
        uow.batch["statuses"] = known
    result: dict[str, domain.Status] = uow.batch["statuses"]
    return result


async def rules(uow: UnitOfWork, profile: str) -> domain.Rules:
    key = ("rules", profile)
    if key not in uow.batch:
        cfg = await uow.conn.fetchval(Q.get_profile_rules, profile)
        uow.batch[key] = domain.Rules.from_config(cfg or {})
    result: domain.Rules = uow.batch[key]
    return result


async def load(uow: UnitOfWork, agent_id: str) -> domain.Load:
    r = await uow.conn.fetchrow(Q.get_load, agent_id)
    return domain.Load(r["total_used"], r["is_full"], r["exclusive_held"]) if r else domain.Load()


async def change(
    uow: UnitOfWork,
    agent_id: str,
    state: domain.AgentState,
    status: str,
    *,
    source: Source,
    reason: str,
    manual: bool,
    force_event: bool = False,
) -> domain.AgentState:
    """Set the status, record it in the history and emit presence.changed when it differs."""
    known = await statuses(uow)
    st = known.get(status, domain.Status(status, status))
    if state.status == status and state.manual == manual and not force_event:
        return state
    await uow.conn.execute(Q.set_status, agent_id, status, st.base, manual)
    if state.status != status or force_event:
        await uow.conn.execute(Q.insert_history, agent_id, status, state.status, source, reason)
        uow.emit(
            c.PresenceChanged(
                agent_id=agent_id,
                status=status,
                base=st.base,
                previous=state.status,
                source=source,
                reason=reason,
                closed_channels=list(state.closed_channels),
                colour=st.colour,
            )
        )
    return replace(state, status=status, base=st.base, manual=manual)


async def automatic(uow: UnitOfWork, agent_id: str, state: domain.AgentState, profile: str, reason: str) -> None:
    """Apply the profile's automatic rule for the agent's current load, if automation applies."""
    if not domain.automation_applies(state):
        return
    if state.status == "inactive":
        return  # set by the system after a missed offer: it stays until the agent comes back by hand
    status = domain.automatic_status(await load(uow, agent_id), await rules(uow, profile))
    await change(uow, agent_id, state, status, source="automatic", reason=reason, manual=False)


# --- presence.commands.v1 ----------------------------------------------------------------------


async def on_agent_signed_in(uow: UnitOfWork, ev: c.CloudEvent, data: c.AgentSignedIn) -> None:
    await uow.conn.execute(Q.device_seen, data.agent_id, data.device_id, None)
    await _device_back(uow, data.agent_id, f"signed in on {data.device_id}")


async def on_agent_heartbeat(uow: UnitOfWork, ev: c.CloudEvent, data: c.AgentHeartbeat) -> None:
    await uow.conn.execute(Q.device_seen, data.agent_id, data.device_id, data.idle_s)
    await _device_back(uow, data.agent_id, f"heartbeat from {data.device_id}")
    await _idle_check(uow, data.agent_id)


async def _device_back(uow: UnitOfWork, agent_id: str, reason: str) -> None:
    """A device is alive: an offline agent comes back, restoring its status after a short drop."""
    state, profile = await load_state(uow.conn, agent_id)
    if state.status != "offline" or (state.manual and state.disconnected_at is None):
        return  # online already, or offline by the agent's own choice
    restored = domain.restore_after_reconnect(state, _now())
    await uow.conn.execute(Q.remember_before, agent_id, None, False, None)
    if restored is not None:
        status, manual = restored
        await change(
            uow, agent_id, state, status, source="device", reason=f"{reason}: restored after reconnect", manual=manual
        )
        return
    status = domain.automatic_status(await load(uow, agent_id), await rules(uow, profile))
    await change(uow, agent_id, state, status, source="device", reason=reason, manual=False)


async def on_agent_signed_out(uow: UnitOfWork, ev: c.CloudEvent, data: c.AgentSignedOut) -> None:
    await uow.conn.execute(Q.device_signed_out, data.agent_id, data.device_id)
    if not await uow.conn.fetch(Q.live_devices, data.agent_id):
        state, _ = await load_state(uow.conn, data.agent_id)
        await uow.conn.execute(Q.remember_before, data.agent_id, None, False, None)
        await change(
            uow, data.agent_id, state, "offline", source="device", reason="signed out on every device", manual=False
        )


async def on_presence_set(uow: UnitOfWork, ev: c.CloudEvent, data: c.SetPresence) -> None:
    state, profile = await load_state(uow.conn, data.agent_id)
    if data.channels:
        closed = set(state.closed_channels)
        for channel, how in data.channels.items():
            (closed.add if how == "closed" else closed.discard)(channel)
        state = replace(state, closed_channels=tuple(sorted(closed)))
        await uow.conn.execute(Q.set_closed_channels, data.agent_id, list(state.closed_channels))
    if data.status is None:
        # only channels changed: the overall status stays; routing learns the channels from the event
        await change(
            uow,
            data.agent_id,
            state,
            state.status,
            source="manual",
            manual=state.manual,
            reason=f"channels: {', '.join(f'{k} {v}' for k, v in sorted(data.channels.items()))}",
            force_event=True,
        )
        return
    resolved = domain.resolve_manual(data.status, await statuses(uow))
    if isinstance(resolved, str):
        raise PoisonMessage(f"presence.set for {data.agent_id}: {resolved}")
    status, manual = resolved
    await uow.conn.execute(Q.set_idle, data.agent_id, False)
    await uow.conn.execute(Q.remember_before, data.agent_id, None, False, None)
    state = replace(state, idle=False, status_before=None, disconnected_at=None)
    if manual:
        await change(
            uow,
            data.agent_id,
            state,
            status.name,
            source="manual",
            manual=True,
            reason=f"chosen by the agent: {status.name}",
            force_event=bool(data.channels),
        )
        return
    # Back to an automatic status: automation resumes from the current load.
    auto = domain.automatic_status(await load(uow, data.agent_id), await rules(uow, profile))
    await change(
        uow,
        data.agent_id,
        state,
        auto,
        source="manual",
        manual=False,
        reason=f"chosen by the agent: {status.name}; automatic rules resume",
        force_event=bool(data.channels),
    )


# --- routing.v1 --------------------------------------------------------------------------------


async def on_capacity_changed(uow: UnitOfWork, ev: c.CloudEvent, data: c.CapacityChanged) -> None:
    await uow.conn.execute(Q.upsert_load, data.agent_id, data.total_used, data.full, data.exclusive_held)
    state, profile = await load_state(uow.conn, data.agent_id)
    await automatic(
        uow, data.agent_id, state, profile, f"capacity: {data.total_used} in use{', full' if data.full else ''}"
    )


async def on_offer_expired(uow: UnitOfWork, ev: c.CloudEvent, data: c.WorkOfferExpired) -> None:
    if data.cause == "withdrawn":
        return
    state, profile = await load_state(uow.conn, data.agent_id)
    if not domain.automation_applies(state):
        return
    r = await rules(uow, profile)
    target = r.missed_offer if data.cause == "expired" else r.rejected_offer
    if target is None:
        return
    source: Source = "system" if target == "inactive" else "automatic"
    await change(
        uow,
        data.agent_id,
        state,
        target,
        source=source,
        manual=False,
        reason=f"{'missed' if data.cause == 'expired' else 'rejected'} offer {data.offer_id}",
    )


# --- devices and idle (timers) -----------------------------------------------------------------


async def _idle_check(uow: UnitOfWork, agent_id: str) -> None:
    state, profile = await load_state(uow.conn, agent_id)
    r = await rules(uow, profile)
    if r.idle_after_s is None or state.status == "offline":
        return
    devices = await uow.conn.fetch(Q.live_devices, agent_id)
    idle = domain.all_idle([d["idle_s"] for d in devices], r.idle_after_s)
    if idle and not state.idle and not state.manual:
        await uow.conn.execute(Q.set_idle, agent_id, True)
        await uow.conn.execute(Q.remember_before, agent_id, state.status, state.manual, None)
        await change(
            uow,
            agent_id,
            replace(state, idle=True),
            "away",
            source="automatic",
            manual=False,
            reason=f"no input on any device for {r.idle_after_s:.0f}s",
        )
    elif not idle and state.idle:
        await uow.conn.execute(Q.set_idle, agent_id, False)
        back = state.status_before or domain.automatic_status(await load(uow, agent_id), r)
        await uow.conn.execute(Q.remember_before, agent_id, None, False, None)
        await change(
            uow,
            agent_id,
            replace(state, idle=False),
            back,
            source="automatic",
            manual=state.manual_before,
            reason="input again",
        )


async def sweep_devices(uow: UnitOfWork, timeout_s: float, grace_from: datetime) -> int:
    """Devices silent past the timeout are lost; an agent with no live device goes offline,
    remembering its status so a return within the restore window brings it back."""
    silent = await uow.conn.fetch(Q.list_silent_devices, timeout_s, grace_from)
    agents = sorted({r["agent_id"] for r in silent})
    for r in silent:
        await uow.conn.execute(Q.mark_device_lost, r["agent_id"], r["device_id"])
    for agent_id in agents:
        if await uow.conn.fetch(Q.live_devices, agent_id):
            continue  # another device still beats: not offline
        state, _ = await load_state(uow.conn, agent_id)
        if state.status == "offline":
            continue
        before = state.status_before if state.idle and state.status_before else state.status
        manual_before = state.manual_before if state.idle else state.manual
        await uow.conn.execute(Q.remember_before, agent_id, before, manual_before, _now())
        await uow.conn.execute(Q.set_idle, agent_id, False)
        await change(
            uow,
            agent_id,
            state,
            "offline",
            source="device",
            manual=False,
            reason=f"no heartbeat from any device for {timeout_s:.0f}s",
        )
    return len(agents)


async def run_device_timer(runtime: Any, timeout_s: float, interval_s: float) -> None:
    """The disconnect detector. A restart grants every device a full timeout from the start, so
    heartbeats still queued in Kafka while presence was down never turn anyone offline."""

    grace_from = _now()
    while True:
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                uow = runtime.unit_of_work(PgTx(conn))
                n = await sweep_devices(uow, timeout_s, grace_from)
                await uow.flush()
            if n:
                log.info("agents_disconnected", count=n)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("device_timer_error", error=repr(exc))
        await asyncio.sleep(interval_s)


async def apply_config(conn: Conn, cfg: dict[str, Any]) -> None:
    """The presence section of the YAML configuration: custom statuses, profiles, agents, teams."""
    for st in cfg.get("statuses") or []:
        base = st.get("base")
        if base not in domain.SETTABLE_BASES:
            raise ValueError(
                f"presence status {st.get('name')!r}: base must be one of {', '.join(domain.SETTABLE_BASES)}"
            )
        await conn.execute(Q.upsert_status, st["name"], base, st.get("colour"), True)
    for name, rule_cfg in (cfg.get("profiles") or {}).items():
        domain.Rules.from_config(rule_cfg or {})  # validate before storing
        await conn.execute(Q.upsert_profile, name, rule_cfg or {})
    teams = {agent: team for team, members in (cfg.get("teams") or {}).items() for agent in members}
    agents = cfg.get("agents") or {}
    for agent_id in sorted(set(agents) | set(teams)):
        profile = (agents.get(agent_id) or {}).get("profile", "default")
        await conn.execute(Q.assign_agent, agent_id, profile, teams.get(agent_id))


def as_source(value: str) -> Source:
    return cast(Source, value)
