from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")

    config_file: str = ""
    offer_sweep_interval_s: float = 0.5
    drain_batch: int = 1000
    # how often waiting customers' positions and waits are re-announced (only when they moved)
    position_update_interval_s: float = 15.0
