"""Hostile input: every pattern assist runs over what customers write is linear-time (RE2), and
keeps the matches the backtracking patterns it replaced found; TextRank reads a bounded window."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from assist import domain

# The patterns as they were on Python's backtracking engine: "order" and 500 spaces took ~100 s.
OLD_ENTITIES = {
    "order_numbers": re.compile(
        r"\border\s*(?:number|no\.?|#|id|ref(?:erence)?)?\s*(?:is|was|:)?\s*#?\s*([A-Z0-9-]*\d[A-Z0-9-]*)", re.I
    ),
    "amounts": re.compile(
        r"(?:[$€£]\s?\d[\d,]*(?:\.\d{2})?|\b\d[\d,]*(?:\.\d{2})?\s?(?:USD|EUR|GBP|dollars|euros)\b)", re.I
    ),
    "emails": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "dates": re.compile(
        r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b", re.I
    ),
}
PIECES = [
    "order", "ORDER", " ", "  ", "\n", "\t", "number", "no.", "#", "id", "ref", "reference", "is", "was", ":",
    "12", "7", "A-", "-", "$", "€", "59.90", "1,000", ".", "!", "?", "USD", "euros", "dollars", "ada", "@",
    "example", ".com", "+", "_", "2026-11-30", "1/2/26", "monday", "Friday", "x",
]  # fmt: skip
texts = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)

ADVERSARIAL = [
    "order" + " " * 500,
    "order" + " " * 20_000 + "#",
    "Order number is " * 2000,
    "order #" + "-" * 20_000 + "x",
    "$" + "1," * 10_000 + "x",
    "a" * 20_000 + "@" + "b" * 20_000,
    "a." * 10_000 + "@",
    "1" * 20_000 + " dollar",
    ("I want to speak to a " * 1000) + "!" * 3000,
    "!" * 16_000,
    ". " * 8000,
    "\n" * 16_000,
]


def old_entities(texts: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    joined = "\n".join(texts)
    for name, pattern in OLD_ENTITIES.items():
        values = [m.group(1) if m.groups() else m.group(0) for m in pattern.finditer(joined)]
        uniq = list(dict.fromkeys(v.strip() for v in values if v.strip()))
        if uniq:
            found[name] = uniq
    return found


@settings(max_examples=400, deadline=None)
@given(texts)
def test_entities_match_what_the_backtracking_patterns_found(text: str) -> None:
    assert domain.entities([text]) == old_entities([text])


def test_unicode_letters_still_count_in_emails() -> None:
    # RE2's \w and \b are ASCII; the patterns name Unicode letters themselves. (A word boundary
    # next to a non-ASCII letter, as in "éorder12", is the one difference left.)
    assert domain.entities(["write to josé.núñez@exämple.com please"])["emails"] == ["josé.núñez@exämple.com"]
    assert domain.entities(["order\u00a0#\u00a012"])["order_numbers"] == ["12"]


def test_hostile_messages_are_read_in_linear_time() -> None:
    """Each of these took the backtracking engine from seconds to forever; RE2 reads them in ms.
    The bound is generous (a loaded CI machine): it only tells linear from super-linear."""
    for text in ADVERSARIAL:
        started = time.perf_counter()
        domain.entities([text])
        domain.escalation_signals(text)
        domain.summarise([("customer", text), ("agent", text)])
        domain.case_summary([("customer", text), ("agent", text)], "general_inquiry", {}, "closed")
        domain.search_query([text])
        domain.generalise_reply(text, "Ada Lovelace", {"order_numbers": ["12"]})
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, (text[:20], len(text), elapsed)
    assert domain.entities(["order" + " " * 500]) == {}
    assert domain.entities(["order" + " " * 500 + "#1234"]) == {"order_numbers": ["1234"]}


def test_textrank_reads_the_opening_and_the_latest_sentences_only() -> None:
    assert domain.window(10) == list(range(10))
    count = domain.TEXTRANK_HEAD + domain.TEXTRANK_TAIL + 100
    positions = domain.window(count)
    assert len(positions) == domain.TEXTRANK_HEAD + domain.TEXTRANK_TAIL
    assert positions[: domain.TEXTRANK_HEAD] == list(range(domain.TEXTRANK_HEAD))
    assert positions[-1] == count - 1
    # A long conversation: the opening's order number still leads the summary; scores stay in the window.
    messages = [("customer", "I was charged twice for order 1234 and want the duplicate refunded.")]
    messages += [("agent" if i % 2 else "customer", f"Message number {i} about shipping times.") for i in range(400)]
    sents = domain.split_sentences(messages)
    scores = domain.ranked(sents)
    inside = set(domain.window(len(sents)))
    assert scores[0] > 0 and all(score == 0.0 for i, score in enumerate(scores) if i not in inside)
    window_texts = {sents[i].text.rstrip(".") for i in inside}
    chosen = domain.summarise(messages).split(". ")
    assert len(chosen) == 3 and all(s.rstrip(".") in window_texts for s in chosen), chosen


def test_out_of_time_the_summary_is_the_customers_opening() -> None:
    messages = [
        ("customer", "Hello there."),
        ("customer", "My parcel never arrived, order 77."),
        ("agent", "Sorry, let me check."),
        ("customer", "Thanks a lot."),
    ]
    quick = domain.summarise(messages, max_sentences=2, rank=False)
    assert quick == "Hello there. My parcel never arrived, order 77."
    draft = domain.case_summary(messages, "order_status", {}, "closed", rank=False)
    assert draft["issue"] == "My parcel never arrived, order 77."  # the others say too little
