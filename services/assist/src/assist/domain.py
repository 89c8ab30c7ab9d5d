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


def search_query(texts: list[str], max_terms: int = 12) -> str | None:
    """A to_tsquery OR-query from the content words of the texts, most frequent first."""
    words = [w.lower() for t in texts for w in _WORD.findall(t)]
    freq = Counter(w.strip("'-") for w in words if w not in STOPWORDS and len(w) > 2)
    terms = [w for w, _ in freq.most_common(max_terms) if re.fullmatch(r"[a-z][a-z'-]*", w)]
    if not terms:
        return None
    return " | ".join(t.replace("'", "") for t in terms)


def parse_article(name: str, text: str) -> dict[str, object]:
    """A Markdown article with front matter (--- key: value ---), or a JSON object."""
    import json

    import yaml

    text = text.lstrip("\ufeff")
    if name.endswith(".json"):
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError(f"{name}: expected a JSON object")
        return doc
    if not text.startswith("---"):
        raise ValueError(f"{name}: expected front matter between --- lines (id, title, tags, ...)")
    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front) or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{name}: the front matter must be key: value lines")
    return {**meta, "body": body.strip()}
