from pydantic import Field

from shared.settings import CouncilDataSettings


class ApiSettings(CouncilDataSettings):
    """Settings of the operator API; ``make run`` writes API_URL beside the others."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=18080, ge=0, le=65535)
    # Wrong tokens (bearer tokens, the web's sign-in and session cookie) one client address may
    # send within the window; past that it is answered 429 until the oldest is a window old.
    auth_failure_limit: int = Field(default=30, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    # The server holding the shared services' databases, as the isolation worker is told: the
    # tenancies' connection strings handed to a service's software point there.
    tenant_database_url: str | None = None

    @property
    def tenant_server_url(self) -> str:
        return self.tenant_database_url or self.database_url
