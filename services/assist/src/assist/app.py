"""assist's composition root: `uvicorn --factory assist.app:create_app`."""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from assist import handlers, service
from assist.settings import AssistSettings
from shared import topics
from shared.auth import Auth, supervisor_or_error
from shared.db import jsonable
from shared.runtime import Runtime, load_config

log = structlog.get_logger("switchboard.assist")

PRODUCES = {topics.ASSIST: "assist.summary_ready (and later articles, replies, case summaries) per conversation"}


def build_runtime(settings: AssistSettings | None = None) -> Runtime:
    settings = settings or AssistSettings()
    runtime = Runtime("assist", settings, package="assist", produces=PRODUCES)
    handlers.register(runtime)

    async def load_knowledge_base() -> None:
        cfg = load_config(settings.config_file or os.environ.get("SWITCHBOARD_CONFIG"), "assist")
        folder = cfg.get("knowledge_base")
        if folder:
            path = Path(folder) if Path(folder).is_absolute() else stack_root() / folder
            async with runtime.pool.acquire() as conn, conn.transaction():
                count = await service.load_knowledge_base(conn, path)
            log.info("knowledge_base_loaded", folder=str(path), articles=count)

    runtime.started_hooks.append(load_knowledge_base)
    return runtime


def stack_root() -> Path:
    from shared.stack import ROOT

    return ROOT


def create_app(settings: AssistSettings | None = None) -> Starlette:
    runtime = build_runtime(settings)

    async def summary(request: Request) -> JSONResponse:
        cid = request.path_params["conversation_id"]
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT summary, entities, provider, message_count, updated_at FROM summaries "
                "WHERE conversation_id = $1",
                cid,
            )
        if row is None:
            return JSONResponse({"error": f"no summary yet for conversation {cid!r}"}, status_code=404)
        return JSONResponse(
            {
                "conversation_id": cid,
                **{k: row[k] for k in ("summary", "entities", "provider", "message_count")},
                "updated_at": row["updated_at"].isoformat(),
            }
        )

    auth = Auth.from_env()

    async def kb_search(request: Request) -> JSONResponse:
        q = (request.query_params.get("q") or "").strip()
        if not q:
            return JSONResponse({"error": "give a query: /kb/search?q=refund+duplicate+charge"}, status_code=400)
        try:
            limit = min(max(int(request.query_params.get("limit", "5")), 1), 50)
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        async with runtime.pool.acquire() as conn:
            hits = await service.search(conn, q, limit, request.query_params.get("language"))
        return JSONResponse({"query": q, "articles": hits})

    async def kb_articles(request: Request) -> JSONResponse:
        """POST one article or a list (JSON); knowledge managers hold the supervisor role."""
        principal, error, status = supervisor_or_error(
            auth, request.headers, request.query_params, "editing the knowledge base"
        )
        if principal is None:
            return JSONResponse({"error": error}, status_code=status)
        try:
            body = await request.json()
            docs = body if isinstance(body, list) else [body]
            articles = [service.Article.model_validate(d) for d in docs]
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"error": f"invalid article: {exc}"}, status_code=422)
        async with runtime.pool.acquire() as conn, conn.transaction():
            created = [await service.upsert_article(conn, a) for a in articles]
        return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})

    async def kb_article(request: Request) -> JSONResponse:
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow(service.Q.get_article, request.path_params["article_id"])
        if row is None:
            return JSONResponse({"error": f"no article {request.path_params['article_id']!r}"}, status_code=404)
        return JSONResponse(jsonable(dict(row)))

    return runtime.http_app(
        [
            Route("/conversations/{conversation_id}/summary", summary),
            Route("/kb/search", kb_search),
            Route("/kb/articles", kb_articles, methods=["POST"]),
            Route("/kb/articles/{article_id}", kb_article),
        ]
    )
