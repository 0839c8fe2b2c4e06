"""Rolling a service's new migrations out to one tenancy, and recording the result.

To be implemented (issue 3, item 3).
"""

from __future__ import annotations

from services.isolation.databases import ServiceDatabases
from shared.db import Connection
from shared.events import MigrationRequestedData, TenancyMigratedData


async def migrate(
    databases: ServiceDatabases, tenancy_id: str, request: MigrationRequestedData, conn: Connection
) -> TenancyMigratedData:
    """``conn`` is the isolation worker's own transaction, to record the result in."""
    raise NotImplementedError
