"""assist's composition root: `uvicorn --factory assist.app:create_app`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from assist import handlers
from assist.settings import AssistSettings
from shared import topics
from shared.runtime import Runtime

PRODUCES = {topics.ASSIST: "assist.summary_ready (and later articles, replies, case summaries) per conversation"}


def build_runtime(settings: AssistSettings | None = None) -> Runtime:
    runtime = Runtime("assist", settings or AssistSettings(), package="assist", produces=PRODUCES)
    handlers.register(runtime)
    return runtime


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

    return runtime.http_app([Route("/conversations/{conversation_id}/summary", summary)])
