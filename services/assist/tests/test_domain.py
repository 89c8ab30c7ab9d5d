from __future__ import annotations

from assist import domain


def test_summary_keeps_the_salient_sentence() -> None:
    texts = [
        "Hi there.",
        "I was charged twice for order 1234 and I want a refund of the duplicate charge.",
        "The charge appeared on my card yesterday.",
        "Thanks.",
    ]
    summary = domain.summarise(texts, max_sentences=1)
    assert "order 1234" in summary


def test_entities() -> None:
    ents = domain.entities(["Order #A-998 cost $25.00, mail me at ada@example.com by 2026-11-30"])
    assert ents["order_numbers"] == ["A-998"]
    assert ents["amounts"] == ["$25.00"]
    assert ents["emails"] == ["ada@example.com"]
    assert ents["dates"] == ["2026-11-30"]


def test_empty_conversation() -> None:
    assert domain.summarise([]) == ""
