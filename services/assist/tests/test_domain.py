from __future__ import annotations

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
