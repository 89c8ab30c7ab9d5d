"""Handlers' first statements run ahead for a batch's records at once (`Consumer.ahead`): only for
records that share no key with any record before them, never in a careful run. In memory."""

from __future__ import annotations

import json
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from shared import contracts as c
from shared import topics
from shared.messaging import Consumer, Rejection, RunAhead, UnitOfWork, agents_and_conversations
from shared.settings import ServiceSettings
from shared.tx import MemoryDatabase, Tx


class Offers:
    """A commands consumer whose offer.accept handler asks a 'store' for the offer's conversation:
    ahead, for several offers in one call; in its turn, for one."""

    def __init__(self, *, keys: Any = agents_and_conversations, savepoints: bool = False, whole: bool = False) -> None:
        self.ahead_calls: list[list[str]] = []  # offer ids, one list per call ahead
        self.own_calls: list[str] = []  # offers the handler asked for itself
        self.answers: list[tuple[str, str]] = []  # (offer, its answer) as the handlers saw them
        self.offset = 0
        self.consumer = Consumer(
            service="test",
            topic=topics.SESSIONS_COMMANDS,
            handlers={"offer.accept": self.accept},
            database=MemoryDatabase(),
            unit_of_work=self.uow,
            broker=KafkaBroker("127.0.0.1:1"),
            settings=ServiceSettings(transient_retries=1),
            savepoints=savepoints,
            # the accept is all its handler does (`whole`), but for offers called "later"
            ahead={"offer.accept": RunAhead(self.accept_ahead, whole=whole, only=lambda d: d.offer_id != "later")},
            keys=keys,
        )

    def uow(self, tx: Tx) -> UnitOfWork[None, None]:
        return UnitOfWork(tx, None, None, topics.TopicNames(""), "/switchboard/test")

    async def accept_ahead(self, uow: Any, items: list[tuple[c.CloudEvent, c.AcceptOffer]]) -> list[str]:
        self.ahead_calls.append([data.offer_id for _, data in items])
        return [f"ahead:{data.offer_id}" for _, data in items]

    async def accept(self, uow: Any, ev: c.CloudEvent, data: c.AcceptOffer) -> None:
        async def own() -> str:
            self.own_calls.append(data.offer_id)
            return f"own:{data.offer_id}"

        self.answers.append((data.offer_id, await uow.answered(ev, own)))
        if data.offer_id.startswith("refused"):
            raise Rejection(c.CommandRejected(agent_id=data.agent_id, command_id=ev.id, reason="no such offer"))

    def record(self, agent: str, offer: str) -> ConsumerRecord[Any, Any]:
        self.offset += 1
        doc = {
            "specversion": "1.0",
            "source": "/tests",
            "id": f"cmd-{offer}",
            "type": "offer.accept",
            "data": {"agent_id": agent, "offer_id": offer},
        }
        value = json.dumps(doc).encode()
        return ConsumerRecord(topics.SESSIONS_COMMANDS, 0, self.offset, 0, 0, agent.encode(), value, None, 0, 0, [])


async def test_records_about_distinct_agents_run_ahead_together_and_each_handler_takes_its_answer() -> None:
    o = Offers()
    await o.consumer.process([o.record("a-1", "o-1"), o.record("a-2", "o-2"), o.record("a-3", "o-3")])
    assert o.ahead_calls == [["o-1", "o-2", "o-3"]] and o.own_calls == []
    assert o.answers == [("o-1", "ahead:o-1"), ("o-2", "ahead:o-2"), ("o-3", "ahead:o-3")]


async def test_a_record_about_an_agent_named_before_it_in_the_batch_waits_for_its_turn() -> None:
    """o-3 is a-1's second record: a-1's first handler may go on writing after its first statement,
    so o-3's runs in its turn, after o-1's handler. o-4 shares nothing with anything before it."""
    o = Offers()
    batch = [o.record("a-1", "o-1"), o.record("a-2", "o-2"), o.record("a-1", "o-3"), o.record("a-4", "o-4")]
    await o.consumer.process(batch)
    assert o.ahead_calls == [["o-1", "o-2", "o-4"]] and o.own_calls == ["o-3"]
    assert [offer for offer, _ in o.answers] == ["o-1", "o-2", "o-3", "o-4"]  # handled in the batch's order


async def test_after_a_whole_statement_the_next_about_the_same_agent_runs_ahead_in_the_next_round_trip() -> None:
    """When the statement is all its handler does, a-1's second record runs ahead too, after it: the
    records about one agent keep their order. A record in its turn ("later") holds its agent back:
    what comes after it about a-2 waits for its turn as well."""
    o = Offers(whole=True)
    batch = [o.record(a, offer) for a, offer in (("a-1", "o-1"), ("a-2", "later"), ("a-1", "o-3"), ("a-1", "o-4"))]
    await o.consumer.process([*batch, o.record("a-2", "o-5"), o.record("a-3", "o-6")])
    assert o.ahead_calls == [["o-1", "o-6"], ["o-3"], ["o-4"]] and o.own_calls == ["later", "o-5"]
    assert [offer for offer, _ in o.answers] == ["o-1", "later", "o-3", "o-4", "o-5", "o-6"]


def test_the_keys_are_every_agent_and_conversation_a_payload_names() -> None:
    transfer = c.TransferSession(agent_id="a-1", session_id="s-1", to_agent="a-2")
    assert agents_and_conversations(transfer) == [("agent", "a-1"), ("agent", "a-2")]
    assigned = c.WorkAssigned(
        agent_id="a-1", conversation_id="c-1", channel="chat", queue="q", previous_agent_id="a-0", how="transferred"
    )
    assert set(agents_and_conversations(assigned)) == {("agent", "a-1"), ("conversation", "c-1"), ("agent", "a-0")}


async def test_a_consumer_without_keys_runs_nothing_ahead() -> None:
    keyless = Offers(keys=None)
    await keyless.consumer.process([keyless.record("a-1", "o-1"), keyless.record("a-2", "o-2")])
    assert keyless.ahead_calls == [] and keyless.own_calls == ["o-1", "o-2"]


async def test_a_refusal_rolls_the_ahead_run_back_and_the_careful_run_asks_in_turn() -> None:
    """The batch ran ahead, a record was refused: all of it is rolled back, and the careful run (each
    record in a savepoint) runs nothing ahead, so a refused record's writes never outlive it."""
    o = Offers(savepoints=True)
    await o.consumer.process([o.record("a-1", "o-1"), o.record("a-2", "refused-2"), o.record("a-3", "o-3")])
    assert o.ahead_calls == [["o-1", "refused-2", "o-3"]]
    assert o.own_calls == ["o-1", "refused-2", "o-3"]  # the careful run
    assert o.answers[-3:] == [("o-1", "own:o-1"), ("refused-2", "own:refused-2"), ("o-3", "own:o-3")]
