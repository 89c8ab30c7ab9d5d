"""`switchboard dlq`: dead letters an operator can act on.

  switchboard dlq list [--topic T] [--consumer C] [--since 2h|ISO-TIME] [--limit N] [--json]
  switchboard dlq show TOPIC PARTITION OFFSET [--json]
  switchboard dlq replay (--topic T (--all | --offset P:O ...) | --consumer C) [--since ...] [--dry-run] [--force]

A dead letter is the original record on `TOPIC.dlq`, with headers the consumer wrote
(`shared.messaging.Consumer.dead_letter`): who dead-lettered it, why, and where it came from.
Replay re-publishes it to its original topic with its original key and a `dlq.replayed_from`
header; consumers skip events they already handled (inbox on the CloudEvent `id`), so replaying
twice does no harm. A record is replayed only to the topic whose DLQ holds it, once however many
consumers dead-lettered it, and not while it is still an invalid event (unless --force). Kafka
comes from KAFKA_BOOTSTRAP_SERVERS and SWITCHBOARD_TOPIC_PREFIX (and the Kafka security settings
of `shared.kafka_security`, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from shared import contracts, topics
from shared.settings import EMBEDDED_KAFKA

REPLAYED_FROM = "dlq.replayed_from"
REPLAYED_AT = "dlq.replayed_at"
SCAN_TIMEOUT_S = 60.0


class DlqError(Exception):
    """A problem the person at the terminal can fix; printed without a traceback."""


@dataclass(frozen=True)
class Target:
    """The Kafka cluster and deployment (topic prefix) the command works on."""

    bootstrap: str
    prefix: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Target:
        return cls(
            os.environ.get("KAFKA_BOOTSTRAP_SERVERS", EMBEDDED_KAFKA),
            os.environ.get("SWITCHBOARD_TOPIC_PREFIX", ""),
            security_options(),
        )

    def real(self, name: str) -> str:
        return self.prefix + name

    def design_name(self, real: str) -> str:
        return real[len(self.prefix) :] if self.prefix and real.startswith(self.prefix) else real


def security_options() -> dict[str, Any]:
    """aiokafka keyword options for SASL/TLS from the environment, when the project provides them."""
    try:
        module = importlib.import_module("shared.kafka_security")
    except ModuleNotFoundError:
        return {}
    try:
        return dict(module.aiokafka_options())
    except ValueError as exc:  # KafkaSecurityError, or a setting pydantic refused
        raise DlqError(str(exc)) from exc


@dataclass
class DeadLetter:
    """One record of a DLQ topic and what its headers say about it."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def from_record(cls, rec: ConsumerRecord[Any, Any]) -> DeadLetter:
        return cls(
            rec.topic,
            rec.partition,
            rec.offset,
            datetime.fromtimestamp(rec.timestamp / 1000, UTC),
            rec.key,
            rec.value or b"",
            [(k, v or b"") for k, v in rec.headers or ()],
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def where(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def original_topic(self) -> str:
        """The topic the record was consumed from (the DLQ's name without `.dlq` if no header says)."""
        return self.header("dlq.original_topic") or self.topic.removesuffix(topics.DLQ_SUFFIX)

    @property
    def time(self) -> datetime:
        """When it was dead-lettered (the consumer's header, else the record's timestamp)."""
        stamp = self.header("dlq.time")
        if stamp:
            try:
                parsed = datetime.fromisoformat(stamp)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except ValueError:
                pass
        return self.timestamp

    def event(self) -> dict[str, Any] | None:
        """The body as a JSON object, if it is one."""
        try:
            doc = json.loads(self.value)
        except (UnicodeDecodeError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def problem(self, target: Target) -> str | None:
        """Why the body is still not a valid event of its original topic (None when it is)."""
        try:
            contracts.parse(self.value, target.design_name(self.original_topic))
        except contracts.InvalidEvent as exc:
            return str(exc)
        return None

    def summary(self) -> dict[str, Any]:
        doc = self.event() or {}
        original_partition = self.header("dlq.original_partition")
        original_offset = self.header("dlq.original_offset")
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "time": self.time.isoformat(),
            "consumer": self.header("dlq.consumer"),
            "kind": self.header("dlq.kind"),
            "reason": self.header("dlq.reason"),
            "error_class": self.header("dlq.error_class"),
            "original": {
                "topic": self.original_topic,
                "partition": int(original_partition) if original_partition and original_partition.isdigit() else None,
                "offset": int(original_offset) if original_offset and original_offset.isdigit() else None,
            },
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "event_id": doc.get("id") if isinstance(doc.get("id"), str) else None,
            "event_type": doc.get("type") if isinstance(doc.get("type"), str) else None,
            "size": len(self.value),
            "replayed_from": self.header(REPLAYED_FROM),
        }


# --- naming and filters ----------------------------------------------------------------------


KNOWN = tuple(spec.name for spec in topics.TOPICS)


def dlq_topic(target: Target, name: str) -> str:
    """The real DLQ topic for a name given as `routing.v1`, `routing.v1.dlq`, or either prefixed."""
    design = target.design_name(name).removesuffix(topics.DLQ_SUFFIX)
    if design not in KNOWN:
        raise DlqError(
            f"unknown topic {name!r}: expected one of {', '.join(KNOWN)} (with or without {topics.DLQ_SUFFIX})"
        )
    return target.real(topics.dlq(design))


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` (ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    m = _RELATIVE.match(text)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DlqError(
            f"--since {text!r}: expected a duration such as 30m, 2h, 7d or an ISO time such as 2026-11-21T10:00:00Z"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_position(text: str, partitions: int) -> tuple[int, int]:
    """`PARTITION:OFFSET`, or just `OFFSET` on a single-partition DLQ."""
    parts = text.split(":")
    try:
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
        if len(parts) == 1 and partitions == 1:
            return 0, int(parts[0])
    except ValueError:
        pass
    if len(parts) == 1 and partitions > 1:
        raise DlqError(
            f"--offset {text!r}: this DLQ has {partitions} partitions; give PARTITION:OFFSET (e.g. 0:{text})"
        )
    raise DlqError(f"--offset {text!r}: expected PARTITION:OFFSET such as 0:17")


# --- Kafka ------------------------------------------------------------------------------------


def _unreachable(target: Target, exc: BaseException) -> DlqError:
    return DlqError(
        f"cannot reach Kafka at {target.bootstrap} ({exc}); is the stack up (make up)? "
        "Set KAFKA_BOOTSTRAP_SERVERS (and the Kafka security settings) to use another broker."
    )


class Reader:
    """Reads DLQ topics from the beginning to their current end, without a consumer group."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=target.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=15000,
            **target.options,
        )

    async def __aenter__(self) -> Reader:
        try:
            await self.consumer.start()
        except (KafkaError, OSError) as exc:
            await self.consumer.stop()
            raise _unreachable(self.target, exc) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def existing(self) -> set[str]:
        return set(await self.consumer.topics())

    async def require(self, name: str) -> None:
        if name not in await self.existing():
            hint = (
                f"SWITCHBOARD_TOPIC_PREFIX is {self.target.prefix!r}; is that this deployment's prefix?"
                if self.target.prefix
                else "set SWITCHBOARD_TOPIC_PREFIX if this deployment uses a topic prefix"
            )
            raise DlqError(f"topic {name} does not exist on {self.target.bootstrap}; {hint}")

    async def partitions(self, name: str) -> list[TopicPartition]:
        found = self.consumer.partitions_for_topic(name)
        if found is None:  # not in the client's metadata yet: a group-less client tracks no topics
            await self.consumer._client.force_metadata_update()
            found = self.consumer.partitions_for_topic(name)
        return [TopicPartition(name, p) for p in sorted(found or ())]

    async def retained(self, names: Sequence[str]) -> dict[TopicPartition, tuple[int, int]]:
        """Per partition, the offsets of the first retained record and of the next one to come."""
        parts = [tp for name in names for tp in await self.partitions(name)]
        if not parts:
            return {}
        begins = await self.consumer.beginning_offsets(parts)
        ends = await self.consumer.end_offsets(parts)
        return {tp: (begins[tp], ends[tp]) for tp in parts}

    async def scan(self, names: Sequence[str]) -> list[DeadLetter]:
        """Every record of `names` up to the end they had when the scan began, in offset order."""
        ranges = {tp: r for tp, r in (await self.retained(names)).items() if r[1] > r[0]}
        out: list[DeadLetter] = []
        if not ranges:
            return out
        self.consumer.assign(list(ranges))
        for tp, (begin, _) in ranges.items():
            self.consumer.seek(tp, begin)
        pending = dict(ranges)
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while pending:
            if time.monotonic() > deadline:
                left = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in pending)
                raise DlqError(f"timed out reading {left} after {SCAN_TIMEOUT_S:.0f}s; is the broker overloaded?")
            batch = await self.consumer.getmany(*pending, timeout_ms=500)
            for tp, recs in batch.items():
                end = pending[tp][1] if tp in pending else -1
                out.extend(DeadLetter.from_record(r) for r in recs if r.offset < end)
            for tp in list(pending):
                if await self.consumer.position(tp) >= pending[tp][1]:
                    del pending[tp]
        out.sort(key=lambda d: (d.topic, d.partition, d.offset))
        return out

    async def one(self, name: str, partition: int, offset: int) -> DeadLetter:
        await self.require(name)
        tp = TopicPartition(name, partition)
        known = await self.partitions(name)
        if tp not in known:
            raise DlqError(f"{name} has partitions 0..{len(known) - 1}; there is no partition {partition}")
        begin, end = (await self.retained([name]))[tp]
        if not begin <= offset < end:
            span = f"offsets {begin}..{end - 1}" if end > begin else "no records"
            raise DlqError(f"no record at {name}:{partition}:{offset}; that partition retains {span}")
        self.consumer.assign([tp])
        self.consumer.seek(tp, offset)
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while time.monotonic() < deadline:
            batch = await self.consumer.getmany(tp, timeout_ms=500)
            for rec in batch.get(tp, []):
                if rec.offset == offset:
                    return DeadLetter.from_record(rec)
                if rec.offset > offset:
                    raise DlqError(f"no record at {name}:{partition}:{offset} (a transaction marker or compacted away)")
        raise DlqError(f"timed out reading {name}:{partition}:{offset}")


# --- the three commands ---------------------------------------------------------------------


def _select(
    letters: list[DeadLetter], *, consumer: str | None = None, since: datetime | None = None
) -> list[DeadLetter]:
    return [
        d
        for d in letters
        if (consumer is None or d.header("dlq.consumer") == consumer) and (since is None or d.time >= since)
    ]


async def list_dead_letters(
    target: Target,
    *,
    topic: str | None = None,
    consumer: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Per DLQ topic: records retained, those matching the filters, and the summaries of the
    latest `limit` of them (all by default)."""
    chosen = dlq_topic(target, topic) if topic is not None else None
    async with Reader(target) as reader:
        if chosen is not None:
            names = [chosen]
            await reader.require(chosen)
        else:
            existing = await reader.existing()
            names = [target.real(topics.dlq(t)) for t in KNOWN if target.real(topics.dlq(t)) in existing]
            if not names:
                raise DlqError(
                    f"no DLQ topics on {target.bootstrap} with prefix {target.prefix!r}; "
                    "were the topics created (make up), and is SWITCHBOARD_TOPIC_PREFIX right?"
                )
        retained = await reader.retained(names)
        letters = _select(await reader.scan(names), consumer=consumer, since=since)
    report: dict[str, Any] = {"bootstrap": target.bootstrap, "prefix": target.prefix, "topics": {}}
    for name in names:
        mine = sorted((d for d in letters if d.topic == name), key=lambda d: d.time)
        total = sum(end - begin for tp, (begin, end) in retained.items() if tp.topic == name)
        shown = mine[-limit:] if limit else mine
        report["topics"][name] = {"retained": total, "count": len(mine), "records": [d.summary() for d in shown]}
    return report


async def show(target: Target, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One dead letter in full: headers, key and body (parsed when it is JSON)."""
    name = dlq_topic(target, topic)
    async with Reader(target) as reader:
        letter = await reader.one(name, partition, offset)
    body: Any = letter.event()
    if body is None:
        try:
            body = json.loads(letter.value)
        except (UnicodeDecodeError, ValueError):
            body = None
    return {
        **letter.summary(),
        "headers": {k: v.decode(errors="replace") for k, v in letter.headers},
        "body": body,
        "body_text": None if body is not None else letter.value.decode(errors="replace"),
        "still_invalid": letter.problem(target),
    }


@dataclass
class ReplayOutcome:
    replayed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "replayed": self.replayed, "skipped": self.skipped}


async def replay(
    target: Target,
    *,
    topic: str | None = None,
    everything: bool = False,
    positions: Sequence[str] = (),
    consumer: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> ReplayOutcome:
    """Re-publish the chosen dead letters to their original topics, original key, in DLQ order.

    Records whose body is still not a valid event are skipped unless `force`: every consumer of the
    topic would only dead-letter them again."""
    if topic is None and consumer is None:
        raise DlqError("choose what to replay: --topic T with --all or --offset P:O, or --consumer SERVICE:TOPIC")
    if topic is not None and consumer is None and not everything and not positions:
        raise DlqError(f"--topic {topic}: add --all to replay every dead letter, or --offset P:O for chosen ones")
    if consumer is not None and not re.fullmatch(r"[a-z_]+:[A-Za-z0-9._-]+", consumer):
        raise DlqError(
            f"--consumer {consumer!r}: expected SERVICE:TOPIC as in the dlq.consumer header, "
            "e.g. routing:conversations.v1"
        )
    if positions and topic is None:
        raise DlqError("--offset needs --topic: offsets are per DLQ topic")
    named = dlq_topic(target, topic) if topic is not None else None
    async with Reader(target) as reader:
        if named is not None:
            names = [named]
            await reader.require(named)
        else:
            existing = await reader.existing()
            names = [target.real(topics.dlq(t)) for t in KNOWN if target.real(topics.dlq(t)) in existing]
        if positions:
            wanted = {parse_position(p, len(await reader.partitions(names[0]))) for p in positions}
            found = [await reader.one(names[0], p, o) for p, o in sorted(wanted)]
        else:
            found = await reader.scan(names)
    letters = _select(found, consumer=consumer, since=since)
    if not letters:
        where = ", ".join(names) or "(no DLQ topics: is SWITCHBOARD_TOPIC_PREFIX right?)"
        if consumer is not None:
            seen = sorted({d.header("dlq.consumer") or "?" for d in found})
            others = f"; consumers with dead letters there: {', '.join(seen)}" if seen else ""
            raise DlqError(f"no dead letters by {consumer} on {where}{others}; nothing to replay")
        raise DlqError(f"no dead letters{' since --since' if since else ''} on {where}; nothing to replay")
    outcome = ReplayOutcome(dry_run=dry_run)
    chosen: list[DeadLetter] = []
    originals: set[tuple[str, str, str]] = set()
    for letter in letters:
        origin = (
            letter.original_topic,
            letter.header("dlq.original_partition") or "",
            letter.header("dlq.original_offset") or "",
        )
        if origin[1] and origin[2] and origin in originals:  # several consumers dead-lettered the same record
            outcome.skipped.append({**letter.summary(), "skipped": "the same original record is replayed once"})
            continue
        originals.add(origin)
        if letter.header("dlq.kind") == "outbox_oversize":  # a notice about our own event, not a record
            outcome.skipped.append(
                {
                    **letter.summary(),
                    "skipped": "a notice that one of our events was too large for the broker: "
                    "nothing to replay (the outbox row, marked dead, says which)",
                }
            )
            continue
        home = letter.topic.removesuffix(topics.DLQ_SUFFIX)
        if letter.original_topic != home:  # replay writes with the operator's rights: only back home
            outcome.skipped.append(
                {**letter.summary(), "skipped": f"its header names {letter.original_topic!r} as its topic, not {home}"}
            )
            continue
        problem = letter.problem(target)
        if problem is not None and not force:
            outcome.skipped.append(
                {**letter.summary(), "skipped": f"still not a valid event ({problem}); fix the producer, or --force"}
            )
            continue
        chosen.append(letter)
    if dry_run or not chosen:
        outcome.replayed = [{**d.summary(), "to": d.original_topic} for d in chosen]
        return outcome
    producer = AIOKafkaProducer(
        bootstrap_servers=target.bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=15000,
        **target.options,
    )
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        raise _unreachable(target, exc) from exc
    try:
        for letter in chosen:
            await producer.send_and_wait(
                letter.original_topic, letter.value, key=letter.key, headers=replay_headers(letter)
            )
            outcome.replayed.append({**letter.summary(), "to": letter.original_topic})
    finally:
        await producer.stop()
    return outcome


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The record's own headers (not the DLQ's), its CloudEvent type, and where the replay came from."""
    kept = [(k, v) for k, v in letter.headers if not k.startswith("dlq.") and k != "ce_type"]
    doc = letter.event() or {}
    if isinstance(doc.get("type"), str):
        kept.append(("ce_type", doc["type"].encode(errors="replace")))
    kept.append((REPLAYED_FROM, letter.where.encode()))
    kept.append((REPLAYED_AT, datetime.now(UTC).isoformat().encode()))
    return kept


# --- command line -----------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds `dlq list | show | replay` to a command line's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser("dlq", help="list, show and replay dead letters")
    sub = p.add_subparsers(dest="dlq_cmd", required=True)
    ls = sub.add_parser("list", help="dead letters per DLQ topic, with where they came from and why")
    ls.add_argument("--topic", help="one topic (e.g. conversations.v1 or conversations.v1.dlq); default: all")
    ls.add_argument("--consumer", help="only those dead-lettered by SERVICE:TOPIC (e.g. routing:conversations.v1)")
    ls.add_argument("--since", help="only those dead-lettered since: 30m, 2h, 7d or an ISO time")
    ls.add_argument("--limit", type=int, default=100, help="show the latest N per topic (default 100; 0: all)")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    sh = sub.add_parser("show", help="one dead letter: headers, key and body")
    sh.add_argument("topic", help="the topic or its DLQ, e.g. conversations.v1.dlq")
    sh.add_argument("partition", type=int)
    sh.add_argument("offset", type=int)
    sh.add_argument("--json", action="store_true")
    rp = sub.add_parser("replay", help="re-publish dead letters to their original topic (consumers dedupe)")
    rp.add_argument("--topic", help="the topic or its DLQ")
    rp.add_argument("--all", action="store_true", help="every dead letter of --topic")
    rp.add_argument("--offset", action="append", default=[], metavar="P:O", help="PARTITION:OFFSET (repeatable)")
    rp.add_argument("--consumer", help="those dead-lettered by SERVICE:TOPIC")
    rp.add_argument("--since", help="only those dead-lettered since: 30m, 2h, 7d or an ISO time")
    rp.add_argument("--dry-run", action="store_true", help="show what would be replayed, publish nothing")
    rp.add_argument("--force", action="store_true", help="replay records that are still not valid events too")
    rp.add_argument("--json", action="store_true")
    return p


def _line(d: dict[str, Any]) -> str:
    o = d["original"]
    origin = f"{o['topic']}[{o['partition']}]@{o['offset']}" if o["partition"] is not None else o["topic"]
    ident = f" {d['event_type']} {d['event_id']}" if d["event_id"] else f" ({d['size']} bytes, not a CloudEvent)"
    return (
        f"  {d['partition']}:{d['offset']}  {d['time'][:19]}Z  {d['consumer'] or '?'}  {d['kind'] or '?'}"
        f"  from {origin}  key={d['key']}{ident}\n      reason: {d['reason'] or '(none given)'}"
    )


def render_list(report: dict[str, Any]) -> str:
    lines = []
    for name, t in report["topics"].items():
        if t["retained"] == 0:
            lines.append(f"{name}: empty")
            continue
        shown = "" if t["count"] == t["retained"] else f" ({t['count']} match the filters)"
        lines.append(f"{name}: {t['retained']} dead letter{'s' if t['retained'] != 1 else ''}{shown}")
        if len(t["records"]) < t["count"]:
            lines.append(f"  ... and {t['count'] - len(t['records'])} earlier (raise --limit to see them)")
        lines.extend(_line(d) for d in t["records"])
    if not any(t["count"] for t in report["topics"].values()):
        lines.append(
            "no dead letters" + (" match the filters" if any(t["retained"] for t in report["topics"].values()) else "")
        )
    return "\n".join(lines)


def render_show(d: dict[str, Any]) -> str:
    lines = [f"{d['topic']}:{d['partition']}:{d['offset']}", _line(d).strip(), "headers:"]
    lines += [f"  {k}: {v}" for k, v in d["headers"].items()]
    lines.append(f"key: {d['key']}")
    if d["body"] is not None:
        lines.append("body:")
        lines.append(json.dumps(d["body"], indent=2, ensure_ascii=False))
    else:
        lines.append(f"body ({d['size']} bytes, not JSON):")
        lines.append(d["body_text"])
    lines.append(
        f"still invalid: {d['still_invalid']}" if d["still_invalid"] else "the body is a valid event of its topic now"
    )
    return "\n".join(lines)


def render_replay(outcome: ReplayOutcome) -> str:
    verb = "would replay" if outcome.dry_run else "replayed"
    lines = [
        f"{verb} {d['topic']}:{d['partition']}:{d['offset']} -> {d['to']} key={d['key']} id={d['event_id']}"
        for d in outcome.replayed
    ]
    lines += [f"skipped {d['topic']}:{d['partition']}:{d['offset']}: {d['skipped']}" for d in outcome.skipped]
    lines.append(
        f"{len(outcome.replayed)} {verb}, {len(outcome.skipped)} skipped"
        + ("" if outcome.dry_run else "; consumers skip events they already handled (same CloudEvent id)")
    )
    return "\n".join(lines)


async def run(args: argparse.Namespace, target: Target | None = None) -> int:
    """Runs one parsed `dlq` command; prints its result, or the problem, and returns the exit code."""
    try:
        target = target or Target.from_env()
        since = parse_since(args.since) if getattr(args, "since", None) else None
        if args.dlq_cmd == "list":
            report = await list_dead_letters(
                target, topic=args.topic, consumer=args.consumer, since=since, limit=args.limit or None
            )
            print(json.dumps(report, indent=2) if args.json else render_list(report))
        elif args.dlq_cmd == "show":
            shown = await show(target, args.topic, args.partition, args.offset)
            print(json.dumps(shown, indent=2, ensure_ascii=False) if args.json else render_show(shown))
        else:
            outcome = await replay(
                target,
                topic=args.topic,
                everything=args.all,
                positions=args.offset,
                consumer=args.consumer,
                since=since,
                dry_run=args.dry_run,
                force=args.force,
            )
            print(json.dumps(outcome.as_dict(), indent=2) if args.json else render_replay(outcome))
    except DlqError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.dlq list ...` (the same as `switchboard dlq list ...`)."""
    return asyncio.run(run(build_parser().parse_args(["dlq", *(sys.argv[1:] if argv is None else argv)])))


if __name__ == "__main__":
    sys.exit(main())
