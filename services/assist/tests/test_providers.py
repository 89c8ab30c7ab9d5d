"""The provider interface's fallback rules, with in-process fakes (the HTTP path is in tests/)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from assist.providers import Assistant, parse_json_object


class Fake:
    name = "fake"
    model = "fake-1"

    def __init__(self, answer: str = "remote answer", delay: float = 0.0, fail: bool = False) -> None:
        self.answer, self.delay, self.fail, self.calls = answer, delay, fail, 0

    async def chat(self, system: str, user: str) -> str:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("refused")
        return self.answer

    async def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


async def generate(a: Assistant, parse=str.strip):  # type: ignore[no-untyped-def]
    return await a.generate("t", "system", "user", parse, lambda: "local answer", "rules")


async def test_without_a_remote_the_embedded_path_answers() -> None:
    g = await generate(Assistant())
    assert (g.value, g.provider, g.model, g.fallback) == ("local answer", "embedded", "rules", None)


async def test_a_working_remote_answers_and_is_named() -> None:
    g = await generate(Assistant(Fake()))
    assert (g.value, g.provider, g.model) == ("remote answer", "fake", "fake-1")


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (Fake(delay=1.0), "no answer within 0.05 s"),
        (Fake(fail=True), "unusable answer (ConnectionError: refused)"),
        (Fake(answer="not json"), "unusable answer (ValueError: no JSON object in the answer)"),
    ],
)
async def test_a_slow_or_failing_remote_falls_back_then_cools_down(fake: Fake, reason: str) -> None:
    a = Assistant(fake, timeout_s=0.05, cooldown_s=60)
    g = await generate(a, parse_json_object)
    assert (g.value, g.provider, g.fallback) == ("local answer", "embedded", reason)
    again = await generate(a, parse_json_object)
    assert again.provider == "embedded" and again.fallback.startswith("fake cooling down") and fake.calls == 1


async def test_the_remote_is_tried_again_after_the_cool_down() -> None:
    fake = Fake(fail=True)
    a = Assistant(fake, timeout_s=1, cooldown_s=0.01)
    await generate(a)
    fake.fail = False
    await asyncio.sleep(0.02)
    assert (await generate(a)).provider == "fake" and fake.calls == 2


def test_json_is_found_inside_prose() -> None:
    assert parse_json_object('Sure! ```json\n{"issue": "x"}\n```') == {"issue": "x"}
