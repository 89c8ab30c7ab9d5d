"""The secure embedded broker (`make up SECURE=1`): SCRAM-SHA-512 over TLS, the standard authorizer
denying by default, and each principal allowed exactly what `shared.topics` gives it. A broker of
its own (state .state/secure-test, ports 21092/21093), never the shared test stack."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from shared import kafka_security, topics
from tools import provision, stack

pytestmark = pytest.mark.e2e

LAYOUT = stack.Layout(
    stack.ROOT / ".state" / "secure-test", kafka_port=21092, controller_port=21093, pg_port=21094, secure=True
)


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[stack.Layout]:
    already = stack.read_pid(LAYOUT.run / "kafka.pid") is not None
    stack.start_kafka(LAYOUT, heap="320m")  # beside the shared test broker on a small machine

    async def provision_it() -> provision.Report:
        admin = provision.admin_client(LAYOUT.bootstrap, LAYOUT.kafka_security())
        await admin.start()
        try:
            report = await provision.ensure_topics(admin, partitions_cap=1)
            await provision.ensure_acls(admin, provision.principal_acls(), report)
            return report
        finally:
            await admin.close()

    asyncio.run(provision_it())
    yield LAYOUT
    if not already:
        stack.stop_pid(LAYOUT.run / "kafka.pid", "secure test Kafka", timeout=30)


def options(principal: str) -> dict[str, Any]:
    return kafka_security.aiokafka_options(LAYOUT.kafka_security(principal))


@contextlib.asynccontextmanager
async def producer(**opts: Any) -> AsyncIterator[AIOKafkaProducer]:
    # the services' producer settings (shared.messaging.make_broker): idempotent, all acks
    p = AIOKafkaProducer(
        bootstrap_servers=LAYOUT.bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10000, **opts
    )
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


async def test_anonymous_and_unknown_clients_cannot_produce(secure_kafka: stack.Layout) -> None:
    tls = LAYOUT.kafka_security().ssl_context()
    wrong = {**options("sessions"), "sasl_plain_password": "not-the-password"}
    attempts = {
        "plaintext": {"security_protocol": "PLAINTEXT"},
        "TLS without SASL": {"security_protocol": "SSL", "ssl_context": tls},
        "wrong password": wrong,
        "unknown user": {**options("sessions"), "sasl_plain_username": "mallory"},
    }
    for what, opts in attempts.items():
        with pytest.raises(KafkaConnectionError):
            async with producer(**opts) as p:
                await p.send_and_wait(topics.SESSIONS, b"{}", key=b"agent-1")
            pytest.fail(f"{what}: produced to {topics.SESSIONS}")


async def test_sessions_principal_writes_its_topic_and_not_routings(secure_kafka: stack.Layout) -> None:
    async with producer(**options("sessions")) as p:
        meta = await p.send_and_wait(topics.SESSIONS, b"{}", key=b"agent-1")
        assert meta.topic == topics.SESSIONS
        with pytest.raises(TopicAuthorizationFailedError):
            await p.send_and_wait(topics.ROUTING, b"{}", key=b"c-1")
        # nor a topic it only consumes
        with pytest.raises(TopicAuthorizationFailedError):
            await p.send_and_wait(topics.ASSIST, b"{}", key=b"c-1")


async def consume_one(principal: str, topic: str, group: str) -> bytes:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=LAYOUT.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options(principal),
    )
    try:
        await consumer.start()
        async with asyncio.timeout(30):
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    if records:
                        await consumer.commit()
                        return records[0].value
    finally:
        await consumer.stop()


async def test_routing_consumes_with_its_group_only(secure_kafka: stack.Layout) -> None:
    body = uuid.uuid4().hex.encode()
    async with producer(**options("channel")) as p:
        await p.send_and_wait(topics.CONVERSATIONS, body, key=b"c-1")
    own = topics.ACCESS["routing"].groups()[topics.ACCESS["routing"].consumes.index(topics.CONVERSATIONS)]
    assert own == "routing.conversations.v1"
    assert await consume_one("routing", topics.CONVERSATIONS, own) is not None
    # another service's group on the same topic
    with pytest.raises(GroupAuthorizationFailedError):
        await consume_one("routing", topics.CONVERSATIONS, "assist.conversations.v1")
    # a topic routing does not consume
    with pytest.raises(TopicAuthorizationFailedError):
        await consume_one("routing", topics.SESSIONS_COMMANDS, "routing.sessions.commands.v1")


async def test_provisioned_acls_are_exactly_the_access_list(secure_kafka: stack.Layout) -> None:
    admin = provision.admin_client(LAYOUT.bootstrap, LAYOUT.kafka_security())
    await admin.start()
    try:
        for name, access in topics.PRINCIPALS.items():
            have = await provision.describe_acls(admin, f"User:{name}")
            assert have == set(provision.acls_for(access)), name
        again = await provision.ensure_acls(admin, provision.principal_acls())
        assert again.acls_created == 0
    finally:
        await admin.close()
