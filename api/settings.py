from pydantic import Field

from shared.settings import CouncilDataSettings


class ApiSettings(CouncilDataSettings):
    """Settings of the operator API; ``make run`` writes API_URL beside the others."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=18080, ge=0, le=65535)
    # Wrong tokens (bearer tokens, the web's sign-in and session cookie) one client address may
    # send within the window; past that it is answered 429 until the oldest is a window old.
    auth_failure_limit: int = Field(default=30, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
