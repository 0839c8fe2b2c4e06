from pydantic import Field

from shared.settings import CouncilDataSettings


class OnboardingSettings(CouncilDataSettings):
    """Settings of the onboarding worker (and of the CLI, which accepts requests for it)."""

    # A tenancy waiting this long in `requested` or `registered` has its triggering event
    # published again (same id, so work already done is not repeated)...
    redrive_after_seconds: float = Field(default=30.0, gt=0)
    # ...at most this many times, before it is marked failed with the reason.
    redrive_max_attempts: int = Field(default=5, ge=1)
    # On vesting day (London time) a reorganisation whose plan is ready is applied by the
    # worker, as `tenancy reorganise apply` would; one that is not ready is left to the operator.
    reorganise_automatically: bool = True
    # How often it looks: vesting day starts at midnight, and a plan waits this long at most.
    reorganise_check_seconds: float = Field(default=300.0, gt=0)
    # A reorganised predecessor's frozen data are exported and dropped, with its role, this many
    # days after its move was verified, in the same round; 0 (the default) leaves every
    # retirement to the operator's `tenancy reorganise retire`.
    reorganise_retire_after_days: int = Field(default=0, ge=0)
