from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AssistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ASSIST_", extra="ignore")

    config_file: str = ""
