"""The `presence:` configuration section: refused with the line and the field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from presence import config
from shared.config import ConfigError, parse
from shared.contracts import BASE_PRESENCES

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
presence:
  statuses:
    - {name: lunch, colour: "#f5a623", base: away}
  profiles:
    default:
    desk: {full: lunch, idle_after_s: 300}
  agents:
    agent-3: {profile: desk}
    agent-4:
  teams:
    tier-1: [agent-1, agent-3]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(text, config.PresenceConfig, "presence")
    return err.value.problems


def test_the_demo_configuration_is_valid() -> None:
    cfg = config.load(str(ROOT / "deploy/demo/switchboard.yaml"))
    assert {s.name for s in cfg.statuses} == {"lunch", "training", "coaching"}
    assert cfg.profiles["escalation"].rules().rejected_offer == "busy_dnd"
    assert cfg.agents["agent-5"].profile == "escalation"
    assert cfg.team_of()["agent-4"] == "tier-2"
    assert cfg.sign_in == ["agent-1", "agent-2", "agent-3", "agent-4", "agent-5"]


def test_a_custom_status_maps_to_any_base_but_inactive() -> None:
    assert set(get_args(config.SettableBase)) == set(BASE_PRESENCES) - {"inactive"}


def test_empty_profiles_and_agents_mean_the_defaults() -> None:
    cfg = parse(GOOD, config.PresenceConfig, "presence")
    assert cfg.profiles["default"].rules() == config.RulesSpec().rules()
    assert cfg.profiles["desk"].rules().full == "lunch"
    assert cfg.agents["agent-4"].profile == "default"
    assert parse("routing: {}\n", config.PresenceConfig, "presence") == config.PresenceConfig()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("base: away}", "base: lunchbreak}"), "line 3: presence.statuses.0.base: Input should be"),
        (("full: lunch", "full: napping"), "line 6: presence.profiles.desk.full: unknown presence 'napping'"),
        (("idle_after_s: 300", "idle_after_s: soon"), "line 6: presence.profiles.desk.idle_after_s:"),
        (("idle_after_s: 300", "when_tired: away"), "line 6: presence.profiles.desk.when_tired: Extra inputs"),
        (("{profile: desk}", "{profile: night}"), "line 8: presence.agents.agent-3.profile: unknown profile 'night'"),
        (("name: lunch", "name: away"), "line 3: presence.statuses.0.name: 'away' is a base presence"),
        (("[agent-1, agent-3]", "[agent-1, agent-1]"), "line 11: presence.teams.tier-1.1: agent-1 is already in team"),
    ],
)
def test_mistakes_name_their_line_and_field(change: tuple[str, str], expected: str) -> None:
    found = problems(GOOD.replace(*change))
    assert any(p.startswith(expected) for p in found), found


def test_the_file_is_named_too(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.yaml"
    path.write_text(GOOD.replace("base: away}", "base: lunchbreak}"))
    with pytest.raises(ConfigError, match=f"{path}: line 3: presence.statuses.0.base"):
        config.load(str(path))
