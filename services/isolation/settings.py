from pathlib import Path

from pydantic import Field

from shared.settings import STATE_DIR, CommonSettings
from shared.topics import PARTITIONS


class IsolationSettings(CommonSettings):
    # The server that holds each shared service's database; by default the platform's own.
    tenant_database_url: str | None = None
    tenant_connection_limit: int = Field(default=20, ge=1)
    # Tenancies isolated at once, each on a consumer of its own that holds some of the topic's
    # partitions (so one tenancy's events stay in order): PostgreSQL runs one tenancy's DDL on
    # one core, so a worker handling one at a time leaves the others idle. Capped by the
    # partitions; a connection each to the platform and the service database.
    tenancies_at_once: int = Field(default=3, ge=1, le=PARTITIONS)
    # Where offboarding writes each tenancy's export archive before its data is dropped.
    exports_dir: Path = STATE_DIR / "exports"
