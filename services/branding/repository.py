from __future__ import annotations

from typing import Any

from shared.db import Connection


class BrandVersions:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def current(self, tenancy_id: str) -> tuple[int, str] | None:
        row = await self.conn.fetchrow(
            "SELECT v.version, v.content_hash FROM branding.current_theme c"
            " JOIN branding.brand_versions v USING (tenancy_id, version)"
            " WHERE c.tenancy_id = $1",
            tenancy_id,
        )
        return (row["version"], row["content_hash"]) if row else None

    async def add_and_make_current(
        self, tenancy_id: str, brand: dict[str, Any], content_hash: str
    ) -> int:
        version: int = await self.conn.fetchval(
            "INSERT INTO branding.brand_versions (tenancy_id, version, brand, content_hash)"
            " SELECT $1, coalesce(max(version), 0) + 1, $2, $3"
            " FROM branding.brand_versions WHERE tenancy_id = $1 RETURNING version",
            tenancy_id,
            brand,
            content_hash,
        )
        await self.conn.execute(
            "INSERT INTO branding.current_theme (tenancy_id, version) VALUES ($1, $2)"
            " ON CONFLICT (tenancy_id) DO UPDATE SET version = EXCLUDED.version",
            tenancy_id,
            version,
        )
        return version
