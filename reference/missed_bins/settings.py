"""The service's one settings model: the SDK's, and where its pages listen."""

from __future__ import annotations

from pydantic import Field

from tenancy_sdk import SdkSettings


class MissedBinsSettings(SdkSettings):
    missed_bins_host: str = "127.0.0.1"
    missed_bins_port: int = Field(default=18090, ge=0, le=65535)
