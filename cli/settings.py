from pydantic import SecretStr

from shared.settings import CouncilDataSettings


class CliSettings(CouncilDataSettings):
    """Settings of the ``tenancy`` command; reads ``.tenancy/stack.env`` when present."""

    broker_connect_timeout_seconds: float = 5.0
    # The server holding the shared services' databases, as the isolation worker is told.
    tenant_database_url: str | None = None
    # The operator API, as `make run` writes it, and a token for `tenancy api`.
    api_url: str | None = None
    tenancy_token: SecretStr | None = None

    @property
    def tenant_server_url(self) -> str:
        return self.tenant_database_url or self.database_url
