"""Offboarding with exit: export a tenancy's data in open formats, then remove it.

To be implemented (issue 3, item 4).
"""

from __future__ import annotations

from pathlib import Path

from services.isolation.databases import ServiceDatabases
from shared.catalogue import ServiceManifest
from shared.events import IsolationRemovedData


async def remove(
    databases: ServiceDatabases, exports_dir: Path, tenancy_id: str, manifest: ServiceManifest
) -> IsolationRemovedData:
    raise NotImplementedError
