from pydantic import Field

from shared.settings import CommonSettings


class IsolationSettings(CommonSettings):
    # The server that holds each shared service's database; by default the platform's own.
    tenant_database_url: str | None = None
    tenant_connection_limit: int = Field(default=20, ge=1)
