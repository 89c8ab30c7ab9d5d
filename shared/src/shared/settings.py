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
    # consumer behaviour
    max_batch: int = 500
    batch_timeout_ms: int = 20
    transient_retries: int = 3
    max_consecutive_failures: int = 10
    # test hook: exit hard right after the outbox commit, before the relay publishes it
    fault_crash_before_publish: bool = False
    relay_enabled: bool = True
