"""Settings base: every setting has a safe default for the embedded setup (make up)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_KAFKA = "127.0.0.1:19092"
EMBEDDED_DATABASE = "postgresql://switchboard:switchboard@127.0.0.1:15432/switchboard"


class ServiceSettings(BaseSettings):
    """Common settings; each service subclasses with its own env prefix (e.g. ROUTING_)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # DESIGN.md: KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL always win, unprefixed.
    kafka_bootstrap_servers: str = Field(
        EMBEDDED_KAFKA, validation_alias=AliasChoices("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str = Field(EMBEDDED_DATABASE, validation_alias=AliasChoices("database_url", "DATABASE_URL"))
    topic_prefix: str = Field("", validation_alias=AliasChoices("topic_prefix", "SWITCHBOARD_TOPIC_PREFIX"))
    # The service's own schema and login role. Empty role: use the DATABASE_URL's user.
    db_schema: str = ""
    db_user: str = ""
    db_password: str = ""
    db_pool_min: int = 1
    db_pool_max: int = 8
    log_level: str = Field("INFO", validation_alias=AliasChoices("log_level", "LOG_LEVEL"))
    log_format: str = Field("auto", validation_alias=AliasChoices("log_format", "LOG_FORMAT"))
    # most records handled in one batch (one transaction) per consumer: a poll takes what has arrived
    # at once, up to this (shared.messaging.take_available)
    max_batch: int = 500
    # longest one poll waits for the first record when none are there (a record arriving ends the
    # wait; records already there are taken at once)
    batch_timeout_ms: int = 200
    # longest the broker holds a consumer's fetch when none of its partitions has a record (a
    # record arriving answers it at once): how often an idle consumer asks again; also the longest a
    # batch rewound after a failure waits to be fetched again (aiokafka's default, 500, cost the
    # idle broker and services about 30 ms of CPU a second between them)
    fetch_max_wait_ms: int = 2000
    # a consumer off every conversation's path (projections, automation such as presence's rules)
    # pauses this long after a poll that brought records, so the records that follow are taken
    # together: under load it wakes a few times a second, not once per record of its topic. A
    # record after a quiet spell is handled at once; 0: every consumer takes records as they come
    background_gather_ms: int = 150
    # batches of the service's consumers that are ready while another is being handled are handled
    # together, in one transaction (shared.messaging.Coalescer); false: each in its own, as before
    coalesce_batches: bool = Field(
        True, validation_alias=AliasChoices("coalesce_batches", "SWITCHBOARD_COALESCE_BATCHES")
    )
    # uvicorn's loop: auto (uvloop when installed), uvloop or asyncio
    event_loop: str = Field("auto", validation_alias=AliasChoices("event_loop", "SWITCHBOARD_EVENT_LOOP"))
    transient_retries: int = 3
    max_consecutive_failures: int = 10
    # test hook: exit hard right after the outbox commit, before the relay publishes it
    fault_crash_before_publish: bool = False
    relay_enabled: bool = True

    # "production" refuses unsafe defaults at start (shared.production); anything else is development.
    environment: str = Field("development", validation_alias=AliasChoices("environment", "SWITCHBOARD_ENV"))
    # Where the HTTP server binds (ROUTING_HTTP_HOST=0.0.0.0 in a pod); port 0: the command line's.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # database hygiene: pool acquire, connect and statement timeouts; inbox rows kept longer than
    # the topics' retention (7 days) so a redelivered record is still recognised
    db_acquire_timeout_s: float = 5.0
    db_connect_timeout_s: float = 5.0
    db_statement_timeout_ms: int = 15_000
    # the planner's price of a page read out of order, on the service's connections (0: the server's):
    # its default (4) prices a spinning disk, and makes a sort of the whole backlog look cheaper than
    # an index walk that stops after the first rows, when the row estimate lags a surge
    db_random_page_cost: float = 1.1
    inbox_retention_hours: float = 8 * 24
    # health: each readiness probe's timeout; a consumer silent for longer than this is stuck
    ready_probe_timeout_s: float = 2.0
    live_stall_s: float = 60.0
    # a consumer out of its group this long while Kafka answers: the process exits to be restarted
    # (shared.health.GroupWatchdog); 0 turns this off
    group_lost_exit_s: float = 120.0
    # graceful drain on SIGTERM: finish the batch, flush the relay, leave the group, within this
    drain_timeout_s: float = 20.0
    # observability: Prometheus /metrics (on by default), OpenTelemetry tracing (off by default)
    metrics_enabled: bool = True
    tracing_enabled: bool = Field(
        False, validation_alias=AliasChoices("tracing_enabled", "SWITCHBOARD_TRACING_ENABLED")
    )
    otlp_endpoint: str = Field("", validation_alias=AliasChoices("otlp_endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"))

    @property
    def production(self) -> bool:
        return self.environment.strip().lower() == "production"
