from __future__ import annotations

import time

import pytest

from assist import domain


def test_summary_keeps_the_salient_sentence() -> None:
    messages = [
        ("customer", "Hi there."),
        ("customer", "I was charged twice for order 1234 and I want a refund of the duplicate charge."),
        ("agent", "Sorry to hear that. Which card was charged?"),
        ("customer", "The charge appeared on my card yesterday."),
        ("customer", "Thanks."),
    ]
    summary = domain.summarise(messages, max_sentences=1)
    assert "order 1234" in summary
    two = domain.summarise(messages, max_sentences=2)
    assert two.index("order 1234") < two.index("yesterday")  # kept in the order they were said


def test_textrank_ranks_the_central_sentence_first() -> None:
    sents = domain.split_sentences(
        [
            ("customer", "My parcel is late. The parcel was due on Monday and the parcel tracking is stuck."),
            ("customer", "Lovely weather today."),
            ("agent", "I checked the tracking for your parcel."),
        ]
    )
    scores = domain.textrank(sents)
    assert abs(sum(scores) - 1.0) < 1e-6
    assert max(range(len(sents)), key=lambda i: scores[i]) == 1  # the sentence every other one links to
    assert scores[2] == min(scores)  # linked to nothing


def test_entities() -> None:
    ents = domain.entities(["Order #A-998 cost $25.00, mail me at ada@example.com by 2026-11-30"])
    assert ents["order_numbers"] == ["A-998"]
    assert ents["amounts"] == ["$25.00"]
    assert ents["emails"] == ["ada@example.com"]
    assert ents["dates"] == ["2026-11-30"]
    assert domain.entities(["my order number is 888"])["order_numbers"] == ["888"]


def test_empty_conversation() -> None:
    assert domain.summarise([]) == ""
    assert domain.textrank([]) == []


def test_reciprocal_rank_fusion() -> None:
    fused = domain.reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]])
    assert [d for d, _ in fused] == ["b", "c", "a", "d"]  # in both lists beats first in one
    assert fused[0][1] == 1 / 62 + 1 / 61
    weighted = domain.reciprocal_rank_fusion([["a", "b"], ["b", "a"]], weights=[0.5, 1.0])
    assert weighted[0][0] == "b"


def test_slots_are_filled_or_shown_missing() -> None:
    values = domain.slot_values("Ada Lovelace", {"order_numbers": ["1234"], "amounts": ["$5.00"]})
    text, missing = domain.fill_slots("Hi {first_name}, order {order_number}: {amount} to {email}.", values)
    assert text == "Hi Ada, order 1234: $5.00 to [email]."
    assert missing == ["email"]


def test_an_agents_reply_is_generalised_into_a_template() -> None:
    ents = {"order_numbers": ["777"], "emails": ["bo@example.com"]}
    text = domain.generalise_reply("Yes Bo, order 777 ships today; I wrote to bo@example.com.", "Bo Li", ents)
    assert text == "Yes {first_name}, order {order_number} ships today; I wrote to {email}."


def test_feedback_moves_a_reply_in_the_ranking() -> None:
    candidates = [("a", "library", "Reply alpha", 0.60), ("b", "library", "Reply beta", 0.58)]
    assert [r.reply_id for r in domain.rank_replies(candidates, {}, {})] == ["a", "b"]
    stats = {"a": domain.ReplyStats(shown=5, rejected=5), "b": domain.ReplyStats(shown=5, accepted=4)}
    assert [r.reply_id for r in domain.rank_replies(candidates, stats, {})] == ["b", "a"]
    # Bounded: feedback cannot lift an unrelated reply over a relevant one.
    far = [("a", "library", "Reply alpha", 0.80), ("b", "library", "Reply beta", 0.45)]
    many = {"b": domain.ReplyStats(shown=1000, accepted=1000)}
    assert domain.rank_replies(far, many, {})[0].reply_id == "a"
    # Below the similarity floor nothing is suggested; identical texts are shown once.
    assert domain.rank_replies([("x", "history", "Hi", 0.1)], {}, {}) == []
    same = [("a", "library", "Same text", 0.7), ("h", "history", "Same  text!", 0.69)]
    assert len(domain.rank_replies(same, {}, {})) == 1


def test_case_summary_draft() -> None:
    messages = [
        ("customer", "Hello, I was charged twice for order 1234."),
        ("customer", "Please refund the duplicate."),
        ("agent", "I've refunded the duplicate payment of $59.90."),
        ("agent", "The refund has been processed and will reach your card within 5 days."),
        ("customer", "Thanks!"),
    ]
    ents = domain.entities([m[1] for m in messages if m[0] == "customer"])
    draft = domain.case_summary(messages, "refund_request", ents, "closed", "Ada")
    assert draft["issue"].startswith("Hello, I was charged twice for order 1234.")
    assert draft["actions"] == ["I've refunded the duplicate payment of $59.90."]
    assert draft["resolution"].startswith("The refund has been processed")
    assert draft["outcome"] == "resolved" and draft["entities"]["order_numbers"] == ["1234"]
    handoff = domain.case_summary(messages[:2], "refund_request", ents, "transferred")
    assert handoff["outcome"] == "handed_off" and handoff["actions"] == [] and handoff["resolution"] is None


# --- escalation signals ---------------------------------------------------------------------------

MANAGER = ["asks_for_manager"]
UPSET = ["upset"]
BOTH = ["asks_for_manager", "upset"]
ESCALATION_EXAMPLES = [
    # asks for a manager
    ("Can I speak to a manager?", MANAGER),
    ("I'd like to talk to your supervisor about this", MANAGER),
    ("Is there someone in charge I can talk to?", MANAGER),
    ("Please escalate this.", MANAGER),
    ("Let me talk to your boss", MANAGER),
    ("Manager please", MANAGER),
    ("Get me a manager now", MANAGER),
    ("I am asking for a supervisor", MANAGER),
    ("Put me through to the team leader", MANAGER),
    ("Is there anyone more senior I could speak with?", MANAGER),
    ("I demand to speak with your manager", MANAGER),
    ("I need this escalated, escalation is the only option", MANAGER),
    # clearly upset
    ("This is unacceptable", UPSET),
    ("Honestly this is ridiculous", UPSET),
    ("I am furious about the delay", UPSET),
    ("Worst service I have ever had", UPSET),
    ("This is a joke", UPSET),
    ("I'm fed up with waiting", UPSET),
    ("Sick of this company", UPSET),
    ("This shop is a scam", UPSET),
    ("I'm disgusted by how I was treated", UPSET),
    ("I want my money back now", UPSET),
    ("still waiting!!!", UPSET),
    ("WHY IS MY ORDER NOT HERE YET", UPSET),
    ("This is not acceptable", UPSET),
    ("I'm not happy, this is a joke", UPSET),  # the negation is in another clause
    ("I\u2019m really upset", UPSET),  # a typographic apostrophe
    # both
    ("This is ridiculous, I want to speak to a manager", BOTH),
    ("UNACCEPTABLE. GET ME YOUR SUPERVISOR", BOTH),
    # neither
    ("Hi, where is my order 1234? It was due on Monday.", []),
    ("I'm not upset, just curious about the refund", []),
    ("No need for a manager, you have been very helpful", []),
    ("I don't want to speak to a manager, just fix the address", []),
    ("Thanks, that was quick!", []),
    ("Great, thanks!!", []),
    ("My manager asked me to order three more", []),
    ("I work as a store manager and need an invoice", []),
    ("Can I get a receipt for my supervisor?", []),
    ("That is not ridiculous at all, it makes sense", []),
    ("Is this deal still available?", []),
    ("ORDER A-1234 PLS", []),  # capitals, but too short to be shouting
    ("I was charged twice for order 1234, can you refund the duplicate?", []),
    ("It isn't a scam, is it? Just checking the link is yours", []),
    ("I'm never angry with you folks, just need help with my login", []),
]


@pytest.mark.parametrize(("text", "signals"), ESCALATION_EXAMPLES)
def test_escalation_signals(text: str, signals: list[str]) -> None:
    assert domain.escalation_signals(text) == signals


def test_escalation_reads_a_bounded_prefix_in_linear_time() -> None:
    assert domain.escalation_signals("order details " * 200 + "this is unacceptable") == []  # past the prefix
    started = time.perf_counter()
    domain.escalation_signals(("to a " * 3000) + "!" * 5000 + " " * 5000)  # no pathological backtracking
    assert time.perf_counter() - started < 0.05


def test_an_excerpt_is_one_line_of_at_most_300_characters() -> None:
    assert domain.excerpt("  still\n waiting!!!  ") == "still waiting!!!"
    long = domain.excerpt("word " * 200)
    assert len(long) == 300 and long.endswith("\u2026")
