"""assist's composition root: `uvicorn --factory assist.app:create_app`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from assist import handlers
from assist.providers import Assistant, OpenAICompatible, Provider
from assist.service import Article, AssistService, CaseSummary, Feedback, LibraryReply, Q
from assist.settings import AssistSettings
from shared import topics
from shared.auth import Auth, supervisor_or_error, token_of
from shared.db import jsonable
from shared.runtime import Runtime, load_config

log = structlog.get_logger("switchboard.assist")

PRODUCES = {
    topics.ASSIST: "assist.articles_surfaced, assist.replies_suggested, assist.summary_ready, "
    "assist.case_summary_drafted per conversation"
}


def assistant_from(settings: AssistSettings) -> Assistant:
    remote: Provider | None = None
    if settings.llm_base_url:
        if not settings.llm_model:
            raise SystemExit("ASSIST_LLM_BASE_URL is set but ASSIST_LLM_MODEL is not: name the model to ask")
        remote = OpenAICompatible(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_embedding_model,
            settings.llm_timeout_s,
        )
    return Assistant(remote, settings.llm_timeout_s, settings.llm_cooldown_s)


def build(settings: AssistSettings | None = None) -> tuple[Runtime, AssistService]:
    settings = settings or AssistSettings()
    runtime: Runtime[Any, Any] = Runtime("assist", settings, package="assist", produces=PRODUCES, store=lambda tx: tx)
    assist = AssistService(
        runtime,
        assistant_from(settings),
        settings.debounce_ms / 1000,
        max(settings.max_wait_ms, settings.debounce_ms) / 1000,
    )
    handlers.register(runtime, assist)
    if isinstance(assist.assistant.remote, OpenAICompatible):
        runtime.stopping_hooks.append(assist.assistant.remote.close)

    async def load_demo_content() -> None:
        config_file = settings.config_file or os.environ.get("SWITCHBOARD_CONFIG") or ""
        cfg = load_config(config_file, "assist")
        async with runtime.pool.acquire() as conn, conn.transaction():
            if folder := cfg.get("knowledge_base"):
                count = await assist.load_knowledge_base(conn, _path(folder, config_file))
                log.info("knowledge_base_loaded", folder=str(folder), articles=count)
            if library := cfg.get("reply_library"):
                count = await assist.load_reply_library(conn, _path(library, config_file))
                log.info("reply_library_loaded", file=str(library), replies=count)
            await assist.index.refresh(conn)

    runtime.started_hooks.append(load_demo_content)
    return runtime, assist


def build_runtime(settings: AssistSettings | None = None) -> Runtime:
    return build(settings)[0]


def _path(value: str, config_file: str) -> Path:
    """A path from the configuration; a relative one is relative to the configuration file."""
    return Path(value) if Path(value).is_absolute() else Path(config_file).resolve().parent / value


def create_app(settings: AssistSettings | None = None) -> Starlette:
    runtime, assist = build(settings)
    auth = Auth.from_env()

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def principal_of(request: Request) -> tuple[Any, JSONResponse | None]:
        token = token_of(request.headers, request.query_params)
        if not token:
            return None, error("sign in: send Authorization: Bearer <token> (switchboard token AGENT)", 401)
        try:
            return auth.verify(token), None
        except Exception as exc:
            return None, error(f"invalid token: {exc}", 401)

    async def summary(request: Request) -> JSONResponse:
        cid = request.path_params["conversation_id"]
        if request.method == "POST":  # on demand: summarise now, and send it on assist.v1 too
            principal, refused = principal_of(request)
            if refused:
                return refused
            async with runtime.pool.acquire() as conn:
                if not await conn.fetchval(Q.message_count, cid):
                    return error(f"no messages yet in conversation {cid!r}", 404)
            await assist.process(cid, [f"summary:requested:{principal.subject}"])
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow(Q.get_summary, cid)
        if row is None:
            return error(f"no summary yet for conversation {cid!r}; POST to this address to make one", 404)
        return JSONResponse({"conversation_id": cid, **jsonable(dict(row))})

    async def case_summary(request: Request) -> JSONResponse:
        cid = request.path_params["conversation_id"]
        if request.method in ("POST", "PUT"):
            principal, refused = principal_of(request)
            if refused:
                return refused
            if request.method == "POST":  # draft now
                await assist.process(cid, [f"case:requested:{principal.subject}"])
            else:  # the agent's reviewed version
                try:
                    saved = CaseSummary.model_validate(await request.json())
                except (ValueError, ValidationError) as exc:
                    return error(f"invalid case summary: {exc}", 422)
                async with runtime.pool.acquire() as conn:
                    status = await conn.fetchval(Q.save_case_summary, cid, saved.model_dump(), principal.subject)
                if status is None:
                    return error(f"no case summary drafted for {cid!r}; POST to draft one first", 404)
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow(Q.get_case_summary, cid)
        if row is None:
            return error(f"no case summary yet for conversation {cid!r}; POST to this address to draft one", 404)
        return JSONResponse(jsonable(dict(row)))

    async def feedback(request: Request) -> JSONResponse:
        principal, refused = principal_of(request)
        if refused:
            return refused
        try:
            body = Feedback.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return error(f'invalid feedback: {exc}; send {{"verdict": "accepted" | "edited" | "rejected"}}', 422)
        async with runtime.pool.acquire() as conn, conn.transaction():
            ok, detail = await assist.record_feedback(
                conn, request.path_params["suggestion_id"], body.verdict, body.text, principal.subject
            )
        if not ok:
            return error(detail, 404 if detail.startswith("no suggestion") else 409)
        return JSONResponse({"suggestion_id": request.path_params["suggestion_id"], "verdict": detail})

    async def kb_search(request: Request) -> JSONResponse:
        q = (request.query_params.get("q") or "").strip()
        if not q:
            return error("give a query: /kb/search?q=refund+duplicate+charge", 400)
        try:
            limit = min(max(int(request.query_params.get("limit", "5")), 1), 50)
        except ValueError:
            return error("limit must be a whole number", 400)
        async with runtime.pool.acquire() as conn:
            await assist.index.refresh(conn)
            hits = await assist.search(conn, q, limit, request.query_params.get("language"))
        return JSONResponse({"query": q, "articles": hits})

    async def kb_articles(request: Request) -> JSONResponse:
        """POST one article or a list (JSON); knowledge managers hold the supervisor role."""
        principal, problem, status = supervisor_or_error(
            auth, request.headers, request.query_params, "editing the knowledge base"
        )
        if principal is None:
            return error(problem, status)
        try:
            body = await request.json()
            articles = [Article.model_validate(d) for d in (body if isinstance(body, list) else [body])]
        except (ValueError, ValidationError) as exc:
            return error(f"invalid article: {exc}", 422)
        async with runtime.pool.acquire() as conn, conn.transaction():
            created = await assist.upsert_articles(conn, articles)
        return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})

    async def kb_article(request: Request) -> JSONResponse:
        async with runtime.pool.acquire() as conn:
            row = await conn.fetchrow(Q.get_article, request.path_params["article_id"])
        if row is None:
            return error(f"no article {request.path_params['article_id']!r}", 404)
        return JSONResponse(jsonable(dict(row)))

    async def replies(request: Request) -> JSONResponse:
        """POST reply templates (supervisor); GET lists the library and learned replies with feedback."""
        if request.method == "POST":
            principal, problem, status = supervisor_or_error(
                auth, request.headers, request.query_params, "editing the reply library"
            )
            if principal is None:
                return error(problem, status)
            try:
                body = await request.json()
                items = [LibraryReply.model_validate(d) for d in (body if isinstance(body, list) else [body])]
            except (ValueError, ValidationError) as exc:
                return error(f"invalid reply: {exc}", 422)
            async with runtime.pool.acquire() as conn, conn.transaction():
                created = await assist.upsert_replies(conn, items)
            return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})
        async with runtime.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, source, title, text, uses, shown, accepted, edited, rejected FROM replies "
                "ORDER BY source DESC, id"
            )
        return JSONResponse({"replies": [dict(r) for r in rows]})

    app = runtime.http_app(
        [
            Route("/conversations/{conversation_id}/summary", summary, methods=["GET", "POST"]),
            Route("/conversations/{conversation_id}/case-summary", case_summary, methods=["GET", "POST", "PUT"]),
            Route("/suggestions/{suggestion_id}/feedback", feedback, methods=["POST"]),
            Route("/kb/search", kb_search),
            Route("/kb/articles", kb_articles, methods=["POST"]),
            Route("/kb/articles/{article_id}", kb_article),
            Route("/replies", replies, methods=["GET", "POST"]),
        ]
    )
    app.state.assist = assist
    return app
