from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PresenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRESENCE_", extra="ignore")

    config_file: str = ""
    # an agent is offline only when no device has beaten for this long
    device_timeout_s: float = 60.0
    device_sweep_interval_s: float = 1.0
