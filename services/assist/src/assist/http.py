"""assist's HTTP API: summaries and case summaries on demand, feedback on suggestions, knowledge-base
search and management, and the reply library.

Every read needs a token. A conversation's summaries, case summary and suggestions are for the
agents who hold or held it (assist learns holders from routing.v1) and for supervisors; a case
summary is saved by the agent who holds the conversation, the agent its draft was made for (who
released it), or a supervisor. The knowledge base and the reply library are read by any agent and
written by supervisors."""

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
from shared.auth import Auth, Principal
from shared.db import jsonable
from shared.http import HttpError, principal_of, read_json, supervisor_of
from shared.runtime import Runtime

MAX_QUERY_CHARS = 1000
MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # articles and reply templates, posted in bulk


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


async def may_read(store: AssistStore, principal: Principal, conversation_id: str, what: str) -> None:
    """A supervisor reads any conversation's `what`; an agent those it holds or held (HttpError 403
    otherwise, the same whether or not the conversation exists)."""
    if principal.is_supervisor:
        return
    if await store.find_holder(conversation_id, principal.subject) is None:
        raise HttpError(
            403,
            f"{principal.subject} has not held conversation {conversation_id!r}: its {what} is for the agents "
            "who hold or held it, and supervisors",
        )


def routes(runtime: Runtime[AssistStore, Any], assist: AssistService, auth: Auth) -> list[Route]:
    knowledge = assist.knowledge

    async def summary(request: Request) -> JSONResponse:
        principal = principal_of(request, auth)
        cid = request.path_params["conversation_id"]
        async with runtime.reading() as store:
            await may_read(store, principal, cid, "summary")
            count = await store.count_messages(cid) if request.method == "POST" else 0
        if request.method == "POST":  # on demand: summarise now, and send it on assist.v1 too
            if not count:
                return error(f"no messages yet in conversation {cid!r}", 404)
            await assist.process(cid, [f"summary:requested:{principal.subject}"])
        async with runtime.reading() as store:
            found = await store.find_summary(cid)
        if found is None:
            return error(f"no summary yet for conversation {cid!r}; POST to this address to make one", 404)
        return JSONResponse({"conversation_id": cid, **_json(found)})

    async def case_summary(request: Request) -> JSONResponse:
        principal = principal_of(request, auth)
        cid = request.path_params["conversation_id"]
        async with runtime.reading() as store:
            await may_read(store, principal, cid, "case summary")
        if request.method == "POST":  # draft now
            await assist.process(cid, [f"case:requested:{principal.subject}"])
        elif request.method == "PUT":  # the agent's reviewed version
            body = await read_json(request)
            try:
                saved = CaseSummary.model_validate(body)
            except ValidationError as exc:
                return error(f"invalid case summary: {exc}", 422)
            async with runtime.transaction() as uow:
                draft = await uow.store.find_case_summary(cid)
                if draft is None:
                    return error(f"no case summary drafted for {cid!r}; POST to draft one first", 404)
                holder = await uow.store.find_holder(cid, principal.subject)
                own = (holder is not None and holder.holds) or draft.agent_id == principal.subject
                if not (own or principal.is_supervisor):
                    raise HttpError(
                        403,
                        f"{principal.subject} does not hold conversation {cid!r} and its draft was made for "
                        f"{draft.agent_id or 'nobody in particular'}: the holder, that agent or a supervisor "
                        "saves its case summary",
                    )
                await uow.store.save_case_summary(cid, saved.model_dump(), principal.subject)
        async with runtime.reading() as store:
            found = await store.find_case_summary(cid)
        if found is None:
            return error(f"no case summary yet for conversation {cid!r}; POST to this address to draft one", 404)
        return JSONResponse(_json(found))

    async def feedback(request: Request) -> JSONResponse:
        principal = principal_of(request, auth)
        body = await read_json(request)
        try:
            verdict = Feedback.model_validate(body)
        except ValidationError as exc:
            return error(f'invalid feedback: {exc}; send {{"verdict": "accepted" | "edited" | "rejected"}}', 422)
        suggestion_id = request.path_params["suggestion_id"]
        async with runtime.transaction() as uow:
            suggestion = await uow.store.find_suggestion(suggestion_id)
            if suggestion is not None:
                await may_read(uow.store, principal, suggestion.conversation_id, "suggestions")
            ok, detail = await record_feedback(
                uow.store, suggestion_id, verdict.verdict, verdict.text, principal.subject
            )
        if not ok:
            return error(detail, 404 if detail.startswith("no suggestion") else 409)
        return JSONResponse({"suggestion_id": suggestion_id, "verdict": detail})

    async def kb_search(request: Request) -> JSONResponse:
        principal_of(request, auth)
        q = (request.query_params.get("q") or "").strip()
        if not q:
            return error("give a query: /kb/search?q=refund+duplicate+charge", 400)
        if len(q) > MAX_QUERY_CHARS:
            return error(f"the query has {len(q)} characters: at most {MAX_QUERY_CHARS}", 400)
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
        supervisor_of(request, auth, "editing the knowledge base")
        body = await read_json(request, max_bytes=MAX_UPLOAD_BYTES)
        try:
            articles = [Article.model_validate(d) for d in (body if isinstance(body, list) else [body])]
        except ValidationError as exc:
            return error(f"invalid article: {exc}", 422)
        async with runtime.transaction() as uow:
            created = await knowledge.upsert_articles(uow.store, articles)
        return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})

    async def kb_article(request: Request) -> JSONResponse:
        principal_of(request, auth)
        async with runtime.reading() as store:
            found = await store.find_article(request.path_params["article_id"])
        if found is None:
            return error(f"no article {request.path_params['article_id']!r}", 404)
        return JSONResponse(_json(found))

    async def replies(request: Request) -> JSONResponse:
        """POST reply templates (supervisor); GET lists the library and learned replies with feedback."""
        if request.method == "POST":
            supervisor_of(request, auth, "editing the reply library")
            body = await read_json(request, max_bytes=MAX_UPLOAD_BYTES)
            try:
                items = [LibraryReply.model_validate(d) for d in (body if isinstance(body, list) else [body])]
            except ValidationError as exc:
                return error(f"invalid reply: {exc}", 422)
            async with runtime.transaction() as uow:
                created = await knowledge.upsert_replies(uow.store, items)
            return JSONResponse({"created": sum(created), "updated": len(created) - sum(created)})
        principal_of(request, auth)
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
