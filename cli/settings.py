from shared.settings import CouncilDataSettings


class CliSettings(CouncilDataSettings):
    """Settings of the ``tenancy`` command; reads ``.tenancy/stack.env`` when present."""

    broker_connect_timeout_seconds: float = 5.0
