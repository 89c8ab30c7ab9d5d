from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")

    config_file: str = ""
    offer_sweep_interval_s: float = 0.5
    drain_batch: int = 1000
    # offer in the transaction that queued the work or freed the capacity (one commit, one relay
    # cycle); false leaves every offer to the drain loop, a transaction of its own after the commit.
    drain_with_batch: bool = True
    # how often waiting customers' positions and waits are re-announced (only when they moved)
    position_update_interval_s: float = 15.0
