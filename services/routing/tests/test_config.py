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
