"""`switchboard`: the command line for producers and operators.

  switchboard publish arrival --conversation-id c-1 --channel chat --customer-name "Ada Lovelace"
  switchboard publish arrival --file arrival.json
  switchboard tail agent-1 [--from-beginning]
  switchboard accept agent-1 OFFER_ID | reject agent-1 OFFER_ID | close agent-1 SESSION_ID
  switchboard health
  switchboard token agent-1 [--supervisor]
  switchboard routing explain CONVERSATION_ID
  switchboard config apply FILE [--dry-run]
  switchboard publish message --conversation-id ID --text TEXT [--sender customer]
  switchboard kb import DIR|FILE

Kafka and the services are found through KAFKA_BOOTSTRAP_SERVERS, SWITCHBOARD_TOPIC_PREFIX and
SWITCHBOARD_ROUTING_URL (defaults: the embedded stack of `make up`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared import contracts as c
from shared import topics
from shared.settings import EMBEDDED_KAFKA


class CliError(Exception):
    """A problem the person at the terminal can fix; printed without a traceback."""


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", EMBEDDED_KAFKA)


def _security() -> dict[str, Any]:
    """SASL/TLS options from KAFKA_SECURITY_PROTOCOL and friends (shared.kafka_security)."""
    from shared import kafka_security

    try:
        return kafka_security.aiokafka_options()
    except kafka_security.KafkaSecurityError as exc:
        raise CliError(str(exc)) from exc


def prefix() -> str:
    return os.environ.get("SWITCHBOARD_TOPIC_PREFIX", "")


async def _producer() -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(), acks="all", enable_idempotence=True, request_timeout_ms=10000, **_security()
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise CliError(
            f"cannot reach Kafka at {bootstrap()} ({exc}); is the stack up (make up)? "
            "Set KAFKA_BOOTSTRAP_SERVERS to use another broker."
        ) from exc
    return producer


async def publish(payload: c.Payload, *, source: str, event_id: str | None = None) -> c.CloudEvent:
    try:
        ev = c.event(payload, source=source, id=event_id)
    except c.ContractError as exc:
        raise CliError(f"{exc}; see docs/contract.md for the fields of {payload.TYPE}") from exc
    producer = await _producer()
    try:
        await producer.send_and_wait(prefix() + payload.TOPIC, ev.to_bytes(), key=c.key_of(payload).encode())
    finally:
        await producer.stop()
    return ev


def arrival_from_args(args: argparse.Namespace) -> tuple[c.ConversationArrived, str | None]:
    if args.file:
        path = Path(args.file)
        if not path.exists():
            raise CliError(f"no such file: {path}")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CliError(f"{path} is not JSON: {exc}") from exc
        data = doc.get("data", doc) if isinstance(doc, dict) else None
        if not isinstance(data, dict):
            raise CliError(f"{path} must hold a CloudEvent or its data object")
        event_id = doc.get("id") if "data" in doc else None
    else:
        if not args.conversation_id or not args.channel:
            raise CliError("give --conversation-id and --channel (or --file FILE)")
        data = {"conversation_id": args.conversation_id, "channel": args.channel, "priority": args.priority}
        if args.customer_name or args.customer_id:
            data["customer"] = {
                "id": args.customer_id,
                "name": args.customer_name,
                "authenticated": bool(args.customer_id),
            }
        if args.subject:
            data["subject"] = args.subject
        if args.language:
            data["language"] = args.language
        for item in args.attribute or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise CliError(f"--attribute takes KEY=VALUE, got {item!r}")
            data.setdefault("attributes", {})[key] = value
        event_id = None
    try:
        return c.ConversationArrived.model_validate(data), event_id
    except Exception as exc:
        raise CliError(f"invalid arrival: {exc}") from exc


async def tail(agent_id: str, from_beginning: bool, limit: int | None) -> None:
    consumer = AIOKafkaConsumer(
        prefix() + topics.SESSIONS,
        bootstrap_servers=bootstrap(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **_security(),
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise CliError(f"cannot reach Kafka at {bootstrap()} ({exc}); is the stack up (make up)?") from exc
    shown = 0
    try:
        async for rec in consumer:
            if rec.key is None or rec.key.decode() != agent_id:
                continue
            print(rec.value.decode(), flush=True)
            shown += 1
            if limit and shown >= limit:
                return
    finally:
        await consumer.stop()


async def health() -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), request_timeout_ms=10000, **_security())
    try:
        await admin.start()
    except KafkaError as exc:
        raise CliError(f"cannot reach Kafka at {bootstrap()} ({exc}); is the stack up (make up)?") from exc
    try:
        existing = set(await admin.list_topics())
        wanted = [prefix() + s.name for s in topics.all_topic_specs()]
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix())]
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), **_security())
        await consumer.start()
        report: dict[str, Any] = {
            "bootstrap": bootstrap(),
            "missing_topics": [t for t in wanted if t not in existing],
            "groups": {},
        }
        try:
            for group in sorted(groups):
                offsets = await admin.list_consumer_group_offsets(group)
                if not offsets:
                    continue
                ends = await consumer.end_offsets(list(offsets))
                lag = sum(max(ends[tp] - om.offset, 0) for tp, om in offsets.items())
                report["groups"][group] = {"lag": lag, "partitions": len(offsets)}
            dlqs = [t for t in wanted if t.endswith(topics.DLQ_SUFFIX) and t in existing]
            parts = await _partitions(admin, dlqs)
            ends = await consumer.end_offsets(parts) if parts else {}
            begins = await consumer.beginning_offsets(parts) if parts else {}
            report["dead_letters"] = {t: sum(ends[tp] - begins[tp] for tp in parts if tp.topic == t) for t in dlqs}
        finally:
            await consumer.stop()
        return report
    finally:
        await admin.close()


async def _partitions(admin: Any, names: list[str]) -> list[Any]:
    from aiokafka import TopicPartition

    described = await admin.describe_topics(names) if names else []
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


def supervisor_token(action: str) -> str:
    """The token the CLI acts with: SWITCHBOARD_TOKEN, or (development only, with the embedded
    secret) a short-lived supervisor token minted here. The services check the role, not the CLI."""
    from shared.auth import Auth

    token = os.environ.get("SWITCHBOARD_TOKEN")
    if token:
        return token
    auth = Auth.from_env()
    production = os.environ.get("SWITCHBOARD_ENV", "").strip().lower() == "production"
    if production or auth.oidc:
        raise CliError(
            f"{action} needs a supervisor's token: set SWITCHBOARD_TOKEN (from your identity provider; "
            "the token must carry the supervisor role)"
        )
    return auth.mint("switchboard-cli", ("supervisor",), 600)


def gateway_command(agent_id: str, command: dict[str, Any], action: str) -> dict[str, Any]:
    """Sends one command for `agent_id` through the sessions gateway, which checks that the token
    is the agent's own or a supervisor's and publishes it (POST /agents/{id}/commands)."""
    import httpx

    base = os.environ.get("SWITCHBOARD_GATEWAY_URL", "http://127.0.0.1:18080")
    token = supervisor_token(action)
    try:
        r = httpx.post(
            f"{base}/agents/{agent_id}/commands",
            json=command,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the gateway at {base} ({exc}); set SWITCHBOARD_GATEWAY_URL") from exc
    if r.status_code != 202:
        try:
            reason = r.json().get("error", r.text)
        except ValueError:
            reason = r.text
        raise CliError(f"the gateway refused {action} ({r.status_code}): {reason}")
    result: dict[str, Any] = r.json()
    return result


def routing_explain(conversation_id: str) -> dict[str, Any]:
    import httpx

    base = os.environ.get("SWITCHBOARD_ROUTING_URL", "http://127.0.0.1:18081")
    try:
        r = httpx.get(
            f"{base}/conversations/{conversation_id}/explain",
            headers={"Authorization": f"Bearer {supervisor_token('routing explain')}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach routing at {base} ({exc}); set SWITCHBOARD_ROUTING_URL") from exc
    if r.status_code == 404:
        raise CliError(r.json().get("error", f"routing has no record of {conversation_id!r}"))
    if r.status_code in (401, 403):
        raise CliError(f"routing refused ({r.status_code}): {r.json().get('error', r.text)}")
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


def config_apply(path: str, dry_run: bool) -> dict[str, Any]:
    import httpx

    file = Path(path)
    if not file.exists():
        raise CliError(f"no such file: {file}")
    text = file.read_text()
    try:
        from routing import config as routing_config

        routing_config.parse(text)  # the same validation routing runs, with line numbers, before sending
    except routing_config.ConfigError as exc:
        raise CliError(f"{file} is not a valid routing configuration:\n" + "\n".join(exc.problems)) from exc
    base = os.environ.get("SWITCHBOARD_ROUTING_URL", "http://127.0.0.1:18081")
    token = supervisor_token("config apply")
    try:
        r = httpx.post(
            f"{base}/admin/config",
            params={"dry_run": "true" if dry_run else "false"},
            content=text,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach routing at {base} ({exc}); set SWITCHBOARD_ROUTING_URL") from exc
    if r.status_code != 200:
        body = r.json()
        raise CliError(
            f"routing refused the configuration ({r.status_code}): "
            + "\n".join(body.get("problems") or [body.get("error", r.text)])
        )
    result: dict[str, Any] = r.json()
    return result


def kb_import(path: str) -> dict[str, Any]:
    import httpx

    from assist.domain import parse_article

    root = Path(path)
    if not root.exists():
        raise CliError(f"no such file or folder: {root}")
    files = sorted(p for p in (root.glob("*") if root.is_dir() else [root]) if p.suffix in (".md", ".json"))
    if not files:
        raise CliError(f"no .md or .json articles in {root}")
    docs = []
    for f in files:
        try:
            doc = parse_article(f.name, f.read_text())
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        docs.extend(doc if isinstance(doc, list) else [doc])
    base = os.environ.get("SWITCHBOARD_ASSIST_URL", "http://127.0.0.1:18083")
    token = supervisor_token("kb import")
    try:
        r = httpx.post(f"{base}/kb/articles", json=docs, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach assist at {base} ({exc}); set SWITCHBOARD_ASSIST_URL") from exc
    if r.status_code != 200:
        raise CliError(f"assist refused the articles ({r.status_code}): {r.json().get('error', r.text)}")
    result: dict[str, Any] = r.json()
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard", description="Switchboard command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish", help="publish an event as a producer would")
    pub_sub = pub.add_subparsers(dest="what", required=True)
    arr = pub_sub.add_parser("arrival", help="conversation.arrived on conversations.v1")
    arr.add_argument("--file", help="a CloudEvent JSON file (or just its data object)")
    arr.add_argument("--conversation-id")
    arr.add_argument("--channel")
    arr.add_argument("--customer-name")
    arr.add_argument("--customer-id")
    arr.add_argument("--subject")
    arr.add_argument("--language")
    arr.add_argument("--priority", type=int, default=0)
    arr.add_argument("--attribute", action="append", metavar="KEY=VALUE")
    arr.add_argument("--source", default="/switchboard/cli")
    msg = pub_sub.add_parser("message", help="message.posted on conversations.messages.v1 (a channel's message)")
    msg.add_argument("--conversation-id", required=True)
    msg.add_argument("--text", required=True)
    msg.add_argument("--sender", choices=["customer", "agent", "supervisor", "bot"], default="customer")
    msg.add_argument("--sender-id")
    msg.add_argument("--source", default="/switchboard/cli")
    t = sub.add_parser("tail", help="print one agent's sessions.v1 events as they come")
    t.add_argument("agent_id")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--limit", type=int)
    for name, help_ in (("accept", "accept an offer"), ("reject", "reject an offer")):
        s = sub.add_parser(name, help=f"{help_} on an agent's behalf")
        s.add_argument("agent_id")
        s.add_argument("offer_id")
    cl = sub.add_parser("close", help="close a session on an agent's behalf (confirmed)")
    cl.add_argument("agent_id")
    cl.add_argument("session_id")
    sub.add_parser("health", help="topics, consumer-group lag and dead letters")
    tk = sub.add_parser("token", help="mint a gateway token (embedded secret or SESSIONS_GATEWAY_SECRET)")
    tk.add_argument("agent_id")
    tk.add_argument("--supervisor", action="store_true", help="may read every agent's workspace")
    tk.add_argument("--hours", type=int, default=12)
    tr = sub.add_parser("transfer", help="transfer a conversation to a queue or an agent")
    tr.add_argument("conversation_id")
    dest = tr.add_mutually_exclusive_group(required=True)
    dest.add_argument("--to-queue")
    dest.add_argument("--to-agent")
    tr.add_argument("--by", default="supervisor", help="who asks (recorded)")
    cf = sub.add_parser("config", help="routing configuration")
    cfs = cf.add_subparsers(dest="config_cmd", required=True)
    ap = cfs.add_parser("apply", help="validate a YAML file and apply its routing section atomically")
    ap.add_argument("file")
    ap.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    kb = sub.add_parser("kb", help="knowledge base")
    kbs = kb.add_subparsers(dest="kb_cmd", required=True)
    kbi = kbs.add_parser("import", help="import Markdown (front matter) or JSON articles from a file or folder")
    kbi.add_argument("path")
    r = sub.add_parser("routing", help="routing tools")
    rs = r.add_subparsers(dest="routing_cmd", required=True)
    ex = rs.add_parser("explain", help="the routing history of a conversation")
    ex.add_argument("conversation_id")
    from tools import dlq, provision

    provision.add_parser(sub)
    dlq.add_parser(sub)
    return p


def run(args: argparse.Namespace) -> int:
    if args.cmd == "provision":
        from tools import provision

        return provision.run(args)
    if args.cmd == "dlq":
        from tools import dlq

        return asyncio.run(dlq.run(args))
    if args.cmd == "publish":
        published: c.Payload
        if args.what == "message":
            published, event_id = (
                c.MessagePosted(
                    conversation_id=args.conversation_id,
                    sender=args.sender,
                    sender_id=args.sender_id,
                    text=args.text,
                ),
                None,
            )
        else:
            published, event_id = arrival_from_args(args)
        ev = asyncio.run(publish(published, source=args.source, event_id=event_id))
        print(
            json.dumps(
                {
                    "published": ev.type,
                    "id": ev.id,
                    "topic": prefix() + published.TOPIC,
                    "key": published.conversation_id,  # type: ignore[attr-defined]
                }
            )
        )
    elif args.cmd == "tail":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(tail(args.agent_id, args.from_beginning, args.limit))
    elif args.cmd in ("accept", "reject", "close"):
        payload: c.Payload
        if args.cmd == "accept":
            payload = c.AcceptOffer(agent_id=args.agent_id, offer_id=args.offer_id)
        elif args.cmd == "reject":
            payload = c.RejectOffer(agent_id=args.agent_id, offer_id=args.offer_id)
        else:
            payload = c.CloseSession(agent_id=args.agent_id, session_id=args.session_id, confirmed=True)
        command = {"type": payload.TYPE, "id": str(uuid.uuid4()), "data": payload.model_dump(exclude_none=True)}
        result = gateway_command(args.agent_id, command, args.cmd)
        print(
            json.dumps(
                {
                    "published": result["accepted"],
                    "id": result["command_id"],
                    "agent_id": args.agent_id,
                    "note": "watch `switchboard tail AGENT` for the outcome or command.rejected",
                }
            )
        )
    elif args.cmd == "token":
        from shared.auth import Auth

        roles = ("agent", "supervisor") if args.supervisor else ("agent",)
        print(Auth.from_env().mint(args.agent_id, roles, ttl_s=args.hours * 3600))
    elif args.cmd == "health":
        print(json.dumps(asyncio.run(health()), indent=2))
    elif args.cmd == "transfer":
        transfer = c.TransferWork(
            conversation_id=args.conversation_id, agent_id=args.by, to_queue=args.to_queue, to_agent=args.to_agent
        )
        command = {"type": transfer.TYPE, "id": str(uuid.uuid4()), "data": transfer.model_dump(exclude_none=True)}
        result = gateway_command(args.by, command, "transfer")
        print(
            json.dumps(
                {
                    "published": result["accepted"],
                    "id": result["command_id"],
                    "conversation_id": args.conversation_id,
                    "note": "switchboard routing explain CONVERSATION shows the outcome",
                }
            )
        )
    elif args.cmd == "config":
        result = config_apply(args.file, args.dry_run)
        for line in result.get("changes") or ["(no changes)"]:
            print(line)
        print("dry run: nothing applied" if args.dry_run else "applied")
    elif args.cmd == "kb":
        print(json.dumps(kb_import(args.path)))
    elif args.cmd == "routing":
        print(json.dumps(routing_explain(args.conversation_id), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
