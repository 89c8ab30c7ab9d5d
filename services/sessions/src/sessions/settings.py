from pydantic_settings import SettingsConfigDict

from shared.auth import DEV_SECRET
from shared.settings import ServiceSettings


class SessionsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SESSIONS_", extra="ignore")

    config_file: str = ""
    # Gateway authentication: HS256 tokens signed with this secret (embedded default), or
    # RS256/ES256 tokens checked against an OIDC provider's JWKS in production.
    gateway_secret: str = DEV_SECRET
    oidc_jwks_url: str = ""
    oidc_issuer: str = ""
    oidc_audience: str = ""
    # events kept per agent in the gateway for reconnects; older resumes reload the snapshot
    resume_buffer: int = 1000
    heartbeat_interval_s: float = 20.0
