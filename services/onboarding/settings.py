from pydantic import Field

from shared.settings import CouncilDataSettings


class OnboardingSettings(CouncilDataSettings):
    """Settings of the onboarding worker (and of the CLI, which accepts requests for it)."""

    # A tenancy waiting this long in `requested` or `registered` has its triggering event
    # published again (same id, so work already done is not repeated)...
    redrive_after_seconds: float = Field(default=30.0, gt=0)
    # ...at most this many times, before it is marked failed with the reason.
    redrive_max_attempts: int = Field(default=5, ge=1)
