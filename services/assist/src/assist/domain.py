"""assist's pure rules: TextRank summaries, entities, intent, rank fusion, reply slots and
ranking, case-summary drafts, escalation signals. No I/O; vectors come in as numpy arrays."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import re2
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

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
# Patterns over what customers and agents write are linear in the text, one of two ways:
# - Patterns with several quantifiers in a row (entities, the case-summary rules, the escalation
#   phrases) run on RE2 (google-re2), which never backtracks: on Python's engine the order-number
#   pattern took ~100 s over "order" and 500 spaces. RE2's \s, \d, \w and \b are ASCII; the classes
#   below keep the Unicode letters and spaces Python's patterns matched.
# - The tokenisers stay on Python's engine (RE2's wrapper costs a Python call per match, and they
#   match every word): each is an alternation of branches made of at most one single-character item
#   and then one greedy repetition of a character class that ends the branch. At a start position a
#   branch fails after O(1) steps or its repetition takes the run and the match is over, with
#   nothing after it to backtrack for, so findall/split/sub cost O(1) per position: linear.
_SPACE = r"[\s\v\p{Z}]"
_LETTER = r"[\p{L}\p{N}_]"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")  # tokeniser (see above)
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")  # tokeniser
_TERM = re.compile(r"[a-z][a-z'-]*")  # tokeniser
ENTITY_PATTERNS = {
    "order_numbers": re2.compile(
        rf"(?i)\border{_SPACE}*(?:number|no\.?|#|id|ref(?:erence)?)?{_SPACE}*(?:is|was|:)?{_SPACE}*#?{_SPACE}*"
        r"([A-Z0-9-]*\d[A-Z0-9-]*)"
    ),
    "amounts": re2.compile(
        rf"(?i)(?:[$€£]{_SPACE}?\d[\d,]*(?:\.\d{{2}})?|\b\d[\d,]*(?:\.\d{{2}})?{_SPACE}?(?:USD|EUR|GBP|dollars|euros)\b)"
    ),
    "emails": re2.compile(rf"\b(?:{_LETTER}|[.+-])+@(?:{_LETTER}|-)+\.(?:{_LETTER}|[.-])+\b"),
    "dates": re2.compile(
        r"(?i)\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b"
    ),
}
# TextRank compares every pair of sentences: it reads the conversation's opening (where customers
# say why they came) and its latest sentences, never more than this many in all.
TEXTRANK_HEAD = 5
TEXTRANK_TAIL = 60


class Article(BaseModel):
    """A knowledge-base article as it is written (a Markdown file, a JSON object, a POST)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    product: str | None = None
    language: str = "en"
    status: Literal["draft", "published", "archived"] = "published"


class LibraryReply(BaseModel):
    """A reply template: `text` may hold {customer_name}, {first_name}, {order_number}, {amount},
    {email}, {date}; `examples` are customer messages it answers (they shape its vector)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=1000)
    examples: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    language: str = "en"


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
    terms = [w for w, _ in freq.most_common(max_terms) if _TERM.fullmatch(w)]
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


# --- TextRank ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    text: str
    speaker: str  # customer, agent, bot, supervisor
    index: int  # position in the conversation


def split_sentences(messages: list[tuple[str, str]]) -> list[Sentence]:
    """(speaker, text) messages → sentences in conversation order."""
    out: list[Sentence] = []
    for speaker, text in messages:
        for s in _SENTENCE.split(text):
            s = s.strip()
            if len(s) > 3:
                out.append(Sentence(s, speaker, len(out)))
    return out


def window(count: int, head: int = TEXTRANK_HEAD, tail: int = TEXTRANK_TAIL) -> list[int]:
    """The positions TextRank reads out of `count` sentences: the first `head` and the last `tail`."""
    if count <= head + tail:
        return list(range(count))
    return [*range(head), *range(count - tail, count)]


def ranked(sentences: list[Sentence]) -> list[float]:
    """TextRank scores over the bounded window, one per sentence (0 outside the window)."""
    positions = window(len(sentences))
    scores = [0.0] * len(sentences)
    for i, score in zip(positions, textrank([sentences[i] for i in positions]), strict=True):
        scores[i] = score
    return scores


def _content_words(text: str) -> set[str]:
    return {w.lower().strip("'-") for w in _WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 2}


def textrank(sentences: list[Sentence], damping: float = 0.85, iterations: int = 50) -> list[float]:
    """TextRank (Mihalcea & Tarau 2004): PageRank over sentences linked by shared content words,
    normalised by the log of their lengths. Personalised: the customer's sentences and those that
    carry an entity (an order number, an amount) are where a summary's reader looks first."""
    n = len(sentences)
    if n == 0:
        return []
    words = [_content_words(s.text) for s in sentences]
    sim = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            shared = len(words[i] & words[j])
            if shared and len(words[i]) > 1 and len(words[j]) > 1:
                sim[i, j] = sim[j, i] = shared / (math.log(len(words[i])) + math.log(len(words[j])))
    prior = np.array(
        [
            (1.0 if s.speaker == "customer" else 0.5)
            * (2.0 if any(p.search(s.text) for p in ENTITY_PATTERNS.values()) else 1.0)
            for s in sentences
        ]
    )
    weight = prior.copy()
    prior /= prior.sum()
    out_weight = sim.sum(1)
    transition = np.divide(sim, out_weight[:, None], out=np.zeros_like(sim), where=out_weight[:, None] > 0)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        dangling = rank[out_weight == 0].sum()
        new = (1 - damping) * prior + damping * (rank @ transition + dangling * prior)
        if np.abs(new - rank).sum() < 1e-9:
            rank = new
            break
        rank = new
    # Centrality alone favours short sentences that echo one word ("Which card was charged?"): weigh
    # it by the same salience, and by how much a sentence says (up to four content words).
    lengths = np.array([min(1.0, len(w) / 4) for w in words])
    final = rank * weight * lengths
    return [float(x) for x in final / final.sum()] if final.sum() > 0 else [float(x) for x in rank]


def summarise(messages: list[tuple[str, str]], max_sentences: int = 3, max_chars: int = 600, rank: bool = True) -> str:
    """The top TextRank sentences, in the order they were said, within `max_chars`. Without `rank`
    (an update out of time), the customer's opening sentences instead: no pairwise comparison."""
    sents = split_sentences(messages)
    if not sents:
        return ""
    scores = ranked(sents) if rank else [1.0 if s.speaker == "customer" else 0.0 for s in sents]
    chosen: list[Sentence] = []
    size = 0
    for i in sorted(range(len(sents)), key=lambda i: (-scores[i], i)):
        if len(chosen) == max_sentences:
            break
        if size + len(sents[i].text) > max_chars and chosen:
            continue
        chosen.append(sents[i])
        size += len(sents[i].text) + 1
    return " ".join(_terminated(s.text) for s in sorted(chosen, key=lambda s: s.index))[:max_chars]


def _terminated(sentence: str) -> str:
    """Chat messages often end without a full stop; sentences put side by side need one."""
    return sentence if sentence[-1] in ".!?" else sentence + "."


# --- intent ---------------------------------------------------------------------------------------

# Each intent by a few ways customers say it; the message's nearest examples (cosine) decide.
INTENTS: dict[str, list[str]] = {
    "refund_request": [
        "I want my money back",
        "Can I get a refund for this order?",
        "I was charged twice, please refund the duplicate payment",
        "When will my refund arrive?",
    ],
    "billing_issue": [
        "There is a charge on my card I don't recognise",
        "My invoice is wrong",
        "My payment was declined",
        "Why was I billed this amount?",
    ],
    "order_status": [
        "Where is my order?",
        "My parcel has not arrived yet",
        "The tracking number has not updated for days",
        "My delivery is late",
    ],
    "cancellation": ["I want to cancel my order", "Please cancel my subscription", "Stop my membership renewal"],
    "return_or_exchange": [
        "I want to return an item",
        "Can I exchange this for a different size?",
        "How do I send this back?",
    ],
    "account_access": [
        "I can't log in to my account",
        "I forgot my password",
        "My account is locked",
        "The two-factor code never arrives",
    ],
    "account_change": [
        "I need to change my email address",
        "Please update my delivery address",
        "Delete my account and my data",
    ],
    "product_problem": [
        "The item arrived damaged",
        "The app keeps crashing",
        "The website shows an error when I check out",
        "The product stopped working",
    ],
    "complaint": ["This is unacceptable, I want to make a complaint", "Your service has been terrible"],
}
INTENT_THRESHOLD = 0.45


def intent_of(message_vectors: NDArray[np.float32], examples: NDArray[np.float32], labels: list[str]) -> str:
    """The intent whose examples the customer's messages come closest to; later messages count a
    little less than the first, which usually states the reason for contacting."""
    if len(message_vectors) == 0 or len(examples) == 0:
        return "general_inquiry"
    sims = message_vectors @ examples.T  # (messages, examples)
    weights = np.array([1.0 / (1 + 0.25 * i) for i in range(len(message_vectors))])[:, None]
    best: dict[str, float] = {}
    for j, label in enumerate(labels):
        value = float((sims[:, j] * weights).max())
        best[label] = max(best.get(label, -1.0), value)
    label, value = max(best.items(), key=lambda kv: kv[1])
    return label if value >= INTENT_THRESHOLD else "general_inquiry"


# --- retrieval --------------------------------------------------------------------------------------


def reciprocal_rank_fusion(
    rankings: list[list[str]], k: int = 60, weights: list[float] | None = None
) -> list[tuple[str, float]]:
    """Cormack, Clarke & Büttcher (2009): score(d) = Σ w/(k + rank of d in each list), rank from 1."""
    scores: dict[str, float] = {}
    for n, ranking in enumerate(rankings):
        w = weights[n] if weights else 1.0
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def conversation_vector(vectors: list[NDArray[np.float32]], decay: float = 0.7) -> NDArray[np.float32] | None:
    """The conversation so far as one unit vector: recent messages weigh most."""
    if not vectors:
        return None
    weights = np.array([decay ** (len(vectors) - 1 - i) for i in range(len(vectors))], dtype=np.float32)
    v = (np.stack(vectors) * weights[:, None]).sum(0)
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm else None


# --- replies ------------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{([a-z_]+)\}")  # over reply templates; linear: a '{' starts a match, whose run it ends
SLOT_LABELS = {
    "customer_name": "customer's name",
    "first_name": "customer's first name",
    "order_number": "order number",
    "amount": "amount",
    "email": "email",
    "date": "date",
}


def slot_values(customer_name: str | None, ents: dict[str, list[str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    if customer_name:
        values["customer_name"] = customer_name
        values["first_name"] = customer_name.split()[0]
    for slot, key in (("order_number", "order_numbers"), ("amount", "amounts"), ("email", "emails"), ("date", "dates")):
        if ents.get(key):
            values[slot] = ents[key][-1]
    return values


def fill_slots(template: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """The template with its slots filled; a slot with no value stays visible as [label]."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in values:
            return values[name]
        missing.append(name)
        return f"[{SLOT_LABELS.get(name, name.replace('_', ' '))}]"

    return _SLOT.sub(sub, template), missing


def generalise_reply(text: str, customer_name: str | None, ents: dict[str, list[str]]) -> str:
    """An agent's reply with this customer's details turned back into slots, so it can be reused."""
    out = text
    for slot, key in (("email", "emails"), ("order_number", "order_numbers"), ("amount", "amounts"), ("date", "dates")):
        for value in sorted(ents.get(key, []), key=len, reverse=True):
            out = out.replace(value, "{" + slot + "}")
    if customer_name:
        out = re2.compile("(?i)" + re2.escape(customer_name)).sub(_literal("{customer_name}"), out)
        first = customer_name.split()[0]
        if len(first) > 1:
            out = re2.compile(rf"(?i)\b{re2.escape(first)}\b").sub(_literal("{first_name}"), out)
    return out


def _literal(text: str) -> Callable[[Any], str]:
    """A replacement taken as it is (RE2 reads backslashes in a replacement string)."""
    return lambda _: text


def normalise_text(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


@dataclass
class ReplyStats:
    uses: int = 0
    shown: int = 0
    accepted: int = 0
    edited: int = 0
    rejected: int = 0


FEEDBACK_WEIGHT = 0.12
MIN_REPLY_SIMILARITY = 0.3


def feedback_adjustment(stats: ReplyStats) -> float:
    """What agents did with a reply, as a bounded nudge: a smoothed acceptance rate (edits count
    half, a prior of one accept and one reject) mapped to ±FEEDBACK_WEIGHT, plus a little for
    replies agents keep sending."""
    decided = stats.accepted + stats.edited + stats.rejected
    rate = (stats.accepted + 0.5 * stats.edited + 1.0) / (decided + 2.0)
    return FEEDBACK_WEIGHT * (2.0 * rate - 1.0) + 0.02 * math.log1p(stats.uses)


@dataclass
class RankedReply:
    reply_id: str
    source: str
    text: str
    score: float
    similarity: float
    missing_slots: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reply_id": self.reply_id,
            "source": self.source,
            "text": self.text,
            "score": round(self.score, 4),
        }
        if self.missing_slots:
            out["missing_slots"] = self.missing_slots
        return out


def rank_replies(
    candidates: list[tuple[str, str, str, float]],
    stats: dict[str, ReplyStats],
    values: dict[str, str],
    limit: int = 3,
) -> list[RankedReply]:
    """(reply_id, source, template, similarity) → the best `limit`, slots filled, no two alike."""
    ranked: list[RankedReply] = []
    for reply_id, source, template, similarity in candidates:
        if similarity < MIN_REPLY_SIMILARITY:
            continue
        text, missing = fill_slots(template, values)
        score = similarity + feedback_adjustment(stats.get(reply_id, ReplyStats())) - 0.05 * len(missing)
        ranked.append(RankedReply(reply_id, source, text, score, similarity, missing))
    ranked.sort(key=lambda r: (-r.score, r.reply_id))
    out: list[RankedReply] = []
    seen: set[str] = set()
    for r in ranked:
        key = normalise_text(r.text)
        if key not in seen:
            seen.add(key)
            out.append(r)
        if len(out) == limit:
            break
    return out


# --- case summary -----------------------------------------------------------------------------------

_ACTION = re2.compile(
    rf"(?i)\b(?:i(?:'ve| have)?|we(?:'ve| have)?){_SPACE}+(?:just{_SPACE}+|now{_SPACE}+|already{_SPACE}+)?"
    r"(?:refunded|issued|sent|reset|updated|changed|cancell?ed|escalated|processed|replaced|credited|arranged|"
    r"checked|verified|reversed|unlocked|reopened|rebooked|applied|added|removed|requested|raised|logged|"
    r"confirmed|booked|resent|re-sent|opened|created|submitted|started)\b"
)
_RESOLVED = re2.compile(
    r"(?i)\b(?:has been|have been|is now|are now|was)\s+(?:refunded|processed|resolved|fixed|cancell?ed|sent|reset|"
    r"unlocked|credited|reversed|replaced|updated)\b|\ball set\b|\bresolved\b"
)
_NEXT = re2.compile(
    r"(?i)\b(?:will|within|follow[- ]up|next step|please (?:check|reply|send|allow|keep)|expect|"
    r"should (?:see|arrive|receive))\b"
)


def case_summary(
    messages: list[tuple[str, str]],
    intent: str,
    ents: dict[str, list[str]],
    trigger: str,
    customer_name: str | None = None,
    rank: bool = True,
) -> dict[str, Any]:
    """A structured draft for the agent to review: the issue in the customer's words, what the agent
    did, the resolution or the next steps, and the entities. Without `rank` (an update out of time)
    the issue is the customer's first two substantive sentences."""
    sents = split_sentences(messages)
    scores = ranked(sents) if rank else [0.0] * len(sents)
    # The issue in the customer's words: their first substantive sentence (where people say why they
    # came), and the most central of the others.
    customer = [s for s in sents if s.speaker == "customer" and len(_content_words(s.text)) >= 2]
    issue_sents = customer[:1] + sorted(customer[1:], key=lambda s: (-scores[s.index], s.index))[:1]
    issue = " ".join(s.text for s in sorted(issue_sents, key=lambda s: s.index))
    agent = [s for s in sents if s.speaker == "agent"]
    actions = list(dict.fromkeys(s.text for s in agent if _ACTION.search(s.text)))[:4]
    resolution = next((s.text for s in reversed(agent) if _RESOLVED.search(s.text)), None)
    next_steps = list(dict.fromkeys(s.text for s in agent if _NEXT.search(s.text) and s.text != resolution))[-3:]
    return {
        "issue": issue[:400],
        "intent": intent,
        "actions": actions,
        "resolution": resolution,
        "next_steps": [] if resolution and trigger == "closed" else next_steps,
        "entities": ents,
        "customer_name": customer_name,
        "outcome": "resolved" if resolution else ("handed_off" if trigger in ("transferred", "escalated") else "open"),
    }


# --- escalation signals ---------------------------------------------------------------------------
#
# Whether a customer message asks for a manager or is clearly upset, by plain phrase matching over
# the message's first ESCALATION_PREFIX characters, lower-cased, with punctuation turned into clause
# breaks ("|") and whitespace collapsed. The phrase patterns are flat alternations of literal words
# on RE2, the tokenisers are linear on Python's engine (see the top), so reading is linear in the
# text. A phrase is not counted when one of the
# NEGATION_WINDOW words before it, in the same clause, is a negation ("not upset", "no need for a
# manager"); a phrase that carries its own negation ("not acceptable") is one phrase.

Signal = Literal["asks_for_manager", "upset"]
SIGNALS: tuple[Signal, ...] = ("asks_for_manager", "upset")
ESCALATION_PREFIX = 2000
EXCERPT_CHARS = 300
NEGATION_WINDOW = 4
# fmt: off
NEGATIONS = frozenset([
    "not", "no", "never", "without", "nor", "don't", "dont", "doesn't", "doesnt", "didn't", "didnt", "isn't",
    "isnt", "aren't", "arent", "wasn't", "wasnt", "won't", "wont", "wouldn't", "wouldnt", "needn't", "neednt",
    "cannot", "can't", "cant",
])
# fmt: on
_ROLE = r"(?:manager|supervisor|superior|boss|team leader)"
_MANAGER = re2.compile(
    r"\b(?:"
    rf"(?:to|with|for) (?:a|the|your|some) {_ROLE}"  # speak to a manager, ask for the supervisor
    rf"|(?:want|need|get me|demand|fetch|call) (?:a|the|your) {_ROLE}"
    rf"|your {_ROLE}"
    rf"|{_ROLE} (?:please|now|immediately)"
    r"|(?:someone|somebody|anyone|anybody|person) (?:in charge|more senior|senior|higher up|above you)"
    r"|escalate|escalation"
    r")\b"
)
_UPSET = re2.compile(
    r"\b(?:"
    r"unacceptable|not acceptable|ridiculous|absurd|furious|fuming|livid|outrageous|outraged|disgusted|disgusting"
    r"|disgraceful|appalling|appalled|pathetic|incompetent|upset|angry|scam|scammed|rip off|ripoff"
    r"|worst (?:service|customer service|company|experience|support)"
    r"|(?:this is|what) a joke|fed up|sick of|sick and tired|money back now|legal action"
    r"|(?:absolutely|completely|totally) useless"
    r")\b"
)
_CLAUSE = re.compile(r"[.,;:!?()\[\]\n]+")  # tokeniser (see the top)
_TOKEN = re.compile(r"[a-z0-9']+|\|")  # tokeniser
_NOT_UPPER = bytes(b for b in range(128) if not chr(b).isupper())  # deleted to count capitals
_NOT_LOWER = bytes(b for b in range(128) if not chr(b).islower())


def escalation_text(text: str) -> str:
    """The message as the signals read it: lower-case words and "|" clause breaks, one space apart."""
    lowered = text[:ESCALATION_PREFIX].lower().replace("\u2019", "'")
    return " ".join(_TOKEN.findall(_CLAUSE.sub(" | ", lowered)))


def _said(pattern: Any, text: str) -> bool:
    for m in pattern.finditer(text):
        before = text[max(0, m.start() - 60) : m.start()].split()[-NEGATION_WINDOW:]
        if "|" in before:
            before = before[len(before) - before[::-1].index("|") :]
        if not NEGATIONS.intersection(before):
            return True
    return False


def _shouted(text: str) -> bool:
    """Mostly capitals (ASCII letters), over at least 12 letters."""
    ascii_text = text.encode("ascii", "ignore")
    upper = len(ascii_text.translate(None, _NOT_UPPER))
    return upper >= 12 and upper >= 0.8 * (upper + len(ascii_text.translate(None, _NOT_LOWER)))


def escalation_signals(text: str) -> list[Signal]:
    """The escalation signals one customer message shows, in SIGNALS order."""
    words = escalation_text(text)
    found: list[Signal] = []
    if _said(_MANAGER, words):
        found.append("asks_for_manager")
    head = text[:ESCALATION_PREFIX]
    if "!!!" in head or _shouted(head) or _said(_UPSET, words):
        found.append("upset")
    return found


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The message on one line, cut to `limit` characters."""
    line = " ".join(text[: limit * 4].split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "\u2026"
