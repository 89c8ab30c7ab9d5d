"""`make bench` scenario `assist`: the evaluation set (deploy/demo/eval/assist.yaml) replayed
through assist on real PostgreSQL, message by message, as the service processes them.

Reports recall@3 of the judged articles after the customer's messages (hybrid, and full-text only
and dense only in the same run), hit@3 of the judged replies for the last customer message, and
the latency of one conversation update per customer message (embedding, both rankings, replies,
writes and events), p50/p95, with the embedded provider.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import yaml

from assist.app import build
from assist.settings import AssistSettings
from tools import stack, testing

EVAL_SET = stack.ROOT / "deploy/demo/eval/assist.yaml"
DEMO_CONFIG = stack.ROOT / "deploy/demo/switchboard.yaml"


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))], 2)


async def assist_scenario(infra: testing.Infrastructure) -> dict[str, Any]:
    conversations = yaml.safe_load(EVAL_SET.read_text())["conversations"]
    dep = await testing.create_deployment(infra, partitions=3)
    runtime, assist = build(
        dep.settings(AssistSettings, "assist", config_file=str(DEMO_CONFIG), debounce_ms=60_000, max_wait_ms=60_000)
    )
    report: dict[str, Any] = {"conversations": len(conversations)}
    async with testing.running(runtime):
        # Warm-up: the encoder's first call pays for loading weights and numpy's first allocations.
        await replay(assist, runtime, conversations[:3], "hybrid", "warm")
        recall: dict[str, float | None] = {}
        latencies: list[float] = []
        hits: list[bool] = []
        for mode in ("hybrid", "text", "dense"):
            r = await replay(assist, runtime, conversations, mode, mode)
            recall[mode] = r["recall_at_3"]
            if mode == "hybrid":
                latencies, hits = r["latencies_ms"], r["reply_hits"]
                report["misses"] = r["misses"]
        report["articles_recall_at_3"] = recall["hybrid"]
        report["articles_recall_at_3_text_only"] = recall["text"]
        report["articles_recall_at_3_dense_only"] = recall["dense"]
        report["replies_hit_at_3"] = round(sum(hits) / len(hits), 3) if hits else None
        report["replies_judged"] = len(hits)
        report["latency_per_message_ms"] = {
            "n": len(latencies),
            "p50": _pct(latencies, 50),
            "p95": _pct(latencies, 95),
            "max": _pct(latencies, 100),
            "mean": round(statistics.fmean(latencies), 2) if latencies else None,
            "target_p95": 50,
        }
        report["provider"] = "embedded"
    await testing.drop_deployment(dep)
    return report


async def replay(assist: Any, runtime: Any, conversations: list[dict[str, Any]], mode: str, tag: str) -> dict[str, Any]:
    assist.retrieval_mode = mode
    recalls: list[float] = []
    reply_hits: list[bool] = []
    latencies: list[float] = []
    misses: list[dict[str, Any]] = []
    for conv in conversations:
        cid = f"{tag}-{conv['id']}-{uuid.uuid4().hex[:6]}"
        async with runtime.transaction() as uow:
            await uow.store.add_conversation(cid, "chat", conv.get("subject"), conv.get("customer_name"))
        out: dict[str, Any] = {}
        for i, text in enumerate(conv["messages"]):
            async with runtime.transaction() as uow:
                await uow.store.add_message(cid, f"m{i}", "customer", "public", text, datetime.now(UTC), None)
            started = time.perf_counter()
            out = await assist.process(cid, [])
            latencies.append((time.perf_counter() - started) * 1000)
        top3 = [a["id"] for a in out.get("articles", [])][:3]
        judged = conv.get("articles") or []
        if judged:
            recalls.append(len(set(judged) & set(top3)) / len(judged))
        replies = [r["reply_id"] for r in out.get("replies", [])][:3]
        if conv.get("replies"):
            reply_hits.append(bool(set(conv["replies"]) & set(replies)))
        if mode == "hybrid" and (
            (judged and not set(judged) & set(top3))
            or (conv.get("replies") and not set(conv["replies"]) & set(replies))
        ):
            misses.append({"id": conv["id"], "articles": top3, "replies": replies})
    return {
        "recall_at_3": round(sum(recalls) / len(recalls), 3) if recalls else None,
        "reply_hits": reply_hits,
        "latencies_ms": latencies,
        "misses": misses,
    }
