"""What a shared service tells the SDK about itself, read from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


class SdkSettings(CommonSettings):
    """A service's process subclasses this with its own settings, keeping one model a process.

    ``KAFKA_BOOTSTRAP_SERVERS``, ``TOPIC_PREFIX`` and ``THEMES_DIR`` are the platform's own
    (see :class:`shared.settings.CommonSettings`); ``DATABASE_URL`` is not used: the service
    reaches each tenancy's data only with that tenancy's own login."""

    tenancy_service_id: str = Field(
        default="bin-collections", pattern=r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$"
    )
    # The operator API, which hands out each tenancy's credentials to the service's token.
    tenancy_api_url: str = "http://127.0.0.1:18080"
    tenancy_service_token: SecretStr = SecretStr("")
    # Where the read model of the tenancies is kept between restarts (one file per replica);
    # unset, it is rebuilt from the lifecycle topics at every start.
    tenancy_state_file: Path | None = None
    # Connections per tenancy: a request takes one for its transaction.
    tenancy_pool_size: int = Field(default=4, ge=1, le=32)
    # How often every tenancy's usage outbox is looked at for rows a crash left unsent; rows
    # written through the SDK are sent as soon as their transaction commits.
    tenancy_usage_sweep_seconds: float = Field(default=10.0, gt=0)
