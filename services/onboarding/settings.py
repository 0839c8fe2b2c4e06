from shared.settings import CouncilDataSettings


class OnboardingSettings(CouncilDataSettings):
    """Settings of the onboarding worker (and of the CLI, which accepts requests for it)."""
