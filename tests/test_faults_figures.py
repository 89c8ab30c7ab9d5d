"""The fault suite's own arithmetic (tools.faults), without Kafka: a check that cannot fail
proves nothing, so each figure is shown to catch what it names."""

from __future__ import annotations

import pytest

from shared import contracts, topics
from tools import faults


def test_worst_delay_counts_what_was_in_flight_during_the_window() -> None:
    attempted = {"before": 0.0, "across": 5.0, "after": 20.0, "never": 8.0}
    offered = {"before": 1.0, "across": 12.0, "after": 21.0}
    assert faults.worst_delay(attempted, offered, 6.0, 10.0, now=30.0) == 22.0  # "never": 30 - 8
    del attempted["never"]
    assert faults.worst_delay(attempted, offered, 6.0, 10.0, now=30.0) == 7.0  # "across": 12 - 5
    assert faults.worst_delay(attempted, offered, 40.0, 50.0, now=60.0) is None


def test_lost_and_assigned_twice_come_from_the_databases_and_the_agents_stream() -> None:
    lost, twice = faults.lost_and_twice(
        arrived={"ok", "two-sessions", "never-seen", "never-opened"},
        opened={"ok": 1, "two-sessions": 2, "never-seen": 1},
        started={"ok": 1.0, "two-sessions": 2.0, "never-opened": 3.0},
        holders={"ok": {("agent-1", "s1")}, "two-agents": {("agent-1", "s2"), ("agent-2", "s3")}},
        accepted_twice={"two-offers"},
    )
    assert lost == ["never-opened", "never-seen"]
    assert twice == ["two-agents", "two-offers", "two-sessions"]
    assert faults.lost_and_twice({"a"}, {"a": 1}, {"a": 1.0}, {"a": {("x", "y")}}, set()) == ([], [])


@pytest.mark.parametrize("topic", sorted({t for a in topics.ACCESS.values() for t in a.consumes}))
def test_every_bad_record_is_refused_by_the_contracts(topic: str) -> None:
    records = faults.bad_records(30)
    assert len(records) == 30
    for value, _ in records:
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do; acceptance is the bug
            contracts.parse(value, topic)
