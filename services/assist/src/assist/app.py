"""assist's composition root: `uvicorn --factory assist.app:create_app`."""

from __future__ import annotations

import os
from collections.abc import Callable

import structlog
from starlette.applications import Starlette

from assist import config, handlers
from assist.followup import POLL_S
from assist.http import routes
from assist.providers import Assistant, OpenAICompatible, Provider
from assist.service import AssistService
from assist.settings import AssistSettings
from assist.store import AssistStore, pg_store
from shared import topics
from shared.auth import Auth
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
) -> tuple[Runtime[AssistStore, None], AssistService]:
    settings = settings or AssistSettings()
    config_file = settings.config_file or os.environ.get("SWITCHBOARD_CONFIG") or ""
    cfg = config.load(config_file)
    runtime: Runtime[AssistStore, None] = Runtime(
        "assist", settings, package="assist", produces=PRODUCES, store=store_factory(database), database=database
    )
    assist = AssistService(
        runtime,
        assistant_from(settings),
        settings.debounce_ms / 1000,
        max(settings.max_wait_ms, settings.debounce_ms) / 1000,
    )
    handlers.register(runtime, assist.followup)
    runtime.periodic("assist_debouncer", assist.followup.step, interval_s=POLL_S, wake=assist.followup.wake)
    if isinstance(assist.assistant.remote, OpenAICompatible):
        runtime.stopping_hooks.append(assist.assistant.remote.close)

    async def load_content() -> None:
        knowledge = assist.knowledge
        async with runtime.transaction() as uow:
            if cfg.knowledge_base:
                count = await knowledge.load_knowledge_base(uow.store, config.resolve(cfg.knowledge_base, config_file))
                log.info("knowledge_base_loaded", folder=cfg.knowledge_base, articles=count)
            if cfg.reply_library:
                count = await knowledge.load_reply_library(uow.store, config.resolve(cfg.reply_library, config_file))
                log.info("reply_library_loaded", file=cfg.reply_library, replies=count)
            await knowledge.refresh(uow.store)

    runtime.started_hooks.append(load_content)
    return runtime, assist


def build_runtime(settings: AssistSettings | None = None, database: Database | None = None) -> Runtime:
    return build(settings, database)[0]


def create_app(settings: AssistSettings | None = None, database: Database | None = None) -> Starlette:
    runtime, assist = build(settings, database)
    app = runtime.http_app(routes(runtime, assist, Auth.from_env()))
    app.state.assist = assist
    return app
