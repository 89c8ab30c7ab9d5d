"""routing's declarative configuration: the `routing:` section of the YAML file.

Validated as a whole (errors name the line and the field), applied atomically in one transaction,
and diffed against what is applied for a dry run. Changes take effect without a restart: routing
reads its configuration at the start of every transaction.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from routing import domain
from routing.store import AgentProfile, Configuration, RoutingStore
from shared import config as shared_config
from shared.config import ConfigError as ConfigError
from shared.config import Strict

Method = Literal["longest_idle", "round_robin", "least_active", "highest_capacity", "priority_fifo"]
Presence = Literal["available", "busy", "busy_dnd", "away", "inactive"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


class ChannelSpec(Strict):
    exclusive: bool = False


class OperatingHours(Strict):
    timezone: str = "UTC"
    # day -> list of "HH:MM-HH:MM"; a day not listed is closed
    days: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("days")
    @classmethod
    def _days(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in v.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
            for span in spans:
                if not _HOURS.match(span):
                    raise ValueError(f"{day}: {span!r} is not HH:MM-HH:MM")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class Overflow(Strict):
    """When to move arrivals elsewhere, and where: `to_queue`, or `keep` (mark and keep waiting)."""

    max_waiting: int | None = Field(default=None, ge=0)
    max_estimated_wait_s: float | None = Field(default=None, ge=0)
    max_failed_offers: int | None = Field(default=None, ge=1)
    outside_hours: bool = True
    to_queue: str | None = None
    action: Literal["move", "keep"] = "move"


class PriorityRule(Strict):
    """Custom prioritisation: a boost when the conditions hold (then FIFO)."""

    when: dict[str, Any] = Field(default_factory=dict)
    boost: int


class QueueSpec(Strict):
    name: str = Field(min_length=1, max_length=100)
    channels: list[str] = Field(min_length=1)
    assignment: Method = "longest_idle"
    allowed_presences: list[Presence] = Field(default_factory=lambda: list[Presence](["available", "busy"]))
    priority: int = 0
    offer_timeout_s: int = Field(default=domain.DEFAULT_OFFER_TIMEOUT_S, gt=0, le=3600)
    skill_matching: Literal["exact", "closest"] = "exact"
    closest_after_s: int = Field(default=60, ge=0)
    operating_hours: OperatingHours | None = None
    overflow: Overflow | None = None
    prioritisation: list[PriorityRule] = Field(default_factory=list)
    preferred_wait_s: int = Field(default=30, ge=0, description="how long a preferred agent is waited for")
    service_level_s: int = Field(default=20, ge=1, description="answered within this many seconds: in service level")


class RuleSpec(Strict):
    """Ordered route-to-queue rule: every condition given must hold."""

    name: str
    queue: str
    channel: list[str] | str | None = None
    language: list[str] | str | None = None
    min_priority: int | None = None
    authenticated: bool | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    required_skills: list[str] = Field(default_factory=list)


class ChannelUnits(Strict):
    units: int = Field(ge=0)
    exclusive: bool = False


class AgentSpec(Strict):
    id: str = Field(min_length=1)
    capacity_profile: str | list[str]
    capacity_override: dict[str, int] = Field(default_factory=dict)
    queues: list[str] | Literal["*"] = Field(default_factory=list)
    skills: dict[str, int] = Field(default_factory=dict)
    auto_accept: list[str] = Field(default_factory=list)


class RoutingConfig(Strict):
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    skills: list[str] = Field(default_factory=list)
    capacity_profiles: dict[str, dict[str, ChannelUnits | int]] = Field(default_factory=dict)
    queues: list[QueueSpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)
    default_queues: dict[str, str] = Field(default_factory=dict)
    agents: list[AgentSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> RoutingConfig:
        errors: list[str] = []
        queue_names = [q.name for q in self.queues]
        if len(set(queue_names)) != len(queue_names):
            errors.append("queues: names must be unique")
        known_queues = set(queue_names)
        for i, q in enumerate(self.queues):
            for ch in q.channels:
                if ch not in self.channels:
                    errors.append(f"queues.{i}.channels: unknown channel {ch!r}")
            if q.overflow and q.overflow.to_queue and q.overflow.to_queue not in known_queues:
                errors.append(f"queues.{i}.overflow.to_queue: unknown queue {q.overflow.to_queue!r}")
        for i, r in enumerate(self.rules):
            if r.queue not in known_queues:
                errors.append(f"rules.{i}.queue: unknown queue {r.queue!r}")
        for ch, qn in self.default_queues.items():
            if ch not in self.channels:
                errors.append(f"default_queues.{ch}: unknown channel {ch!r}")
            if qn not in known_queues:
                errors.append(f"default_queues.{ch}: unknown queue {qn!r}")
        for name, profile in self.capacity_profiles.items():
            for ch in profile:
                if ch not in self.channels:
                    errors.append(f"capacity_profiles.{name}.{ch}: unknown channel {ch!r}")
        ids = [a.id for a in self.agents]
        if len(set(ids)) != len(ids):
            errors.append("agents: ids must be unique")
        for i, a in enumerate(self.agents):
            for p in [a.capacity_profile] if isinstance(a.capacity_profile, str) else a.capacity_profile:
                if p not in self.capacity_profiles:
                    errors.append(f"agents.{i}.capacity_profile: unknown profile {p!r}")
            for qn in [] if a.queues == "*" else a.queues:
                if qn not in known_queues:
                    errors.append(f"agents.{i}.queues: unknown queue {qn!r}")
            for s in a.skills:
                if self.skills and s not in self.skills:
                    errors.append(f"agents.{i}.skills.{s}: unknown skill (declare it under skills)")
            for ch in a.capacity_override:
                if ch not in self.channels:
                    errors.append(f"agents.{i}.capacity_override.{ch}: unknown channel {ch!r}")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def agent_capacity(self, agent: AgentSpec) -> tuple[dict[str, int], list[str]]:
        """Several profiles add up per channel; the per-agent override wins; exclusive channels."""
        limits: dict[str, int] = {}
        exclusive: set[str] = {ch for ch, spec in self.channels.items() if spec.exclusive}
        names = [agent.capacity_profile] if isinstance(agent.capacity_profile, str) else agent.capacity_profile
        for name in names:
            for ch, spec in self.capacity_profiles[name].items():
                units = spec.units if isinstance(spec, ChannelUnits) else int(spec)
                limits[ch] = limits.get(ch, 0) + units
                if isinstance(spec, ChannelUnits) and spec.exclusive:
                    exclusive.add(ch)
        limits.update(agent.capacity_override)
        return limits, sorted(exclusive & set(limits))

    def agent_queues(self, agent: AgentSpec) -> list[str]:
        return [q.name for q in self.queues] if agent.queues == "*" else list(agent.queues)


def parse(text: str, section: str | None = "routing") -> RoutingConfig:
    """Parse and validate YAML text; errors name the line (1-based) and the field."""
    return shared_config.parse(text, RoutingConfig, section, required=True)


def document(cfg: RoutingConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude_defaults=False)


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What applying `new` over `old` changes, one line per item: + added, - removed, ~ changed."""
    old = old or {}
    lines: list[str] = []

    def keyed(doc: dict[str, Any], section: str, key: str) -> dict[str, Any]:
        return {item[key]: item for item in doc.get(section) or []}

    sections = [
        ("channels", None),
        ("capacity_profiles", None),
        ("default_queues", None),
        ("queues", "name"),
        ("rules", "name"),
        ("agents", "id"),
    ]
    for section, key in sections:
        a = keyed(old, section, key) if key else (old.get(section) or {})
        b = keyed(new, section, key) if key else (new.get(section) or {})
        noun = section.rstrip("s").replace("_", " ")
        for name in sorted(set(a) | set(b)):
            if name not in a:
                lines.append(f"+ {noun} {name}")
            elif name not in b:
                lines.append(f"- {noun} {name}")
            elif a[name] != b[name]:
                if isinstance(a[name], dict) and isinstance(b[name], dict):
                    fields = sorted(k for k in set(a[name]) | set(b[name]) if a[name].get(k) != b[name].get(k))
                    changes = ", ".join(f"{f}: {a[name].get(f)!r} -> {b[name].get(f)!r}" for f in fields)
                else:
                    changes = f"{a[name]!r} -> {b[name]!r}"
                lines.append(f"~ {noun} {name}: {changes}")
    if old.get("rules") and new.get("rules") and [r["name"] for r in old["rules"]] != [r["name"] for r in new["rules"]]:
        lines.append("~ rules order: " + ", ".join(r["name"] for r in new["rules"]))
    return lines


async def apply(store: RoutingStore, cfg: RoutingConfig, source: str) -> list[str]:
    """Apply the whole configuration in the store's transaction; returns the diff it made."""
    new_doc = document(cfg)
    changes = diff(await store.find_config_document(), new_doc)
    await store.replace_configuration(stored(cfg), source, new_doc)
    return changes


def stored(cfg: RoutingConfig) -> Configuration:
    """The configuration as routing's store holds it."""
    agents = []
    for a in cfg.agents:
        limits, exclusive = cfg.agent_capacity(a)
        agents.append(AgentProfile(a.id, cfg.agent_queues(a), list(a.auto_accept), limits, exclusive, dict(a.skills)))
    return Configuration(
        channels={name: spec.exclusive for name, spec in cfg.channels.items()},
        queues=[
            domain.Queue(
                q.name,
                tuple(q.channels),
                q.assignment,
                tuple(q.allowed_presences),
                q.priority,
                q.offer_timeout_s,
                q.skill_matching,
                q.closest_after_s,
                q.operating_hours.model_dump() if q.operating_hours else None,
                q.overflow.model_dump() if q.overflow else None,
                tuple(r.model_dump() for r in q.prioritisation),
                q.preferred_wait_s,
                q.service_level_s,
            )
            for q in cfg.queues
        ],
        rules=[
            domain.Rule(r.name, r.queue, r.model_dump(exclude={"name", "queue"}, exclude_defaults=True))
            for r in cfg.rules
        ],
        default_queues=dict(cfg.default_queues),
        agents=agents,
    )
