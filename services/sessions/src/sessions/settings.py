from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SessionsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SESSIONS_", extra="ignore")

    config_file: str = ""
    # events kept per agent in the gateway for reconnects; older resumes reload the snapshot
    resume_buffer: int = 1000
    heartbeat_interval_s: float = 20.0
    # The gateway reads the other services over HTTP with the person's own token (defaults: the
    # embedded stack's ports, tools.stack.Layout.http_ports).
    routing_url: str = "http://127.0.0.1:18081"
    presence_url: str = "http://127.0.0.1:18082"
    assist_url: str = "http://127.0.0.1:18083"
    http_timeout_s: float = 3.0
    # how long the gateway keeps an agent's queues and the status list between reads
    read_cache_s: float = 30.0
    # the supervisor stream waits this long after an event so a burst makes one recomputation
    overview_debounce_s: float = 0.3
    # /customer: a demo page where a person starts a chat as a customer (make up turns it on)
    customer_demo: bool = False
    # the supervisor view flags a conversation waiting longer than factor x its queue's
    # service-level threshold or than wait_s, and one handled longer than handle_s
    supervisor_wait_factor: float = 2.0
    supervisor_wait_s: float = 120.0
    supervisor_handle_s: float = 900.0
