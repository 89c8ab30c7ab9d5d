from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PresenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRESENCE_", extra="ignore")
