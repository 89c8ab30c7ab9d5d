"""assist's HTTP API: summaries and case summaries on demand, feedback on suggestions, knowledge-base
search and management, and the reply library."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from assist.domain import Article, LibraryReply
from assist.service import AssistService
from assist.store import AssistStore
from assist.summaries import record_feedback
from shared.auth import Auth, Principal, supervisor_or_error, token_of
from shared.db import jsonable
from shared.runtime import Runtime


class CaseSummary(BaseModel):
    """What an agent saves after reviewing a draft."""

    model_config = ConfigDict(extra="allow")
    issue: str = Field(min_length=1, max_length=2000)
    actions: list[str] = Field(default_factory=list)
    resolution: str | None = None
    next_steps: list[str] = Field(default_factory=list)
    entities: dict[str, list[str]] = Field(default_factory=dict)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["accepted", "edited", "rejected"]
    text: str | None = None


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _json(record: Any) -> Any:
    return jsonable(dataclasses.asdict(record))


def routes(runtime: Runtime[AssistStore, Any], assist: AssistService, auth: Auth) -> list[Route]:
    knowledge = assist.knowledge

    def principal_of(request: Request) -> Principal | JSONResponse:
        """The caller, or the response refusing them."""
        token = token_of(request.headers, request.query_params)
        if not token:
            return error("sign in: send Authorization: Bearer <token> (switchboard token AGENT)", 401)
        try:
            return auth.verify(token)
        except Exception as exc:
            return error(f"invalid token: {exc}", 401)

    async def summary(request: Request) -> JSONResponse:
        cid = request.path_params["conversation_id"]
        if request.method == "POST":  # on demand: summarise now, and send it on assist.v1 too
            principal = principal_of(request)
            if isinstance(principal, JSONResponse):
                return principal
            async with runtime.reading() as store:
                count = await store.count_messages(cid)
            if not count:
                return error(f"no messages yet in conversation {cid!r}", 404)
            await assist.process(cid, [f"summary:requested:{principal.subject}"])
        async with runtime.reading() as store:
            found = await store.find_summary(cid)
        if found is None:
            return error(f"no summary yet for conversation {cid!r}; POST to this address to make one", 404)
        return JSONResponse({"conversation_id": cid, **_json(found)})

    async def case_summary(request: Request) -> JSONResponse:
        cid = request.path_params["conversation_id"]
        if request.method in ("POST", "PUT"):
            principal = principal_of(request)
            if isinstance(principal, JSONResponse):
                return principal
            if request.method == "POST":  # draft now
                await assist.process(cid, [f"case:requested:{principal.subject}"])
            else:  # the agent's reviewed version
                try:
                    saved = CaseSummary.model_validate(await request.json())
                except (ValueError, ValidationError) as exc:
                    return error(f"invalid case summary: {exc}", 422)
                async with runtime.transaction() as uow:
                    ok = await uow.store.save_case_summary(cid, saved.model_dump(), principal.subject)
                if not ok:
                    return error(f"no case summary drafted for {cid!r}; POST to draft one first", 404)
        async with runtime.reading() as store:
            found = await store.find_case_summary(cid)
        if found is None:
            return error(f"no case summary yet for conversation {cid!r}; POST to this address to draft one", 404)
        return JSONResponse(_json(found))

    async def feedback(request: Request) -> JSONResponse:
        principal = principal_of(request)
        if isinstance(principal, JSONResponse):
            return principal
        try:
            body = Feedback.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return error(f'invalid feedback: {exc}; send {{"verdict": "accepted" | "edited" | "rejected"}}', 422)
        suggestion_id = request.path_params["suggestion_id"]
        async with runtime.transaction() as uow:
            ok, detail = await record_feedback(uow.store, suggestion_id, body.verdict, body.text, principal.subject)
        if not ok:
            return error(detail, 404 if detail.startswith("no suggestion") else 409)
        return JSONResponse({"suggestion_id": suggestion_id, "verdict": detail})

    async def kb_search(request: Request) -> JSONResponse:
        q = (request.query_params.get("q") or "").strip()
        if not q:
            return error("give a query: /kb/search?q=refund+duplicate+charge", 400)
        try:
            limit = min(max(int(request.query_params.get("limit", "5")), 1), 50)
        except ValueError:
            return error("limit must be a whole number", 400)
        async with runtime.transaction() as uow:  # a refresh may backfill vectors
            await knowledge.refresh(uow.store)
            hits = await knowledge.search(uow.store, q, limit, request.query_params.get("language"))
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
        async with runtime.transaction() as uow:
            created = await knowledge.upsert_articles(uow.store, articles)
        return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})

    async def kb_article(request: Request) -> JSONResponse:
        async with runtime.reading() as store:
            found = await store.find_article(request.path_params["article_id"])
        if found is None:
            return error(f"no article {request.path_params['article_id']!r}", 404)
        return JSONResponse(_json(found))

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
            async with runtime.transaction() as uow:
                created = await knowledge.upsert_replies(uow.store, items)
            return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})
        async with runtime.reading() as store:
            rows = await store.list_replies()
        return JSONResponse({"replies": [_json(r) for r in rows]})

    return [
        Route("/conversations/{conversation_id}/summary", summary, methods=["GET", "POST"]),
        Route("/conversations/{conversation_id}/case-summary", case_summary, methods=["GET", "POST", "PUT"]),
        Route("/suggestions/{suggestion_id}/feedback", feedback, methods=["POST"]),
        Route("/kb/search", kb_search),
        Route("/kb/articles", kb_articles, methods=["POST"]),
        Route("/kb/articles/{article_id}", kb_article),
        Route("/replies", replies, methods=["GET", "POST"]),
    ]
