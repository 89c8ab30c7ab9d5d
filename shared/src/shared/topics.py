"""Topic names of DESIGN.md, their partition counts, and the optional per-deployment prefix."""

from __future__ import annotations

from dataclasses import dataclass

CONVERSATIONS = "conversations.v1"
MESSAGES = "conversations.messages.v1"
ROUTING_COMMANDS = "routing.commands.v1"
ROUTING = "routing.v1"
SESSIONS_COMMANDS = "sessions.commands.v1"
SESSIONS = "sessions.v1"
PRESENCE_COMMANDS = "presence.commands.v1"
PRESENCE = "presence.v1"
ASSIST = "assist.v1"

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    description: str


# One list, used to create topics (make up, tests) and to document them.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(CONVERSATIONS, 12, "conversation_id", "Conversation arrivals and ends, from channels"),
    TopicSpec(MESSAGES, 12, "conversation_id", "Messages posted in conversations"),
    TopicSpec(ROUTING_COMMANDS, 6, "conversation_id", "Pick and transfer commands to routing"),
    TopicSpec(ROUTING, 12, "conversation_id", "Routing decisions: queued, offered, assigned, released"),
    TopicSpec(SESSIONS_COMMANDS, 12, "agent_id", "Commands from agents' clients"),
    TopicSpec(SESSIONS, 12, "agent_id", "The agent's topic: everything an agent's client shows"),
    TopicSpec(PRESENCE_COMMANDS, 6, "agent_id", "Presence commands: set, sign in/out, heartbeat"),
    TopicSpec(PRESENCE, 6, "agent_id", "Presence changes"),
    TopicSpec(ASSIST, 6, "conversation_id", "Smart-assist suggestions per conversation"),
)


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


def all_topic_specs(partitions_cap: int | None = None) -> list[TopicSpec]:
    """Every topic and its DLQ (DLQs get one partition per 4 of the original, at least 1)."""
    specs: list[TopicSpec] = []
    for spec in TOPICS:
        parts = min(spec.partitions, partitions_cap) if partitions_cap else spec.partitions
        specs.append(TopicSpec(spec.name, parts, spec.key, spec.description))
        specs.append(TopicSpec(dlq(spec.name), max(1, parts // 4), spec.key, f"Dead letters of {spec.name}"))
    return specs


class TopicNames:
    """Resolves unprefixed DESIGN.md names to this deployment's real topic names."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"


@dataclass(frozen=True)
class Access:
    """What one service may do on Kafka: the one list Kafka ACLs are made from (the embedded secure
    broker's and the Kubernetes `KafkaUser`s). A consumer of T joins group `{prefix}{service}.{T}`
    and may dead-letter to `T.dlq`; `reads` are topics read without a group (assigned partitions)."""

    service: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    reads: tuple[str, ...] = ()

    def groups(self, prefix: str = "") -> list[str]:
        return [f"{prefix}{self.service}.{t}" for t in self.consumes]

    def read_topics(self) -> list[str]:
        return sorted({*self.consumes, *self.reads})

    def write_topics(self) -> list[str]:
        return sorted({*self.produces, *(dlq(t) for t in self.consumes)})


ACCESS: dict[str, Access] = {
    "routing": Access("routing", consumes=(CONVERSATIONS, PRESENCE, ROUTING_COMMANDS, SESSIONS), produces=(ROUTING,)),
    "sessions": Access(
        "sessions",
        consumes=(ASSIST, CONVERSATIONS, MESSAGES, PRESENCE, ROUTING, SESSIONS_COMMANDS),
        produces=(SESSIONS, MESSAGES, SESSIONS_COMMANDS, ROUTING_COMMANDS, PRESENCE_COMMANDS, CONVERSATIONS),
        reads=(SESSIONS,),  # the gateway's tail of the agents' topic
    ),
    "presence": Access("presence", consumes=(PRESENCE_COMMANDS, ROUTING), produces=(PRESENCE,)),
    "assist": Access("assist", consumes=(CONVERSATIONS, MESSAGES, ROUTING), produces=(ASSIST,)),
}

# Kafka principals that are not services: trusted back-end clients with their own credentials
# (DESIGN.md's trust boundary; people's devices go through the gateway instead).
CLIENTS: dict[str, Access] = {
    # a channel adapter (web chat, telephony, email): publishes arrivals and customers' messages,
    # reads the conversation's messages back (agents' replies) from assigned partitions
    "channel": Access("channel", consumes=(), produces=(CONVERSATIONS, MESSAGES), reads=(MESSAGES,)),
    # a device or agent client beside the gateway (the demo's devices): heartbeats and sign-ins
    "devices": Access("devices", consumes=(), produces=(PRESENCE_COMMANDS,)),
    # the operators' CLI: on-behalf commands, reading any topic and its dead letters, replaying a dead
    # letter to its original topic
    "operator": Access(
        "operator",
        consumes=(),
        produces=tuple(t.name for t in TOPICS),
        reads=tuple(name for t in TOPICS for name in (t.name, dlq(t.name))),
    ),
}

# Every Kafka principal whose ACLs come from this module: the services, then the other clients.
PRINCIPALS: dict[str, Access] = {**ACCESS, **CLIENTS}
