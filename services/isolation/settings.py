from pathlib import Path

from pydantic import Field

from shared.settings import STATE_DIR, CommonSettings


class IsolationSettings(CommonSettings):
    # The server that holds each shared service's database; by default the platform's own.
    tenant_database_url: str | None = None
    tenant_connection_limit: int = Field(default=20, ge=1)
    # Where offboarding writes each tenancy's export archive before its data is dropped.
    exports_dir: Path = STATE_DIR / "exports"
