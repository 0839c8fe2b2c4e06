from pydantic import Field

from shared.settings import CommonSettings


class MeteringSettings(CommonSettings):
    """Settings of the metering worker."""

    # Usage events counted in one transaction, at most: a batch is what the consumer has
    # fetched, so a small backlog still goes at once. Larger batches amortise the statements
    # and the commit (5,000 take about 80 ms here); past that they gain nothing.
    usage_batch_size: int = Field(default=5000, ge=1, le=10_000)
    # Periods close by themselves this long after they end; usage arriving later still
    # reaches the next invoice as an adjustment.
    billing_auto_close: bool = True
    billing_close_delay_hours: float = Field(default=24.0, ge=0)
    billing_schedule_seconds: float = Field(default=60.0, gt=0)
