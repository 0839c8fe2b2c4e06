"""The branding worker's tables: theme versions, the current one, custom domains and requests.

Every query is scoped by tenancy id.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Connection
from shared.events import ThemePaths


@dataclass(frozen=True)
class Version:
    version: int
    content_hash: str
    brand: dict[str, Any]
    paths: ThemePaths
    created_at: datetime
    current: bool


def _version(row: Any, current: int | None) -> Version:
    return Version(
        version=row["version"],
        content_hash=row["content_hash"],
        brand=row["brand"],
        paths=ThemePaths.model_validate(row["paths"]),
        created_at=row["created_at"],
        current=row["version"] == current,
    )


class BrandVersions:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def current(self, tenancy_id: str) -> Version | None:
        row = await self.conn.fetchrow(
            "SELECT v.* FROM branding.current_theme c"
            " JOIN branding.brand_versions v USING (tenancy_id, version)"
            " WHERE c.tenancy_id = $1",
            tenancy_id,
        )
        return _version(row, row["version"]) if row else None

    async def get(self, tenancy_id: str, version: int) -> Version | None:
        row = await self.conn.fetchrow(
            "SELECT v.*, c.version AS current_version FROM branding.brand_versions v"
            " LEFT JOIN branding.current_theme c USING (tenancy_id)"
            " WHERE v.tenancy_id = $1 AND v.version = $2",
            tenancy_id,
            version,
        )
        return _version(row, row["current_version"]) if row else None

    async def history(self, tenancy_id: str) -> list[Version]:
        rows = await self.conn.fetch(
            "SELECT v.*, c.version AS current_version FROM branding.brand_versions v"
            " LEFT JOIN branding.current_theme c USING (tenancy_id)"
            " WHERE v.tenancy_id = $1 ORDER BY v.version",
            tenancy_id,
        )
        return [_version(row, row["current_version"]) for row in rows]

    async def next_number(self, tenancy_id: str) -> int:
        number: int = await self.conn.fetchval(
            "SELECT coalesce(max(version), 0) + 1 FROM branding.brand_versions"
            " WHERE tenancy_id = $1",
            tenancy_id,
        )
        return number

    async def add(
        self,
        tenancy_id: str,
        version: int,
        brand: dict[str, Any],
        content_hash: str,
        paths: ThemePaths,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO branding.brand_versions"
            " (tenancy_id, version, brand, content_hash, paths) VALUES ($1, $2, $3, $4, $5)",
            tenancy_id,
            version,
            brand,
            content_hash,
            paths.model_dump(mode="json"),
        )

    async def make_current(self, tenancy_id: str, version: int) -> None:
        await self.conn.execute(
            "INSERT INTO branding.current_theme (tenancy_id, version) VALUES ($1, $2)"
            " ON CONFLICT (tenancy_id) DO UPDATE SET version = EXCLUDED.version",
            tenancy_id,
            version,
        )

    async def withdraw(self, tenancy_id: str) -> None:
        """No version is current any more; the versions stay, as the record of what was shown."""
        await self.conn.execute(
            "DELETE FROM branding.current_theme WHERE tenancy_id = $1", tenancy_id
        )


class Domains:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def claim(self, tenancy_id: str, domain: str) -> tuple[str, bool]:
        """The domain's verification token (made on first claim) and whether it is verified."""
        await self.conn.execute(
            "INSERT INTO branding.domains (tenancy_id, domain, token) VALUES ($1, $2, $3)"
            " ON CONFLICT (tenancy_id, domain) DO NOTHING",
            tenancy_id,
            domain,
            secrets.token_hex(16),
        )
        row = await self.conn.fetchrow(
            "SELECT token, status FROM branding.domains WHERE tenancy_id = $1 AND domain = $2",
            tenancy_id,
            domain,
        )
        assert row is not None
        return row["token"], row["status"] == "verified"

    async def mark_verified(self, tenancy_id: str, domain: str) -> None:
        await self.conn.execute(
            "UPDATE branding.domains SET status = 'verified', verified_at = now()"
            " WHERE tenancy_id = $1 AND domain = $2",
            tenancy_id,
            domain,
        )


@dataclass(frozen=True)
class Request:
    id: str
    kind: str
    status: str
    version: int | None
    problems: list[str]


class Requests:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def record(self, request_id: str, tenancy_id: str, kind: str) -> None:
        await self.conn.execute(
            "INSERT INTO branding.requests (id, tenancy_id, kind) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO NOTHING",
            request_id,
            tenancy_id,
            kind,
        )

    async def resolve(
        self,
        request_id: str,
        tenancy_id: str,
        status: str,
        version: int | None = None,
        problems: list[str] | None = None,
    ) -> None:
        await self.conn.execute(
            "UPDATE branding.requests SET status = $3, version = $4, problems = $5,"
            " resolved_at = now() WHERE id = $1 AND tenancy_id = $2",
            request_id,
            tenancy_id,
            status,
            version,
            problems or [],
        )

    async def get(self, request_id: str, tenancy_id: str) -> Request | None:
        row = await self.conn.fetchrow(
            "SELECT id::text, kind, status, version, problems FROM branding.requests"
            " WHERE id = $1 AND tenancy_id = $2",
            request_id,
            tenancy_id,
        )
        if row is None:
            return None
        return Request(row["id"], row["kind"], row["status"], row["version"], row["problems"])
