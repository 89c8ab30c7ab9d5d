from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AssistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ASSIST_", extra="ignore")

    config_file: str = ""
    # Debounce: a conversation is processed once its messages have paused this long...
    debounce_ms: int = 300
    # ...or, in a steady stream, at least this often.
    max_wait_ms: int = 2000
    # An OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM); empty = embedded only.
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_model: str = ""
    llm_embedding_model: str = ""
    # Past this the embedded path answers, and the endpoint is left alone for the cool-down.
    llm_timeout_s: float = 3.0
    llm_cooldown_s: float = 30.0
