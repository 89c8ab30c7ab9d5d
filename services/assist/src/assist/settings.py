from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AssistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ASSIST_", extra="ignore")

    config_file: str = ""
    # Debounce: a conversation is processed once its messages have paused this long...
    debounce_ms: int = 300
    # ...or, in a steady stream, at least this often.
    max_wait_ms: int = 2000
    # One conversation update's time budget: past it, what is left takes the cheaper path (older new
    # messages embedded on the next update, the opening sentences instead of TextRank), and is counted.
    update_budget_ms: int = Field(1000, ge=10)
    # Conversations updated at once (each in its own task: a slow one never holds the others back).
    update_concurrency: int = Field(4, ge=1, le=64)
    # Worker threads for the updates' CPU work (embedding, TextRank, patterns), off the event loop.
    compute_threads: int = Field(2, ge=1, le=32)
    # The transcript an update reads: its latest this many messages...
    transcript_messages: int = Field(200, ge=1)
    # ...and at most this many characters of them (a longer message is cut to its first ones).
    transcript_chars: int = Field(64_000, ge=1000)
    # An OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM); empty = embedded only.
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_model: str = ""
    llm_embedding_model: str = ""
    # Past this the embedded path answers, and the endpoint is left alone for the cool-down.
    llm_timeout_s: float = 3.0
    llm_cooldown_s: float = 30.0
