"""The numpy encoder against vectors sentence-transformers itself produced for the same model
(data/make_reference_vectors.py rebuilds them), and the intents it serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from assist import domain, embedding

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_vectors.json").read_text())


def test_matches_sentence_transformers() -> None:
    vectors = embedding.encoder().encode(REFERENCE["sentences"])
    expected = np.array(REFERENCE["vectors"], dtype=np.float32)
    assert vectors.shape == (len(REFERENCE["sentences"]), 384)
    assert np.abs(vectors - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_a_vector() -> None:
    texts = ["short", "a much longer sentence with many more tokens than the first one, to force padding"]
    batch = embedding.encoder().encode(texts)
    alone = np.stack([embedding.encoder().encode_one(t) for t in texts])
    assert np.abs(batch - alone).max() < 1e-5
    assert embedding.encoder().encode([]).shape == (0, 384)


def test_bytes_round_trip() -> None:
    v = embedding.encoder().encode_one("hello")
    assert np.array_equal(embedding.from_bytes(embedding.to_bytes(v)), v)


def test_intent() -> None:
    labels = [label for label, examples in domain.INTENTS.items() for _ in examples]
    examples = embedding.encoder().encode([e for ex in domain.INTENTS.values() for e in ex])
    enc = embedding.encoder()
    assert domain.intent_of(enc.encode(["you took my payment two times, I want it back"]), examples, labels) in (
        "refund_request",
        "billing_issue",
    )
    assert domain.intent_of(enc.encode(["I'm locked out, the password doesn't work"]), examples, labels) == (
        "account_access"
    )
    assert domain.intent_of(enc.encode(["what colour is the sky on mars"]), examples, labels) == "general_inquiry"
