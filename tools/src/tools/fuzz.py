"""Property-based fuzzing of every consumer of every service (issue 12 item 6).

Each service runs on FastStream's TestKafkaBroker with its fake stores (as in its handler tests),
or on PostgreSQL, and each of its consumers gets batches of hostile records through its real pipeline
(`Consumer.process`): malformed bytes, wrong JSON types, missing and oversize fields, unknown types,
adversarial strings, and well-formed events no one can act on (unknown agents, conversations never
seen). After every batch a valid "canary" event must still be handled. The properties:

- `process` never raises for bad input and the consumer never asks to exit the process;
- every record that is not a valid event is dead-lettered with a reason (and the original bytes),
  unless its `ce_type` header names a type the consumer skips unread;
- no valid record is dead-lettered because its handler failed unexpectedly (in memory nothing is
  transient, so `retries_exhausted` means the handler raised on its input);
- the canary after the bad records is handled; a batch never hangs (the bench: never takes more
  than a few seconds).

`make test` runs a short version (tests/test_fuzz_consumers.py: 200 batches per consumer in memory,
20 on PostgreSQL); `run(examples=10000)` is the long one for `make bench` (10,000 batches shared by
the consumers, about 50,000 records; `python -m tools.fuzz` prints its JSON figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import functools
import importlib
import json
import logging
import sys
import sysconfig
import tempfile
import time
import traceback
import types
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from shared import contracts, topics
from shared.messaging import Consumer
from shared.tx import MemoryDatabase
from tools.testing import Deployment

SERVICES = ("routing", "sessions", "presence", "assist")
# Wall-clock budget of one hostile batch (at most 13 records). The bench holds batches to it; the
# tests only catch hangs (a CPU-bound regex that backtracks for minutes), never mere slowness.
BENCH_BUDGET_S = 5.0
HANG_BUDGET_S = 60.0

# Enough configuration for every handler to have something to work with.
CONFIG: dict[str, Any] = {
    "routing": {
        "channels": {"chat": {}, "voice": {"exclusive": True}, "email": {}},
        "capacity_profiles": {"standard": {"chat": 3, "voice": 1, "email": 2}},
        "queues": [{"name": "general", "channels": ["chat", "voice", "email"]}],
        "default_queues": {"chat": "general", "voice": "general", "email": "general"},
        "agents": [
            {"id": "agent-1", "capacity_profile": "standard", "queues": "*"},
            {"id": "agent-2", "capacity_profile": "standard", "queues": "*"},
        ],
    },
    "presence": {"statuses": [{"name": "lunch", "base": "away"}]},
    "sessions": {},
    "assist": {},
}

# Identifiers handlers may know (configured agents, conversations the prelude created) next to
# ones nobody knows: valid-but-impossible events need both.
KNOWN_IDS = ("agent-1", "agent-2", "c-1", "c-2", "home", "o-1", "s-1", "t-1", "general", "chat", "voice", "lunch")


# --- adversarial values --------------------------------------------------------------------------

HOSTILE_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff\ud800",
    "\u202eevil",
    "\ufeff",
    "order" + " " * 500,
    "order " * 400,
    "(a+)+$" + "a" * 60 + "!",
    "<script>alert(1)</script>",
    "'; DROP TABLE inbox; --",
    "%s%s%s%n",
    "{{7*7}}",
    "../../../etc/passwd",
    "\r\n\r\nX-Injected: 1",
    "🙂" * 300,
    "é" * 3000,
    "a" * 5000,
    "9" * 5000,
)


@functools.cache
def hostile_strings() -> st.SearchStrategy[str]:
    """Strings that have broken text handling somewhere: huge, unicode, control characters, NULs,
    lone surrogates, regex-hostile runs (issue 12: "order" followed by hundreds of spaces)."""
    huge = st.builds(
        lambda unit, n: unit * n,
        st.sampled_from(["a", " ", "order ", "é", "\x00", "😀", "\ud800", "ab\n"]),
        st.integers(min_value=300, max_value=120_000),
    )
    controls = st.text(alphabet=st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp", "Zs"]), max_size=40)
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=60), controls, huge)


@functools.cache
def json_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )


@functools.cache
def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars(),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
        max_leaves=12,
    )


# --- valid data from the contract's models ---------------------------------------------------------


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    """Length and range constraints (annotated_types' MinLen, MaxLen, Ge, ... or pydantic's own)."""
    out: dict[str, Any] = {}
    for m in metadata:
        for name in ("min_length", "max_length", "ge", "gt", "le", "lt"):
            if getattr(m, name, None) is not None:
                out[name] = getattr(m, name)
    return out


def _strings(bounds: dict[str, Any]) -> st.SearchStrategy[str]:
    """Known ids, fresh text, and the longest the contract allows (in 1- and 4-byte characters: an
    index entry or a column that fits the first may not fit the second)."""
    low = bounds.get("min_length", 0)
    longest = bounds.get("max_length", 20_000)
    high = min(longest, 60)
    ids = st.sampled_from(KNOWN_IDS).filter(lambda s: low <= len(s) <= high)
    fresh = st.text(st.characters(codec="utf-8"), min_size=max(low, 1), max_size=high)
    edges = st.sampled_from(["x" * max(low, 1), "x" * longest, "😀" * longest, "é" * longest])
    return st.one_of(ids, fresh, edges)


def _numbers(kind: type, bounds: dict[str, Any]) -> st.SearchStrategy[Any]:
    low = bounds.get("ge", bounds.get("gt", -1000) + (1 if "gt" in bounds else 0))
    high = bounds.get("le", bounds.get("lt", 1000) - (1 if "lt" in bounds else 0))
    if kind is int:
        return st.integers(min_value=int(low), max_value=int(high))
    return st.floats(min_value=float(low), max_value=float(high), allow_nan=False)


def value_for(annotation: Any, metadata: list[Any] | None = None) -> st.SearchStrategy[Any]:
    """JSON values valid for one annotation of a contract model (constraints honoured where the
    model states them; model validators may still refuse the result: it is then just another
    invalid input)."""
    bounds = _bounds(metadata or [])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return value_for(args[0], [*(metadata or []), *args[1:], *_field_metadata(args[1:])])
    if origin in (typing.Union, types.UnionType):
        return st.one_of([value_for(a, metadata) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if annotation is type(None):
        return st.none()
    if annotation is str:
        return _strings(bounds)
    if annotation is bool:
        return st.booleans()
    if annotation in (int, float):
        return _numbers(annotation, bounds)
    if annotation is dt.datetime:
        return st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat())
    if origin is dict:
        key = value_for(args[0]) if args else st.text(max_size=10)
        item = value_for(args[1]) if len(args) > 1 else json_values()
        return st.dictionaries(key, item, max_size=3)
    if origin is list:
        return st.lists(value_for(args[0]) if args else json_scalars(), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return data_for(annotation)
    return json_values()


def _field_metadata(items: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(getattr(item, "metadata", []) or [])
    return out


@functools.cache
def data_for(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """A model's fields: the required ones always, the optional ones sometimes."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        strategy = value_for(info.annotation, list(info.metadata))
        (required if info.is_required() else optional)[info.alias or name] = strategy
    return st.fixed_dictionaries(required, optional=optional)


# An unbounded text field gets this many characters at the limit (the contract's limits on the
# whole document apply then).
UNBOUNDED_TEXT = 10_000


def edge_value(annotation: Any, metadata: list[Any] | None, char: str) -> Any:
    """The value at the contract's limit for one annotation: strings as long as allowed (of
    `char`), numbers at their bound, every optional field present."""
    bounds = _bounds(metadata or [])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return edge_value(args[0], [*(metadata or []), *args[1:], *_field_metadata(args[1:])], char)
    if origin in (typing.Union, types.UnionType):
        chosen = next((a for a in args if a is not type(None)), type(None))
        return edge_value(chosen, metadata, char)
    if origin is typing.Literal:
        return args[0]
    if annotation is str:
        return char * bounds.get("max_length", UNBOUNDED_TEXT)
    if annotation is bool:
        return True
    if annotation in (int, float):
        return annotation(bounds.get("le", bounds.get("lt", 1_000_001) - 1))
    if annotation is dt.datetime:
        return "2026-11-21T10:00:00+00:00"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return edge_data(annotation, char)
    if origin is dict:
        return {}
    if origin is list:
        return []
    return None


def edge_data(model: type[BaseModel], char: str) -> dict[str, Any]:
    return {
        info.alias or name: edge_value(info.annotation, list(info.metadata), char)
        for name, info in model.model_fields.items()
    }


def edge_batches(topic: str, types_: tuple[str, ...]) -> list[list[Raw]]:
    """Per handled type, one event with every field at its limit in 1-byte characters and one in
    4-byte characters (valid by the contract, unless a model validator objects)."""
    batches_ = []
    for type_ in types_:
        batch = []
        for char in ("x", "😀"):
            doc = envelope(type_, edge_data(contracts.PAYLOADS[type_], char))
            batch.append(
                Raw(f"limits:{type_}", _encode(doc, ascii_only=False), _key_of(doc), [("ce_type", type_.encode())])
            )
        batches_.append(batch)
    return batches_


def envelope(type_: str, data: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "/fuzz",
        "type": type_,
        "time": "2026-11-21T10:00:00Z",
        "subject": str(data.get("agent_id") or data.get("conversation_id") or "x"),
        "datacontenttype": "application/json",
        "data": data,
    }


# --- records ---------------------------------------------------------------------------------------


@dataclass
class Raw:
    """One record as a producer might write it; `family` names the generator (for the figures)."""

    family: str
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def __repr__(self) -> str:  # what hypothesis prints for a failing batch: short, but says the size
        return f"Raw({self.family!r}, {self.preview(200)!r}, key={self.key!r}, headers={self.headers!r})"

    def preview(self, limit: int = 300) -> str:
        if self.value is None:
            return "None"
        text = self.value[:limit].decode(errors="backslashreplace")
        return text + (f"... ({len(self.value)} bytes)" if len(self.value) > limit else "")


def _encode(doc: Any, ascii_only: bool) -> bytes:
    if ascii_only:
        return json.dumps(doc).encode()
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


def _key_of(doc: Any) -> bytes | None:
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict):
        for name in ("agent_id", "conversation_id"):
            if isinstance(data.get(name), str):
                return data[name].encode("utf-8", errors="surrogatepass")
    return None


HEADER_CHOICES = st.sampled_from(["none", "body", "known", "garbage"])
GARBAGE = st.binary(max_size=30)


def _headers(draw: st.DrawFn, topic: str, doc: Any) -> list[tuple[str, bytes]]:
    """No `ce_type` header, the body's type, another type of the topic, or garbage."""
    body_type = doc.get("type") if isinstance(doc, dict) else None
    choice = draw(HEADER_CHOICES)
    if choice == "body" and isinstance(body_type, str):
        return [("ce_type", body_type.encode("utf-8", errors="surrogatepass"))]
    if choice == "known":
        return [("ce_type", draw(_known_types(topic)).encode())]
    if choice == "garbage":
        return [("ce_type", draw(GARBAGE))]
    return []


@functools.cache
def _known_types(topic: str) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(contracts.TYPES_BY_TOPIC[topic]))


@functools.cache
@st.composite
def valid_events(draw: st.DrawFn, topic: str, types_: tuple[str, ...]) -> dict[str, Any]:
    """A well-formed event of one of `types_`: ids known or not, values anywhere in their range."""
    type_ = draw(st.sampled_from(types_))
    return envelope(type_, draw(data_for(contracts.PAYLOADS[type_])))


ENVELOPE_FIELDS = ("specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data")


@functools.cache
@st.composite
def broken_events(draw: st.DrawFn, topic: str, types_: tuple[str, ...]) -> tuple[str, Any]:
    """A valid event with one thing wrong: a field missing, of the wrong JSON type, hostile or
    oversize; an unknown or foreign type; an impossible time."""
    doc = draw(valid_events(topic, types_))
    data = doc["data"]
    how = draw(
        st.sampled_from(
            [
                "drop_envelope",
                "wrong_envelope_type",
                "hostile_envelope",
                "drop_data_field",
                "wrong_data_type",
                "hostile_data",
                "extra_fields",
                "unknown_type",
                "foreign_type",
                "bad_time",
                "data_not_object",
            ]
        )
    )
    if how == "drop_envelope":
        doc.pop(draw(st.sampled_from(ENVELOPE_FIELDS)))
    elif how == "wrong_envelope_type":
        doc[draw(st.sampled_from(ENVELOPE_FIELDS))] = draw(json_values())
    elif how == "hostile_envelope":
        doc[draw(st.sampled_from(("id", "source", "type", "subject", "specversion")))] = draw(hostile_strings())
    elif how == "drop_data_field" and data:
        data.pop(draw(st.sampled_from(sorted(data))))
    elif how == "wrong_data_type" and data:
        data[draw(st.sampled_from(sorted(data)))] = draw(json_values())
    elif how == "hostile_data":
        names = sorted(data) or ["text"]
        data[draw(st.sampled_from([*names, "text", "agent_id", "conversation_id"]))] = draw(hostile_strings())
    elif how == "extra_fields":
        extra = draw(st.dictionaries(hostile_strings().filter(lambda s: len(s) < 2000), json_values(), max_size=3))
        (data if draw(st.booleans()) else doc).update(extra)
    elif how == "unknown_type":
        doc["type"] = draw(st.one_of(st.sampled_from(["", "conversation.arrived.v2", "x"]), st.text(max_size=30)))
    elif how == "foreign_type":
        foreign = sorted(set(contracts.PAYLOADS) - contracts.TYPES_BY_TOPIC.get(topic, frozenset()))
        doc["type"] = draw(st.sampled_from(foreign))
    elif how == "bad_time":
        doc["time"] = draw(st.sampled_from(["yesterday", "2026-13-45T99:99:99Z", "", "0000-00-00", 1e300, None]))
    elif how == "data_not_object":
        doc["data"] = draw(st.one_of(json_scalars(), st.lists(json_scalars(), max_size=3)))
    return how, doc


@functools.cache
def malformed_bytes() -> st.SearchStrategy[tuple[str, bytes | None]]:
    """Not a JSON object at all, or JSON that breaks parsers: deep nesting, huge numbers, bad UTF-8."""
    return st.one_of(
        st.tuples(st.just("binary"), st.binary(max_size=200)),
        st.tuples(st.just("empty"), st.sampled_from([b"", None])),
        st.tuples(st.just("json_not_object"), json_values().map(lambda v: json.dumps(v).encode())),
        st.tuples(
            st.just("parser_hostile"),
            st.sampled_from(
                [
                    b"[" * 100_000,
                    b'{"a":' * 50_000,
                    b"9" * 5000,
                    b'{"id": ' + b"9" * 5000 + b"}",
                    b"\xef\xbb\xbf{}",
                    b'{"id": "\xff\xfe"}',
                    b'{"id": "a"} trailing',
                    b"NaN",
                    b'{"specversion": "1.0", "id": "x", "id": "y"}',
                    b"\x00" * 64,
                ]
            ),
        ),
    )


@functools.cache
@st.composite
def hostile_records(draw: st.DrawFn, topic: str, types_: tuple[str, ...]) -> Raw:
    """One record from any of the families above."""
    family = draw(st.sampled_from(["malformed", "broken", "broken", "valid", "valid"]))
    if family == "malformed":
        name, value = draw(malformed_bytes())
        key = draw(st.one_of(st.none(), st.binary(max_size=40)))
        return Raw(f"malformed:{name}", value, key, _headers(draw, topic, None))
    if family == "broken":
        how, doc = draw(broken_events(topic, types_))
        label = f"broken:{how}"
    else:
        doc, label = draw(valid_events(topic, types_)), "valid"
    value = _encode(doc, draw(st.booleans()))
    return Raw(label, value, _key_of(doc), _headers(draw, topic, doc))


@functools.cache
def batches(topic: str, types_: tuple[str, ...]) -> st.SearchStrategy[list[Raw]]:
    """A batch of 1 to 12 hostile records, sometimes with one of them delivered twice."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Raw]:
        recs = draw(st.lists(hostile_records(topic, types_), min_size=1, max_size=12))
        if len(recs) > 1 and draw(st.booleans()):
            recs.append(recs[draw(st.integers(0, len(recs) - 1))])
        return recs

    return build()


def classic_batches(topic: str, types_: tuple[str, ...]) -> list[list[Raw]]:
    """Records that broke consumers before (issue 12 and this suite's findings), tried on every
    run whatever hypothesis draws: one batch each, built on a valid event of the first type."""
    base = envelope(types_[0], edge_data(contracts.PAYLOADS[types_[0]], "x"))
    base["data"] = {k: (v[:20] if isinstance(v, str) else v) for k, v in base["data"].items()}
    changes: list[tuple[str, dict[str, Any]]] = [
        ("type_blank", {"type": " "}),
        ("type_empty", {"type": ""}),
        ("type_null", {"type": None}),
        ("id_blank", {"id": " "}),
        ("id_5kb", {"id": "i" * 5000}),
        ("id_nul", {"id": "a\x00b"}),
        ("id_surrogate", {"id": "\ud800"}),
        ("source_blank", {"source": " "}),
        ("specversion_old", {"specversion": "0.3"}),
        ("time_empty", {"time": ""}),
        ("data_null", {"data": None}),
        ("data_empty", {"data": {}}),
        ("text_order_spaces", {"data": {**base["data"], "text": "order" + " " * 500}}),
        ("name_900kb", {"data": {**base["data"], "name": "n" * 900_000}}),
        ("field_nul", {"data": {**base["data"], "note": "a\x00b"}}),
        ("key_surrogate", {"data": {**base["data"], "\ud800": 1}}),
        ("int_huge", {"data": {**base["data"], "n": 2**70}}),
    ]
    out = [[Raw("classic:no_id", _encode({k: v for k, v in base.items() if k != "id"}, True), _key_of(base))]]
    out += [[Raw(f"classic:{name}", _encode({**base, **change}, True), _key_of(base))] for name, change in changes]
    out += [[Raw("classic:digits", b"9" * 5000)], [Raw("classic:nested", b"[" * 100_000)]]
    return out


# --- canaries: a valid event each consumer must still handle after the hostile ones --------------


def canary(service: str, topic: str, n: int) -> contracts.Payload:
    """An event the consumer's handlers accept whatever came before (fresh ids, configured names)."""
    cid, agent = f"c-canary-{n}", "agent-1"
    match topic:
        case topics.CONVERSATIONS:
            return contracts.ConversationArrived(conversation_id=cid, channel="chat")
        case topics.MESSAGES:
            return contracts.MessagePosted(conversation_id=cid, sender="customer", text="hello")
        case topics.PRESENCE:
            return contracts.PresenceChanged(agent_id=agent, status="available", previous="away", source="manual")
        case topics.PRESENCE_COMMANDS:
            return contracts.AgentHeartbeat(agent_id=agent)
        case topics.ROUTING_COMMANDS:
            return contracts.PickWork(agent_id=agent, conversation_id=cid)
        case topics.SESSIONS:
            return contracts.SessionClosed(agent_id=agent, session_id=f"s-canary-{n}", conversation_id=cid)
        case topics.SESSIONS_COMMANDS:
            return contracts.FocusSession(agent_id=agent, session_id="home")
        case topics.ASSIST:
            return contracts.ArticlesSurfaced(conversation_id=cid, articles=[])
        case topics.ROUTING:
            if service == "presence":
                return contracts.CapacityChanged(agent_id=agent, used={"chat": 0}, limits={"chat": 3})
            return contracts.WorkReleased(agent_id=agent, conversation_id=cid, channel="chat")
    raise ValueError(f"no canary for {service}:{topic}")


# --- the harness -------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one consumer did with the inputs it was given."""

    consumer: str
    examples: int = 0
    inputs: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    ignored: int = 0
    handled: int = 0
    duplicates: int = 0
    exits: int = 0
    skipped_by_header: int = 0
    slowest_batch_s: float = 0.0
    families: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, max_failures: int = 20) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for f in self.failures:
            kinds[f["property"]] = kinds.get(f["property"], 0) + 1
        return {
            "examples": self.examples,
            "inputs": self.inputs,
            "dead_lettered": self.dead_lettered,
            "rejected": self.rejected,
            "ignored": self.ignored,
            "handled": self.handled,
            "duplicates": self.duplicates,
            "exits": self.exits,
            "skipped_by_header": self.skipped_by_header,
            "slowest_batch_s": round(self.slowest_batch_s, 3),
            "families": dict(sorted(self.families.items())),
            "failures": len(self.failures),
            "failures_by_property": kinds,
            "failure_examples": self.failures[:max_failures],
        }


STAT_NAMES = ("handled", "duplicates", "ignored", "dead_lettered", "rejected")


class Harness:
    """One service; hostile batches through one consumer at a time, checked after each.

    In memory (the default) the fake stores are restored to the prelude's state before each
    batch, so a failing batch replays alone and hypothesis shrinks it to a minimal example. On
    PostgreSQL (a `deployment`) state accumulates, and the database's own limits take part."""

    def __init__(self, service: str, runtime: Any) -> None:
        self.service = service
        self.runtime = runtime
        self.dead: list[tuple[bytes | None, dict[str, str]]] = []
        self.exits: list[tuple[str, int]] = []
        self.offsets = 0
        self.canaries = 0
        self.limit_failures: list[dict[str, Any]] = []
        self._saved: Any = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, service: str, config_dir: Path, deployment: Deployment | None = None) -> AsyncIterator[Harness]:
        from faststream.kafka import TestKafkaBroker

        runtime = build(service, config_dir, deployment)
        harness = cls(service, runtime)
        for consumer in runtime.consumers:
            harness._capture(consumer)
            consumer.exit_process = harness._exit_recorder(consumer)
        async with TestKafkaBroker(runtime.broker):
            await runtime.start()
            try:
                await harness._prelude()
                if isinstance(runtime.database, MemoryDatabase):
                    harness._saved = runtime.database.snapshot()
                yield harness
            finally:
                await runtime.stop()

    def _capture(self, consumer: Consumer) -> None:
        from faststream.kafka import KafkaMessage

        async def dead_letter(body: Any, message: KafkaMessage) -> None:
            raw = message.raw_message
            rec = raw[0] if isinstance(raw, tuple | list) else raw
            headers = {k: (v or b"").decode(errors="replace") for k, v in rec.headers or ()}
            self.dead.append((rec.value, headers))

        dead_letter.__annotations__.update(body=Any, message=KafkaMessage)  # resolved here, not as strings
        self.runtime.broker.subscriber(self.runtime.names(topics.dlq(consumer.topic)), group_id=None)(dead_letter)

    def _exit_recorder(self, consumer: Consumer) -> Callable[[int], None]:
        def record(code: int) -> None:
            self.exits.append((consumer.consumer_name, code))

        return record

    async def _prelude(self) -> None:
        """Some state for hostile events to collide with: agents signed in, conversations going,
        and events at the contract's limits (checked like any batch: `limit_failures`). Twice, so
        each consumer also meets the limits in the state the others' events left."""
        for consumer in self.runtime.consumers:
            for n in range(2):
                await self.feed(consumer, [_raw(canary(self.service, consumer.topic, n))])
        for _ in range(2):
            for consumer in self.runtime.consumers:
                figures = Figures(consumer.consumer_name)
                for batch in edge_batches(consumer.topic, tuple(sorted(consumer.handlers))):
                    self.limit_failures += await self.check(consumer, batch, figures)

    def consumer(self, topic: str) -> Consumer:
        return next(c for c in self.runtime.consumers if c.topic == topic)

    async def feed(self, consumer: Consumer, batch: list[Raw]) -> list[ConsumerRecord[Any, Any]]:
        records = self.records(consumer, batch)
        await consumer.process(records)
        return records

    def records(self, consumer: Consumer, batch: list[Raw]) -> list[ConsumerRecord[Any, Any]]:
        """The batch as Kafka records of the consumer's topic, each at an offset of its own."""
        records = []
        for raw in batch:
            self.offsets += 1
            records.append(
                ConsumerRecord(
                    topic=self.runtime.names(consumer.topic),
                    partition=self.offsets % 3,
                    offset=self.offsets,
                    timestamp=int(time.time() * 1000),
                    timestamp_type=0,
                    key=raw.key,
                    value=raw.value,
                    checksum=None,
                    serialized_key_size=len(raw.key or b""),
                    serialized_value_size=len(raw.value or b""),
                    headers=tuple(raw.headers),
                )
            )
        return records

    async def check(
        self, consumer: Consumer, batch: list[Raw], figures: Figures, budget_s: float = HANG_BUDGET_S
    ) -> list[dict[str, Any]]:
        """Feed one hostile batch then a canary; return the properties it broke."""
        if isinstance(self.runtime.database, MemoryDatabase) and self._saved is not None:
            self.runtime.database.restore(copy.deepcopy(self._saved))
        self.dead.clear()
        self.exits.clear()
        before = _stats(consumer)
        failures: list[dict[str, Any]] = []
        self.canaries += 1
        probe = canary(self.service, consumer.topic, 1000 + self.canaries)
        probe_event = contracts.event(probe, source="/fuzz")
        started = time.perf_counter()
        records = self.records(consumer, batch)
        try:
            await asyncio.wait_for(consumer.process(records), timeout=budget_s * 4)
        except TimeoutError:
            failures.append(_failure("slow", batch, f"the batch took over {budget_s * 4:.0f}s"))
        except Exception as exc:
            failures.append(_failure("raised", batch, f"process raised {exc!r} at {_where(exc)}"))
        elapsed = time.perf_counter() - started
        figures.slowest_batch_s = max(figures.slowest_batch_s, elapsed)
        if elapsed > budget_s and not any(f["property"] == "slow" for f in failures):
            failures.append(_failure("slow", batch, f"the batch took {elapsed:.1f}s (budget {budget_s}s)"))
        after = _stats(consumer)
        try:
            await self.feed(consumer, [_raw(probe, probe_event)])
        except Exception as exc:
            failures.append(_failure("canary_not_handled", batch, f"the canary raised {exc!r}"))
        else:
            if not await self._claimed(consumer, probe_event.id):
                failures.append(_failure("canary_not_handled", batch, f"{probe.TYPE} after the batch was not handled"))
        if self.exits:
            failures.append(_failure("exited", batch, f"exit_process called: {self.exits}"))
        if not any(f["property"] in ("raised", "slow") for f in failures):  # else Kafka would redeliver it all
            failures += self._accounting(consumer, batch, records, figures)
        figures.examples += 1
        figures.inputs += len(batch)
        for name in STAT_NAMES:
            setattr(figures, name, getattr(figures, name) + after[name] - before[name])
        figures.exits += len(self.exits)
        for raw in batch:
            figures.families[raw.family.split(":")[0]] = figures.families.get(raw.family.split(":")[0], 0) + 1
        return failures

    def _accounting(
        self, consumer: Consumer, batch: list[Raw], records: list[ConsumerRecord[Any, Any]], figures: Figures
    ) -> list[dict[str, Any]]:
        failures = []
        dead = {(h.get("dlq.original_topic"), h.get("dlq.original_offset")): (v, h) for v, h in self.dead}
        skipped_types = contracts.TYPES_BY_TOPIC.get(consumer.topic, frozenset()) - set(consumer.handlers)
        for raw, rec in zip(batch, records, strict=True):
            letter = dead.get((rec.topic, str(rec.offset)))
            if letter is not None:
                value, headers = letter
                if not headers.get("dlq.reason"):
                    failures.append(_failure("dead_letter_without_reason", [raw], repr(headers)))
                if value != (rec.value or b"") and value != rec.value:
                    failures.append(_failure("dead_letter_altered", [raw], "the DLQ record's bytes differ"))
                if headers.get("dlq.kind") == "retries_exhausted":
                    failures.append(
                        _failure(
                            "handler_error",
                            [raw],
                            f"{headers.get('dlq.error_class')}: {headers.get('dlq.reason', '')[:300]}",
                        )
                    )
                continue
            header = dict(rec.headers).get("ce_type")
            ce_type = header.decode(errors="replace") if header is not None else None
            try:
                envelope, _ = contracts.parse(rec.value, consumer.topic)
            except contracts.InvalidEvent as exc:
                if ce_type not in skipped_types:
                    failures.append(_failure("invalid_not_dead_lettered", [raw], str(exc)[:300]))
            except Exception:  # the contract itself fails on it: "raised" reports the consumer's side
                pass
            else:
                if ce_type in skipped_types and envelope.type in consumer.handlers:
                    figures.skipped_by_header += 1  # a valid event its header mislabels: dropped unread
        return failures

    async def _claimed(self, consumer: Consumer, event_id: str) -> bool:
        """Whether the consumer's inbox already holds the event id (a committed, handled or
        rejected event): claiming it again, in a transaction rolled back, finds it taken."""
        fresh: set[str] = set()
        with contextlib.suppress(_RolledBack):
            async with self.runtime.database.transaction() as tx:
                fresh = await tx.claim_inbox(consumer.consumer_name, [event_id])
                raise _RolledBack
        return not fresh


class _RolledBack(Exception):
    pass


def _stats(consumer: Consumer) -> dict[str, int]:
    return {name: int(getattr(consumer.stats, name, 0)) for name in STAT_NAMES}


def _where(exc: BaseException) -> str:
    """The innermost frames of the project's code (not libraries') that the exception went through."""
    library = (sysconfig.get_paths()["stdlib"], "site-packages")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not any(p in f.filename for p in library)]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-3:]))


def _raw(payload: contracts.Payload, ev: contracts.CloudEvent | None = None) -> Raw:
    ev = ev or contracts.event(payload, source="/fuzz")
    return Raw("canary", ev.to_bytes(), contracts.key_of(payload).encode(), [("ce_type", ev.type.encode())])


def _failure(prop: str, batch: list[Raw], detail: str) -> dict[str, Any]:
    return {
        "property": prop,
        "detail": detail,
        "records": [{"family": r.family, "key": r.key, "value": r.preview(), "headers": r.headers} for r in batch][:12],
    }


SETTINGS = {
    "routing": ("routing.settings", "RoutingSettings", "routing.store", "FakeRoutingStore", "routing.app"),
    "sessions": ("sessions.settings", "SessionsSettings", "sessions.store", "FakeSessionsStore", "sessions.app"),
    "presence": ("presence.settings", "PresenceSettings", "presence.store", "FakePresenceStore", "presence.app"),
    "assist": ("assist.settings", "AssistSettings", "assist.store", "FakeAssistStore", "assist.app"),
}


def build(service: str, config_dir: Path, deployment: Deployment | None = None) -> Any:
    """The service's runtime as its handler tests build it: on a MemoryDatabase with its fake store,
    or, given a `deployment`, on that deployment's PostgreSQL database with the service's role."""
    if service not in SETTINGS:
        raise ValueError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)}")
    path = config_dir / "switchboard.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(CONFIG))
    settings_module, settings_class, store_module, fake_class, app_module = SETTINGS[service]
    cls = getattr(importlib.import_module(settings_module), settings_class)
    # no retries: in memory nothing is transient, and a retry only runs the same handler again
    common: dict[str, Any] = {"config_file": str(path), "transient_retries": 0, "log_level": "CRITICAL"}
    build_runtime = importlib.import_module(app_module).build_runtime
    if deployment is not None:
        return build_runtime(deployment.settings(cls, service, relay_enabled=False, **common))
    fake = getattr(importlib.import_module(store_module), fake_class)()
    return build_runtime(cls(**common), database=MemoryDatabase(fake))


# --- running hypothesis -----------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Only critical log lines while fuzzing (a dead letter logs a warning: thousands are expected)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.setLevel(level)


def fuzz_consumer(
    loop: asyncio.AbstractEventLoop,
    harness: Harness,
    topic: str,
    *,
    examples: int,
    stop_on_failure: bool,
    random_seed: int | None = None,
    derandomize: bool = True,
    budget_s: float = HANG_BUDGET_S,
) -> Figures:
    """Run `examples` hostile batches through one consumer. With `stop_on_failure`, the first
    broken property fails (after hypothesis shrank the batch to a minimal one) with an
    AssertionError that shows it; otherwise every failure is collected in the figures.
    `derandomize` (the default, unless a seed is given) tries the same inputs on every run."""
    consumer = harness.consumer(topic)
    figures = Figures(consumer.consumer_name)
    handled_types = tuple(sorted(consumer.handlers))
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if stop_on_failure else [])

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        derandomize=derandomize and random_seed is None,
    )
    @given(batches(topic, handled_types))
    def prop(batch: list[Raw]) -> None:
        failures = loop.run_until_complete(harness.check(consumer, batch, figures, budget_s))
        if failures and stop_on_failure:
            raise AssertionError(
                f"{consumer.consumer_name}: {failures[0]['property']}: {failures[0]['detail']}\n"
                + json.dumps(failures[0]["records"], indent=1, default=repr)[:4000]
            )
        figures.failures.extend(failures)

    for batch in classic_batches(topic, handled_types):
        prop = example(batch)(prop)
    if random_seed is not None:
        prop = seed(random_seed)(prop)
    prop()
    return figures


def run(
    examples: int = 10_000,
    services: tuple[str, ...] = SERVICES,
    *,
    random_seed: int | None = None,
    postgres: bool = False,
    budget_s: float = BENCH_BUDGET_S,
) -> dict[str, Any]:
    """The long version for `make bench`: `examples` hostile batches in all, shared evenly by the
    consumers of `services` (a batch holds 1 to 13 records, about 5 on average), after the classic
    batches each consumer always gets.
    Returns JSON-ready figures per consumer and totals; `failures` and `exits` must be 0, and every
    batch must be handled within `budget_s`. With `postgres`, the services run on a fresh database
    of the test infrastructure (tools.testing) instead of their fake stores. Call it outside an
    event loop (it runs its own)."""
    from tools import testing

    consumers = sum(len(topics.ACCESS[s].consumes) for s in services)
    per_consumer = max(1, -(-examples // consumers))
    loop = asyncio.new_event_loop()
    report: dict[str, Any] = {
        "examples_per_consumer": per_consumer,
        "database": "postgresql" if postgres else "memory",
        "batch_budget_s": budget_s,
        "consumers": {},
        "limit_failures": {},
    }
    started = time.perf_counter()
    infra = testing.start_infrastructure() if postgres else None
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet_logs():
            for service in services:
                dep = loop.run_until_complete(testing.create_deployment(infra, partitions=1)) if infra else None
                cm = Harness.open(service, Path(tmp), dep)
                harness = loop.run_until_complete(cm.__aenter__())
                report["limit_failures"][service] = {
                    "count": len(harness.limit_failures),
                    "examples": harness.limit_failures[:20],
                }
                try:
                    for topic in [c.topic for c in harness.runtime.consumers]:
                        figures = fuzz_consumer(
                            loop,
                            harness,
                            topic,
                            examples=per_consumer,
                            stop_on_failure=False,
                            random_seed=random_seed,
                            budget_s=budget_s,
                        )
                        report["consumers"][figures.consumer] = figures.as_dict()
                finally:
                    loop.run_until_complete(cm.__aexit__(None, None, None))
                    if dep is not None:
                        loop.run_until_complete(testing.drop_deployment(dep))
    finally:
        loop.close()
        if infra is not None:
            infra.close()
    per = report["consumers"].values()
    report["totals"] = {
        name: sum(f[name] for f in per)
        for name in ("examples", "inputs", "dead_lettered", "rejected", "ignored", "handled", "exits", "failures")
    }
    report["totals"]["failures"] += sum(f["count"] for f in report["limit_failures"].values())
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=10_000, help="hostile batches, shared by the consumers")
    p.add_argument("--service", action="append", choices=SERVICES, help="only these services (repeatable)")
    p.add_argument("--seed", type=int, help="a fixed seed, to reproduce a run")
    p.add_argument("--postgres", action="store_true", help="on PostgreSQL (the test infrastructure), not fakes")
    args = p.parse_args(argv)
    report = run(args.examples, tuple(args.service or SERVICES), random_seed=args.seed, postgres=args.postgres)
    print(json.dumps(report, indent=2, default=repr))
    return 0 if report["totals"]["failures"] == 0 and report["totals"]["exits"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
