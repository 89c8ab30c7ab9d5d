"""The demo's agents: signed in and kept alive the way a client would keep them.

`python -m tools.demo devices` is what `make up` starts next to the services: it signs each demo
agent in with a device `demo` and sends that device's heartbeat every `--every` seconds until it is
stopped (`make down`), so the demo agents stay available however long a newcomer takes to read the
walk-through. An agent who opens the workspace page adds a device of its own (the gateway beats for
it); closing the page leaves the demo device, and so the agent, signed in."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path

import yaml
from aiokafka import AIOKafkaProducer

from shared import contracts as c
from shared.kafka_security import aiokafka_options
from shared.settings import EMBEDDED_KAFKA

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "deploy/demo/switchboard.yaml"
DEVICE = "demo"


def demo_agents(path: str | Path | None = None) -> list[str]:
    cfg = yaml.safe_load(Path(path or DEMO_CONFIG).read_text()) or {}
    return list((cfg.get("presence") or {}).get("sign_in") or [])


async def _send(producer: AIOKafkaProducer, prefix: str, payloads: list[c.AgentPayload]) -> None:
    for payload in payloads:
        ev = c.event(payload, source=f"/switchboard/demo/{DEVICE}")
        await producer.send_and_wait(
            prefix + payload.TOPIC,
            ev.to_bytes(),
            key=payload.agent_id.encode(),
            headers=[("ce_type", ev.type.encode())],
        )


async def keep_devices_alive(bootstrap: str, prefix: str, every_s: float, stop: asyncio.Event) -> None:
    """Sign the demo agents in, then beat for their demo device until `stop` is set; a broker that
    is briefly away is retried, not fatal."""
    agents = demo_agents()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **aiokafka_options())
    await producer.start()
    try:
        await _send(producer, prefix, [c.AgentSignedIn(agent_id=a, device_id=DEVICE) for a in agents])
        print(f"demo devices: {', '.join(agents)} signed in; a heartbeat every {every_s:.0f}s", flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                break
            try:
                await _send(producer, prefix, [c.AgentHeartbeat(agent_id=a, device_id=DEVICE) for a in agents])
            except Exception as exc:  # the broker restarting: the next beat tries again
                print(f"demo devices: heartbeat failed ({exc!r}); retrying", flush=True)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.demo", description="the demo agents' devices")
    p.add_argument("command", choices=["devices"])
    p.add_argument("--every", type=float, default=15.0, help="seconds between heartbeats (presence times out at 60)")
    args = p.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", EMBEDDED_KAFKA)
    prefix = os.environ.get("SWITCHBOARD_TOPIC_PREFIX", "")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await keep_devices_alive(bootstrap, prefix, args.every, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
