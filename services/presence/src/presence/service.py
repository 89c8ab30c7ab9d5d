"""presence's use cases: manual choices, automatic rules, devices, per-channel presence."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import structlog

from presence import domain
from presence.config import PresenceConfig
from presence.store import PresenceStore
from shared import contracts as c
from shared.messaging import PoisonMessage, UnitOfWork
from shared.runtime import Runtime

Source = Literal["manual", "automatic", "device", "system"]
log = structlog.get_logger("switchboard.presence")


@dataclass
class PresenceBatch:
    """What one batch reads once (the statuses, and the automatic rules of each profile) and the
    routing events it handles together at its end."""

    statuses: dict[str, domain.Status] | None = None
    rules: dict[str, domain.Rules] = field(default_factory=dict)
    routed: list[c.CapacityChanged | c.WorkOfferExpired] = field(default_factory=list)


Uow = UnitOfWork[PresenceStore, PresenceBatch]


def _now() -> datetime:
    return datetime.now(UTC)


async def statuses(uow: Uow) -> dict[str, domain.Status]:
    if uow.batch.statuses is None:
        known = domain.base_statuses()
        for status in await uow.store.list_statuses():
            known[status.name] = status
        uow.batch.statuses = known
    return uow.batch.statuses


async def rules(uow: Uow, profile: str) -> domain.Rules:
    if profile not in uow.batch.rules:
        uow.batch.rules[profile] = await uow.store.find_rules(profile) or domain.Rules()
    return uow.batch.rules[profile]


async def load(uow: Uow, agent_id: str) -> domain.Load:
    return await uow.store.find_load(agent_id) or domain.Load()


async def change(
    uow: Uow,
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
    if state.status == status and state.manual == manual and not force_event:
        return state
    if state.status != status or force_event:
        st = await uow.store.set_status(agent_id, status, manual, previous=state.status, source=source, reason=reason)
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
    else:
        st = await uow.store.set_status(agent_id, status, manual)
    return replace(state, status=status, base=st.base, manual=manual)


# --- presence.commands.v1 ----------------------------------------------------------------------


async def on_agent_signed_in(uow: Uow, ev: c.CloudEvent, data: c.AgentSignedIn) -> None:
    await uow.store.device_seen(data.agent_id, data.device_id, None, _now())
    await _device_back(uow, data.agent_id, f"signed in on {data.device_id}")


async def on_agent_heartbeat(uow: Uow, ev: c.CloudEvent, data: c.AgentHeartbeat) -> None:
    await uow.store.device_seen(data.agent_id, data.device_id, data.idle_s, _now())
    state = await _device_back(uow, data.agent_id, f"heartbeat from {data.device_id}")
    await _idle_check(uow, data.agent_id, state)


async def _device_back(uow: Uow, agent_id: str, reason: str) -> domain.AgentState:
    """A device is alive: an offline agent comes back, restoring its status after a short drop.
    Returns the agent's state after it (locked)."""
    state = await uow.store.lock_agent(agent_id)
    if state.status != "offline" or (state.manual and state.disconnected_at is None):
        return state  # online already, or offline by the agent's own choice
    restored = domain.restore_after_reconnect(state, _now())
    await uow.store.remember_before(agent_id, None, False, None)
    forgotten = replace(state, status_before=None, manual_before=False, disconnected_at=None)
    if restored is not None:
        status, manual = restored
        return await change(
            uow,
            agent_id,
            forgotten,
            status,
            source="device",
            reason=f"{reason}: restored after reconnect",
            manual=manual,
        )
    status = domain.automatic_status(await load(uow, agent_id), await rules(uow, state.profile))
    return await change(uow, agent_id, forgotten, status, source="device", reason=reason, manual=False)


async def on_agent_signed_out(uow: Uow, ev: c.CloudEvent, data: c.AgentSignedOut) -> None:
    await uow.store.sign_out_device(data.agent_id, data.device_id)
    if not await uow.store.list_live_devices(data.agent_id):
        state = await uow.store.lock_agent(data.agent_id)
        await uow.store.remember_before(data.agent_id, None, False, None)
        await change(
            uow, data.agent_id, state, "offline", source="device", reason="signed out on every device", manual=False
        )


async def on_presence_set(uow: Uow, ev: c.CloudEvent, data: c.SetPresence) -> None:
    state = await uow.store.lock_agent(data.agent_id)
    if data.channels:
        closed = set(state.closed_channels)
        for channel, how in data.channels.items():
            (closed.add if how == "closed" else closed.discard)(channel)
        state = replace(state, closed_channels=tuple(sorted(closed)))
        await uow.store.set_closed_channels(data.agent_id, state.closed_channels)
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
    await uow.store.set_idle(data.agent_id, False)
    await uow.store.remember_before(data.agent_id, None, False, None)
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
    auto = domain.automatic_status(await load(uow, data.agent_id), await rules(uow, state.profile))
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


async def on_capacity_changed(uow: Uow, ev: c.CloudEvent, data: c.CapacityChanged) -> None:
    """Handled with the batch's other routing events (`after_routing`)."""
    uow.batch.routed.append(data)


async def on_offer_expired(uow: Uow, ev: c.CloudEvent, data: c.WorkOfferExpired) -> None:
    """Handled with the batch's other routing events (`after_routing`); a withdrawn offer changes nothing."""
    if data.cause != "withdrawn":
        uow.batch.routed.append(data)


async def after_routing(uow: Uow) -> None:
    """The batch's routing events, in order, with two statements for all of them: the loads kept and
    the agents locked at once, then every status change. Automatic rules apply to each event as it
    comes, on the state the events before it left."""
    routed, uow.batch.routed = uow.batch.routed, []
    if not routed:
        return
    loads = {d.agent_id: _load(d) for d in routed if isinstance(d, c.CapacityChanged)}
    locked = await uow.store.lock_agents([d.agent_id for d in routed], loads)
    states = {agent_id: state for agent_id, (state, _) in locked.items()}
    changes: list[domain.StatusChange] = []
    closed: list[tuple[str, ...]] = []
    for d in routed:
        state = states[d.agent_id]
        profile_rules = locked[d.agent_id][1] or domain.Rules()
        if isinstance(d, c.CapacityChanged):
            reason = f"capacity: {d.total_used} in use{', full' if d.full else ''}"
            target = domain.after_load(d.agent_id, state, _load(d), profile_rules, reason)
        else:
            target = domain.after_offer(d.agent_id, state, profile_rules, d.cause, d.offer_id)
        if target is None or target.status == state.status:
            continue  # automation applies only when not chosen by hand, so `manual` is false already
        changes.append(replace(target, previous=state.status))
        closed.append(state.closed_channels)
        states[d.agent_id] = replace(state, status=target.status)
    if not changes:
        return
    for change, st, channels in zip(changes, await uow.store.set_statuses(changes), closed, strict=True):
        uow.emit(
            c.PresenceChanged(
                agent_id=change.agent_id,
                status=change.status,
                base=st.base,
                previous=change.previous,
                source=change.source or "automatic",
                reason=change.reason,
                closed_channels=list(channels),
                colour=st.colour,
            )
        )


def _load(data: c.CapacityChanged) -> domain.Load:
    return domain.Load(data.total_used, data.full, data.exclusive_held)


# --- devices and idle (timers) -----------------------------------------------------------------


async def _idle_check(uow: Uow, agent_id: str, state: domain.AgentState) -> None:
    r = await rules(uow, state.profile)
    if r.idle_after_s is None or state.status == "offline":
        return
    devices = await uow.store.list_live_devices(agent_id)
    idle = domain.all_idle([d.idle_s for d in devices], r.idle_after_s)
    if idle and not state.idle and not state.manual:
        await uow.store.set_idle(agent_id, True)
        await uow.store.remember_before(agent_id, state.status, state.manual, None)
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
        await uow.store.set_idle(agent_id, False)
        back = state.status_before or domain.automatic_status(await load(uow, agent_id), r)
        await uow.store.remember_before(agent_id, None, False, None)
        await change(
            uow,
            agent_id,
            replace(state, idle=False),
            back,
            source="automatic",
            manual=state.manual_before,
            reason="input again",
        )


async def sweep_devices(uow: Uow, timeout_s: float, grace_from: datetime, now: datetime) -> int:
    """Devices silent past the timeout are lost; an agent with no live device goes offline,
    remembering its status so a return within the restore window brings it back."""
    silent = await uow.store.list_silent_devices(timeout_s, grace_from, now)
    agents = sorted({d.agent_id for d in silent})
    for d in silent:
        await uow.store.mark_device_lost(d.agent_id, d.device_id)
    for agent_id in agents:
        if await uow.store.list_live_devices(agent_id):
            continue  # another device still beats: not offline
        state = await uow.store.lock_agent(agent_id)
        if state.status == "offline":
            continue
        before = state.status_before if state.idle and state.status_before else state.status
        manual_before = state.manual_before if state.idle else state.manual
        await uow.store.remember_before(agent_id, before, manual_before, now)
        await uow.store.set_idle(agent_id, False)
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


class DisconnectSweep:
    """The disconnect detector, one step per run (`runtime.periodic` repeats it). A (re)start
    grants every device a full timeout from then, so heartbeats still queued in Kafka while
    presence was down never turn anyone offline."""

    def __init__(self, runtime: Runtime[PresenceStore, PresenceBatch], timeout_s: float) -> None:
        self.runtime = runtime
        self.timeout_s = timeout_s
        self.grace_from = _now()

    def restart(self) -> None:
        self.grace_from = _now()

    async def step(self, now: datetime | None = None) -> int:
        """One sweep at `now` (the clock by default); returns how many agents had silent devices."""
        async with self.runtime.transaction() as uow:
            count = await sweep_devices(uow, self.timeout_s, self.grace_from, now or _now())
        if count:
            log.info("agents_disconnected", count=count)
        return count


async def apply_config(store: PresenceStore, cfg: PresenceConfig) -> None:
    """The presence section of the YAML configuration: custom statuses, profiles, agents, teams."""
    for st in cfg.statuses:
        await store.upsert_status(domain.Status(st.name, st.base, st.colour, custom=True))
    for name, spec in cfg.profiles.items():
        await store.upsert_profile(name, spec.rules())
    teams = cfg.team_of()
    for agent_id in sorted(set(cfg.agents) | set(teams)):
        profile = cfg.agents[agent_id].profile if agent_id in cfg.agents else "default"
        await store.assign_agent(agent_id, profile, teams.get(agent_id))
