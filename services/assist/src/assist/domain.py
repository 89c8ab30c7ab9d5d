"""Embedded (offline, CPU) summarisation: an extractive summary and the key entities."""

from __future__ import annotations

import re
from collections import Counter

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "me",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "them",
        "us",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "so",
        "as",
        "can",
        "could",
        "would",
        "should",
        "will",
        "just",
        "please",
        "hi",
        "hello",
        "thanks",
        "thank",
        "there",
        "here",
        "what",
        "when",
        "where",
        "how",
        "which",
        "who",
        "am",
        "im",
        "i'm",
        "about",
        "into",
        "than",
        "then",
        "also",
        "any",
        "some",
        "all",
    ]
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")
ENTITY_PATTERNS = {
    "order_numbers": re.compile(r"\border\s*(?:number|no\.?|#)?\s*#?\s*([A-Z0-9-]*\d[A-Z0-9-]*)", re.I),
    "amounts": re.compile(
        r"(?:[$€£]\s?\d[\d,]*(?:\.\d{2})?|\b\d[\d,]*(?:\.\d{2})?\s?(?:USD|EUR|GBP|dollars|euros)\b)", re.I
    ),
    "emails": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "dates": re.compile(
        r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b", re.I
    ),
}


def sentences(texts: list[str]) -> list[str]:
    out: list[str] = []
    for t in texts:
        out.extend(s.strip() for s in _SENTENCE.split(t) if len(s.strip()) > 3)
    return out


def summarise(texts: list[str], max_sentences: int = 2) -> str:
    """Rank sentences by the weight of their content words across the conversation; keep order."""
    sents = sentences(texts)
    if not sents:
        return ""
    freq = Counter(w.lower() for s in sents for w in _WORD.findall(s) if w.lower() not in STOPWORDS)
    if not freq:
        return " ".join(sents[:max_sentences])
    top = max(freq.values())

    def score(s: str) -> float:
        words = [w.lower() for w in _WORD.findall(s) if w.lower() not in STOPWORDS]
        return sum(freq[w] / top for w in words) / (len(words) ** 0.5) if words else 0.0

    ranked = sorted(range(len(sents)), key=lambda i: (-score(sents[i]), i))[:max_sentences]
    return " ".join(sents[i] for i in sorted(ranked))


def entities(texts: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    joined = "\n".join(texts)
    for name, pattern in ENTITY_PATTERNS.items():
        values = [m.group(1) if m.groups() else m.group(0) for m in pattern.finditer(joined)]
        uniq = list(dict.fromkeys(v.strip() for v in values if v.strip()))
        if uniq:
            found[name] = uniq
    return found
