"""shared.config: every problem in a YAML section names its line and its field."""

from __future__ import annotations

import pytest
from pydantic import model_validator

from shared.config import ConfigError, Strict, load, parse


class Profile(Strict):
    max_sessions: int = 10


class Section(Strict):
    profiles: dict[str, Profile] = {}
    agents: dict[str, str] = {}

    @model_validator(mode="after")
    def _known(self) -> Section:
        unknown = [f"agents.{a}: unknown profile {p!r}" for a, p in self.agents.items() if p not in self.profiles]
        if unknown:
            raise ValueError("; ".join(unknown))
        return self


TEXT = """\
other: {}
sessions:
  profiles:
    default:
      max_sessions: ten
  agents:
    agent-1: default
"""


def test_a_wrong_type_names_its_line_and_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse(TEXT, Section, "sessions")
    (problem,) = err.value.problems
    assert problem.startswith("line 5: sessions.profiles.default.max_sessions: Input should be a valid integer")


def test_a_cross_reference_names_the_field_it_is_about() -> None:
    text = "sessions:\n  profiles: {default: {}}\n  agents:\n    agent-1: default\n    agent-2: gold\n"
    with pytest.raises(ConfigError) as err:
        parse(text, Section, "sessions")
    assert err.value.problems == ["line 5: sessions.agents.agent-2: unknown profile 'gold'"]


def test_unknown_keys_invalid_yaml_and_a_missing_section() -> None:
    with pytest.raises(ConfigError, match=r"line 2: sessions.profile: Extra inputs are not permitted"):
        parse("sessions:\n  profile: {}\n", Section, "sessions")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse("sessions: [", Section, "sessions")
    assert parse("other: {}\n", Section, "sessions") == Section()


def test_load_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "switchboard.yaml"
    path.write_text(TEXT)
    with pytest.raises(ConfigError, match=rf"^{path}: line 5: "):
        load(str(path), Section, "sessions")
    assert load(None, Section, "sessions") == Section()
    with pytest.raises(FileNotFoundError, match="SWITCHBOARD_CONFIG"):
        load(str(tmp_path / "missing.yaml"), Section, "sessions")
