"""assist's composition root: `uvicorn --factory assist.app:create_app`."""

from __future__ import annotations

import os
from collections.abc import Callable

import structlog
from starlette.applications import Starlette

from assist import config, handlers
from assist.followup import POLL_S, AssistBatch, Pace
from assist.http import routes
from assist.metrics import register_metrics
from assist.providers import Assistant, OpenAICompatible, Provider
from assist.service import AssistService
from assist.settings import AssistSettings
from assist.store import AssistStore, pg_store
from assist.transcript import Limits
from shared import topics
from shared.http import install, service_auth
from shared.runtime import Runtime
from shared.tx import Database, MemoryDatabase, Tx

log = structlog.get_logger("switchboard.assist")

PRODUCES = {
    topics.ASSIST: "assist.articles_surfaced, assist.replies_suggested, assist.summary_ready, "
    "assist.case_summary_drafted, assist.escalation_detected per conversation"
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


def store_factory(database: Database | None) -> Callable[[Tx], AssistStore]:
    """The store on a transaction: PostgreSQL's, or the fake a `MemoryDatabase` holds."""
    if isinstance(database, MemoryDatabase):
        fake: AssistStore = database.states[0]
        return lambda tx: fake
    return pg_store


def build(
    settings: AssistSettings | None = None, database: Database | None = None
) -> tuple[Runtime[AssistStore, AssistBatch], AssistService]:
    settings = settings or AssistSettings()
    config_file = settings.config_file or os.environ.get("SWITCHBOARD_CONFIG") or ""
    cfg = config.load(config_file)
    runtime: Runtime[AssistStore, AssistBatch] = Runtime(
        "assist",
        settings,
        package="assist",
        produces=PRODUCES,
        store=store_factory(database),
        batch=AssistBatch,
        database=database,
    )
    assist = AssistService(
        runtime,
        assistant_from(settings),
        settings.debounce_ms / 1000,
        max(settings.max_wait_ms, settings.debounce_ms) / 1000,
        Pace(
            settings.update_budget_ms / 1000,
            Limits(settings.transcript_messages, settings.transcript_chars),
            settings.update_concurrency,
        ),
        settings.compute_threads,
    )
    handlers.register(runtime, assist.followup)
    runtime.periodic("assist_debouncer", assist.followup.step, interval_s=POLL_S, wake=assist.followup.wake)
    runtime.stopping_hooks.append(assist.followup.stop)
    if isinstance(assist.assistant.remote, OpenAICompatible):
        runtime.stopping_hooks.append(assist.assistant.remote.close)

    async def load_content() -> None:
        # Read and encode first, then store in one short transaction: replicas starting together
        # wait on each other's row locks for milliseconds, not for the encoding.
        knowledge = assist.knowledge
        articles = (
            await knowledge.read_knowledge_base(config.resolve(cfg.knowledge_base, config_file))
            if cfg.knowledge_base
            else None
        )
        replies = (
            await knowledge.read_reply_library(config.resolve(cfg.reply_library, config_file))
            if cfg.reply_library
            else None
        )
        async with runtime.transaction() as uow:
            if articles is not None:
                await knowledge.upsert_articles(uow.store, *articles)
                log.info("knowledge_base_loaded", folder=cfg.knowledge_base, articles=len(articles[0]))
            if replies is not None:
                await knowledge.upsert_replies(uow.store, *replies)
                log.info("reply_library_loaded", file=cfg.reply_library, replies=len(replies[0]))
            await knowledge.refresh(uow.store)

    runtime.started_hooks.append(lambda: runtime.retrying(load_content, "load_content"))
    return runtime, assist


def build_runtime(settings: AssistSettings | None = None, database: Database | None = None) -> Runtime:
    return build(settings, database)[0]


def create_app(settings: AssistSettings | None = None, database: Database | None = None) -> Starlette:
    runtime, assist = build(settings, database)
    register_metrics(runtime)
    app = install(runtime.http_app(routes(runtime, assist, service_auth(runtime))))
    app.state.assist = assist
    return app
