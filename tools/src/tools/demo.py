"""Demo helpers: sign the demo agents in the way a client would (agent.signed_in)."""

from __future__ import annotations

import os

from aiokafka import AIOKafkaProducer

from shared import contracts as c
from shared import topics
from tools.stack import ROOT


def demo_agents(path: str | None = None) -> list[str]:
    import yaml

    cfg = yaml.safe_load(open(path or ROOT / "deploy/demo/switchboard.yaml"))
    return list((cfg.get("presence") or {}).get("sign_in") or [])


async def sign_in_demo_agents(bootstrap: str, prefix: str | None = None) -> list[str]:
    prefix = os.environ.get("SWITCHBOARD_TOPIC_PREFIX", "") if prefix is None else prefix
    agents = demo_agents()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for agent in agents:
            ev = c.event(c.AgentSignedIn(agent_id=agent, device_id="demo"), source="/switchboard/demo")
            await producer.send_and_wait(prefix + topics.PRESENCE_COMMANDS, ev.to_bytes(), key=agent.encode())
    finally:
        await producer.stop()
    return agents
