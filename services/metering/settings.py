from pydantic import Field

from shared.settings import CommonSettings


class MeteringSettings(CommonSettings):
    """Settings of the metering worker."""

    # Usage events counted in one transaction; larger batches amortise the commit.
    usage_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Periods close by themselves this long after they end; usage arriving later still
    # reaches the next invoice as an adjustment.
    billing_auto_close: bool = True
    billing_close_delay_hours: float = Field(default=24.0, ge=0)
    billing_schedule_seconds: float = Field(default=60.0, gt=0)
