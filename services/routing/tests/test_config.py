"""routing's typed configuration: the queue's service-level threshold."""

from __future__ import annotations

import pytest

from routing import config

TEXT = """\
routing:
  channels:
    chat: {}
  queues:
    - name: support
      channels: [chat]
      service_level_s: VALUE
    - {name: billing, channels: [chat]}
"""


def test_the_service_level_threshold_is_set_per_queue_and_defaults_to_20_s() -> None:
    cfg = config.parse(TEXT.replace("VALUE", "45"))
    support, billing = config.stored(cfg).queues
    assert (support.service_level_s, billing.service_level_s) == (45, 20)
    assert config.document(cfg)["queues"][1]["service_level_s"] == 20


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_bad_threshold_is_refused_with_its_line_and_field(value: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(TEXT.replace("VALUE", value))
    [problem] = err.value.problems
    assert "line 7" in problem and "queues.0.service_level_s" in problem


def test_a_file_without_a_routing_section_is_refused_before_its_contents_are_read() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse("presence:\n  sign_in: [agent-1]\n")
    assert err.value.problems == ["no 'routing:' section in the file"]


def test_a_large_file_is_read_with_the_same_lines_and_values() -> None:
    """The C loader (libyaml) and the pure-Python one agree: values, and the lines errors name."""
    agents = "".join(f"    - {{id: agent-{i}, capacity_profile: demo}}\n" for i in range(2000))
    text = TEXT.replace("VALUE", "30") + "  capacity_profiles:\n    demo: {chat: 3}\n  agents:\n" + agents
    cfg = config.parse(text)
    assert [a.id for a in cfg.agents][-1] == "agent-1999"
    with pytest.raises(config.ConfigError) as err:
        config.parse(text.replace("{id: agent-1500, capacity_profile: demo}", "{id: agent-1500, capacity: 1}"))
    assert any(p.startswith("line 1512: routing.agents.1500") for p in err.value.problems), err.value.problems
