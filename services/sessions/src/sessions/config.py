"""sessions' configuration: the `sessions:` section of the YAML file (experience profiles and which
agent has which), validated as a whole; errors name the line and the field."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, ValidationError, field_validator, model_validator

from shared.config import Strict

PaneTool = Literal["summary", "articles", "replies", "case_summary"]
PANE_TOOLS: tuple[PaneTool, ...] = ("summary", "articles", "replies", "case_summary")
DEFAULT_PROFILE = "default"


class OfferNotifications(Strict):
    show_timeout: bool = True
    sound: Literal["chime", "bell", "none"] = "chime"


class SessionProfile(Strict):
    """An agent experience profile; every setting has a default, so `{}` is the default profile."""

    max_sessions: int = Field(10, ge=1)
    max_tabs: int = Field(10, ge=1)
    remember_tabs: bool = True
    pane_tools: list[PaneTool] = Field(default_factory=lambda: list(PANE_TOOLS))
    offer_notifications: OfferNotifications = Field(default_factory=OfferNotifications)

    def stored(self) -> dict[str, Any]:
        """The settings as given (defaults are applied when read, so they may change later)."""
        return self.model_dump(mode="json", exclude_unset=True)


# The profile names of the configuration being validated, for its agents' references.
_profiles: ContextVar[frozenset[str] | None] = ContextVar("profiles", default=None)


class AgentSpec(Strict):
    profile: str = DEFAULT_PROFILE

    @field_validator("profile")
    @classmethod
    def _known(cls, name: str) -> str:
        known = _profiles.get()
        if known is not None and name not in known:
            raise ValueError(f"unknown experience profile {name!r} (known: {', '.join(sorted(known))})")
        return name


class DispositionSpec(Strict):
    """A wrap-up outcome the agent picks when closing a conversation."""

    code: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9_.-]+$")
    label: str = Field(min_length=1, max_length=200)


class SessionsConfig(Strict):
    profiles: dict[str, SessionProfile] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    # Empty: session.close takes any disposition (or none); else only these codes.
    dispositions: list[DispositionSpec] = Field(default_factory=list)

    @field_validator("dispositions")
    @classmethod
    def _unique_codes(cls, dispositions: list[DispositionSpec]) -> list[DispositionSpec]:
        codes = [d.code for d in dispositions]
        repeated = sorted({code for code in codes if codes.count(code) > 1})
        if repeated:
            raise ValueError(f"disposition codes must be unique; repeated: {', '.join(repeated)}")
        return dispositions

    @model_validator(mode="wrap")
    @classmethod
    def _with_profile_names(cls, data: Any, handler: ModelWrapValidatorHandler[SessionsConfig]) -> SessionsConfig:
        """Agents name profiles of this configuration (or the default one); the error then names
        the agent's own line and field."""
        names = data.get("profiles") if isinstance(data, dict) else None
        token = _profiles.set(frozenset({DEFAULT_PROFILE, *(names if isinstance(names, dict) else ())}))
        try:
            return handler(data)
        finally:
            _profiles.reset(token)


def problems(exc: ValidationError) -> list[str]:
    """A validation error as readable lines, one per problem, each naming its field."""
    return [
        f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    ]
