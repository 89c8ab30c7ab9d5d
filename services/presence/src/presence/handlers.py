"""FastStream adapters: which use case handles which event type on which topic."""

from __future__ import annotations

from presence import service
from shared import topics
from shared.runtime import Runtime


def register(runtime: Runtime) -> None:
    runtime.consume(
        topics.PRESENCE_COMMANDS,
        {
            "agent.signed_in": service.on_agent_signed_in,
            "agent.signed_out": service.on_agent_signed_out,
            "agent.heartbeat": service.on_agent_heartbeat,
            "presence.set": service.on_presence_set,
        },
    )
    runtime.consume(
        topics.ROUTING,
        {
            "capacity.changed": service.on_capacity_changed,
            "work.offer_expired": service.on_offer_expired,
        },
        after_batch=service.after_routing,
        # automatic rules: a moment's lag is not seen, and routing's topic has six records a
        # conversation of which these are two
        background=True,
    )
