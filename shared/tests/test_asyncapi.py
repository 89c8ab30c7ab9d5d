"""Each service's AsyncAPI document shows the payload of every channel, consumed and produced:
the topic's CloudEvents envelope with each of the topic's types as a possible `data`."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from shared import contracts as c
from shared import topics


def _refs(node: Any) -> set[str]:
    """Every `$ref` target under `node`."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _schema_names(doc: dict[str, Any], payload: dict[str, Any]) -> set[str]:
    """The names of the component schemas `payload` uses, directly or through other schemas."""
    schemas = doc["components"]["schemas"]
    names: set[str] = set()
    todo = [r.rsplit("/", 1)[-1] for r in _refs(payload)]
    while todo:
        name = todo.pop()
        if name not in names:
            names.add(name)
            todo += [r.rsplit("/", 1)[-1] for r in _refs(schemas[name])]
    return names


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


@pytest.mark.parametrize("service", ["routing", "sessions", "presence", "assist"])
def test_every_channel_names_the_types_of_its_topic(service: str) -> None:
    build_runtime = importlib.import_module(f"{service}.app").build_runtime
    doc = build_runtime().asyncapi().to_specification().to_jsonable()

    assert doc["channels"]
    for key, channel in doc["channels"].items():
        topic = channel["address"].removesuffix(topics.DLQ_SUFFIX)
        expected = {c.PAYLOADS[t].__name__ for t in c.TYPES_BY_TOPIC[topic]}
        assert channel["messages"], key
        for message_ref in channel["messages"].values():
            message = _resolve(doc, message_ref["$ref"])
            payload = message.get("payload") or {}
            names = _schema_names(doc, payload)
            assert expected <= names, f"{service} {key}: payload lacks {sorted(expected - names)}"


async def test_documenting_the_envelope_does_not_make_faststream_validate_bodies() -> None:
    from shared.runtime import Runtime
    from shared.settings import ServiceSettings
    from shared.tx import MemoryDatabase
    from tools.testing import in_memory

    seen: list[str] = []

    async def on_ended(uow: Any, ev: c.CloudEvent, data: c.ConversationEnded) -> None:
        seen.append(data.conversation_id)

    runtime: Runtime[Any, Any] = Runtime(
        "probe", ServiceSettings(), package="shared", produces={}, store=lambda tx: tx, database=MemoryDatabase()
    )
    consumer = runtime.consume(topics.CONVERSATIONS, {"conversation.ended": on_ended})  # type: ignore[dict-item]
    async with in_memory(runtime) as bus:
        await bus.send_raw(topics.CONVERSATIONS, b"not json", key="c-1")
        await bus.send_raw(topics.CONVERSATIONS, b'{"specversion": "1.0", "type": 3}', key="c-1")
        await bus.send(c.ConversationEnded(conversation_id="c-1"))
    assert seen == ["c-1"]
    assert consumer.stats.dead_lettered == 2


def test_the_committed_documents_are_up_to_date() -> None:
    """deploy/asyncapi/ is what `make asyncapi` writes from the code as it is: a contract change
    without regenerating them fails here."""
    from pathlib import Path

    from tools.asyncapi import documents

    root = Path(__file__).resolve().parents[2] / "deploy" / "asyncapi"
    stale = [name for name, text in documents().items() if (root / f"{name}.yaml").read_text() != text]
    assert not stale, f"run `make asyncapi`: deploy/asyncapi/ is stale for {', '.join(stale)}"
