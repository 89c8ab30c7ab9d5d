"""presence's configuration: the `presence:` section of the YAML file (SWITCHBOARD_CONFIG).

Validated as a whole; every problem names its line and field (`line 12: presence.statuses.0.base:
...`). Applied at start, in one transaction."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from presence import domain
from shared import config as shared_config
from shared.config import Strict

# A custom status is shown as one of these to routing; inactive is the system's own.
SettableBase = Literal["available", "busy", "busy_dnd", "away", "offline"]


class StatusSpec(Strict):
    name: str = Field(min_length=1)
    colour: str | None = None
    base: SettableBase


class RulesSpec(Strict):
    """An agent experience profile's automatic rules (see `domain.Rules`); null switches one off.
    The targets are base presences or custom statuses."""

    no_work: str = "available"
    some_work: str = "busy"
    full: str = "busy_dnd"
    missed_offer: str | None = "inactive"
    rejected_offer: str | None = None
    idle_after_s: float | None = Field(default=None, gt=0)

    def rules(self) -> domain.Rules:
        return domain.Rules(**self.model_dump())


class AgentSpec(Strict):
    profile: str = "default"


class PresenceConfig(Strict):
    # Agents the demo signs in (read by the developer tooling; the service ignores it).
    sign_in: list[str] = Field(default_factory=list)
    statuses: list[StatusSpec] = Field(default_factory=list)
    profiles: dict[str, RulesSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    teams: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("profiles", "agents", mode="before")
    @classmethod
    def _empty_when_null(cls, value: Any) -> Any:
        """`name:` with nothing after it means the defaults."""
        if isinstance(value, dict):
            return {k: {} if v is None else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _references(self) -> PresenceConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        custom: set[str] = set()
        for i, st in enumerate(self.statuses):
            if st.name in domain.base_statuses():
                problems.append((("statuses", i, "name"), f"{st.name!r} is a base presence, not a custom status"))
            elif st.name in custom:
                problems.append((("statuses", i, "name"), f"{st.name!r} is defined twice"))
            custom.add(st.name)
        known = set(domain.base_statuses()) | custom
        for name, spec in self.profiles.items():
            for rule in ("no_work", "some_work", "full", "missed_offer", "rejected_offer"):
                target = getattr(spec, rule)
                if target is not None and target not in known:
                    problems.append(
                        (
                            ("profiles", name, rule),
                            f"unknown presence {target!r}; expected one of: {', '.join(sorted(known))}",
                        )
                    )
        for agent_id, agent in self.agents.items():
            if agent.profile != "default" and agent.profile not in self.profiles:
                problems.append((("agents", agent_id, "profile"), f"unknown profile {agent.profile!r}"))
        team_of: dict[str, str] = {}
        for team, members in self.teams.items():
            for i, agent_id in enumerate(members):
                if agent_id in team_of:
                    problems.append((("teams", team, i), f"{agent_id} is already in team {team_of[agent_id]!r}"))
                team_of.setdefault(agent_id, team)
        if problems:
            # One error per field (not one for the whole section), so each names its own line.
            raise ValidationError.from_exception_data(
                "PresenceConfig",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("presence_config", "{problem}", {"problem": msg}),
                        loc=loc,
                        input=None,
                    )
                    for loc, msg in problems
                ],
            )
        return self

    def team_of(self) -> dict[str, str]:
        return {agent: team for team, members in self.teams.items() for agent in members}


def load(path: str | None) -> PresenceConfig:
    """The `presence:` section of the file at `path` (defaults when unset); ConfigError otherwise."""
    return shared_config.load(path, PresenceConfig, "presence")
