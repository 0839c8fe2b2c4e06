"""Each tenancy's login, fetched from the platform over the service's authenticated channel.

The password is only ever in memory: never logged (its ``repr`` hides it), never written down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import httpx


class CredentialsUnavailable(LookupError):
    """The platform has no login for this tenancy (not isolated yet, or removed)."""


@dataclass(frozen=True)
class Credentials:
    tenancy_id: str
    role: str
    database: str
    schema: str
    dsn: str = field(repr=False)


class CredentialSource(Protocol):
    async def fetch(self, tenancy_id: str) -> Credentials: ...


class PlatformCredentials:
    """``GET /services/{service}/tenancies/{id}/credentials`` on the operator API, with the
    service's own token (role ``service``): it sees its own service's tenancies only."""

    def __init__(self, api_url: str, service_id: str, token: str, timeout: float = 10.0) -> None:
        self._service_id = service_id
        self._http = httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def fetch(self, tenancy_id: str) -> Credentials:
        response = await self._http.get(
            f"/services/{self._service_id}/tenancies/{tenancy_id}/credentials"
        )
        if response.status_code == 404:
            raise CredentialsUnavailable(f"no credentials for tenancy {tenancy_id}")
        response.raise_for_status()
        body = response.json()
        return Credentials(
            tenancy_id=tenancy_id,
            role=body["role"],
            database=body["database"],
            schema=body["schema"],
            dsn=body["dsn"],
        )

    async def close(self) -> None:
        await self._http.aclose()
