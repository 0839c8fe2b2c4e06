"""Rotating a tenancy's password: a new secret, and the old one stops working at once.

To be implemented (issue 3, item 2).
"""

from __future__ import annotations

from services.isolation.databases import ServiceDatabases
from shared.events import CredentialsRotatedData


async def rotate(
    databases: ServiceDatabases, tenancy_id: str, service_id: str
) -> CredentialsRotatedData:
    raise NotImplementedError
