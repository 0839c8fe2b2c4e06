from pydantic import Field

from shared.settings import CouncilDataSettings


class ApiSettings(CouncilDataSettings):
    """Settings of the operator API; ``make run`` writes API_URL beside the others."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=18080, ge=0, le=65535)
