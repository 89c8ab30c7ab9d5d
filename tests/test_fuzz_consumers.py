"""Property-based fuzzing of every consumer of every service (issue 12 item 6), short version:
hostile batches through each consumer's real pipeline, with the fake stores (200 per consumer) and
on PostgreSQL (20 per consumer, e2e). See tools/fuzz.py for the properties; `python -m tools.fuzz`
is the long version. A failure names the consumer and the broken property, and shows the batch
hypothesis shrank it to."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import topics
from shared.messaging import PoisonMessage
from tools import fuzz
from tools.testing import Deployment

EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "200"))
PG_EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_PG_EXAMPLES", "20"))
# The same inputs on every run (reproducible in CI) unless SWITCHBOARD_FUZZ_RANDOM=1.
DERANDOMIZE = os.environ.get("SWITCHBOARD_FUZZ_RANDOM") != "1"
CONSUMERS = [(service, topic) for service in fuzz.SERVICES for topic in topics.ACCESS[service].consumes]

# Found by this suite (issue 12) and fixed: valid events at the contract's limits made sessions build
# events its own contract refused (presence.updated's reason, the session_id composed from a
# 200-character conversation id); a command with a blank type broke its command.rejected answer.
SERVICES = list(fuzz.SERVICES)
HOSTILE = [pytest.param(s, t, id=f"{s}:{t}") for s, t in CONSUMERS]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop of the module's own: hypothesis drives each example synchronously."""
    loop = asyncio.new_event_loop()
    with fuzz.quiet_logs():
        yield loop
    loop.close()


@pytest.fixture(scope="module")
def harnesses(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, fuzz.Harness]]:
    """Each service started once in memory, shared by the tests of its consumers."""
    opened: dict[str, tuple[Any, fuzz.Harness]] = {}
    config_dir = tmp_path_factory.mktemp("fuzz")
    try:
        for service in fuzz.SERVICES:
            cm = fuzz.Harness.open(service, config_dir)
            opened[service] = (cm, loop.run_until_complete(cm.__aenter__()))
        yield {service: harness for service, (_, harness) in opened.items()}
    finally:
        for cm, _ in opened.values():
            loop.run_until_complete(cm.__aexit__(None, None, None))


@pytest.mark.parametrize(("service", "topic"), HOSTILE)
def test_hostile_records_never_stop_a_consumer(
    service: str, topic: str, loop: asyncio.AbstractEventLoop, harnesses: dict[str, fuzz.Harness]
) -> None:
    figures = fuzz.fuzz_consumer(
        loop, harnesses[service], topic, examples=EXAMPLES, stop_on_failure=True, derandomize=DERANDOMIZE
    )
    assert figures.examples >= EXAMPLES // 2, f"hypothesis ran only {figures.examples} examples"
    # every family of input was tried, and the hostile ones were mostly caught as such
    assert set(figures.families) == {"classic", "malformed", "broken", "valid"}
    assert figures.dead_lettered > figures.inputs // 4


@pytest.mark.e2e
@pytest.mark.parametrize("service", SERVICES)
def test_hostile_records_never_stop_a_consumer_on_postgres(
    service: str, deployment: Deployment, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    """Fewer inputs, on the real database: what the fakes do not refuse (NUL characters, keys
    longer than an index entry, ...) PostgreSQL does, and that must not stop a consumer either."""

    async def opened() -> tuple[Any, fuzz.Harness]:
        cm = fuzz.Harness.open(service, tmp_path, deployment)
        return cm, await cm.__aenter__()

    cm, harness = loop.run_until_complete(opened())
    try:
        for consumer in harness.runtime.consumers:
            fuzz.fuzz_consumer(loop, harness, consumer.topic, examples=PG_EXAMPLES, stop_on_failure=True)
        assert not harness.limit_failures, harness.limit_failures[0]
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))


@pytest.mark.parametrize("service", SERVICES)
def test_events_at_the_contract_limits_are_handled(service: str, harnesses: dict[str, fuzz.Harness]) -> None:
    """Every field at its limit (1- and 4-byte characters), for every type a consumer handles, after
    the others' limit events: handled, refused or dead-lettered as poison, never a handler error."""
    failures = harnesses[service].limit_failures
    assert not failures, "\n".join(
        f"{f['property']}: {f['records'][0]['family']}: {f['detail'][:300]}" for f in failures
    )


def test_every_consumer_of_every_service_is_fuzzed(harnesses: dict[str, fuzz.Harness]) -> None:
    running = {(s, c.topic) for s, h in harnesses.items() for c in h.runtime.consumers}
    assert running == set(CONSUMERS)


def test_the_long_run_reports_figures_per_consumer() -> None:
    report = fuzz.run(examples=4, services=("presence",))
    assert set(report["consumers"]) == {"presence:presence.commands.v1", "presence:routing.v1"}
    # 2 drawn batches per consumer, after the classic ones every run tries
    classics = len(fuzz.classic_batches(topics.ROUTING, ("capacity.changed",)))
    assert report["examples_per_consumer"] == 2 and report["totals"]["examples"] == 2 * (2 + classics)
    figures = report["consumers"]["presence:routing.v1"]
    assert figures["inputs"] >= 2 and figures["exits"] == 0
    assert figures["inputs"] <= sum(
        figures[k] for k in ("dead_lettered", "rejected", "ignored", "handled", "duplicates")
    )
    json.dumps(report)


# --- the properties can fail: broken consumers are caught ----------------------------------------


def _fuzz_presence_commands(loop: asyncio.AbstractEventLoop, tmp_path: Path, breakage: Any) -> fuzz.Figures:
    async def opened() -> tuple[Any, fuzz.Harness]:
        cm = fuzz.Harness.open("presence", tmp_path)
        return cm, await cm.__aenter__()

    cm, harness = loop.run_until_complete(opened())
    try:
        breakage(harness.consumer(topics.PRESENCE_COMMANDS))
        return fuzz.fuzz_consumer(
            loop, harness, topics.PRESENCE_COMMANDS, examples=30, stop_on_failure=False, random_seed=1
        )
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))


def _properties(figures: fuzz.Figures) -> set[str]:
    return {f["property"] for f in figures.failures}


def test_a_handler_that_crashes_on_its_input_is_reported(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    def crash(consumer: Any) -> None:
        async def handler(uow: Any, ev: Any, data: Any) -> None:
            raise KeyError(data.agent_id)

        consumer.handlers = dict.fromkeys(consumer.handlers, handler)

    figures = _fuzz_presence_commands(loop, tmp_path, crash)
    assert {"handler_error", "canary_not_handled"} <= _properties(figures)
    assert any("KeyError" in f["detail"] for f in figures.failures if f["property"] == "handler_error")


def test_a_consumer_that_drops_bad_records_is_reported(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    def drop(consumer: Any) -> None:
        async def dead_letter(rec: Any, error: BaseException, kind: str) -> None:
            return None

        consumer.dead_letter = dead_letter

    assert "invalid_not_dead_lettered" in _properties(_fuzz_presence_commands(loop, tmp_path, drop))


def test_a_consumer_that_raises_or_exits_is_reported(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    def explode(consumer: Any) -> None:
        async def process(records: Any) -> None:
            consumer.exit_process(70)
            raise PoisonMessage("boom")

        consumer.process = process

    figures = _fuzz_presence_commands(loop, tmp_path, explode)
    assert {"raised", "exited", "canary_not_handled"} <= _properties(figures)
    assert figures.exits > 0
