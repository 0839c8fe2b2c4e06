"""The isolation ledger, kept in each service database's ``tenancy_platform`` schema: which
tenancies have a role and space there, their secret, and which migrations each has (recorded
in the database that holds the tenancy's data, in the same transaction as the migration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.catalogue import IsolationTier
from shared.db import Connection


@dataclass(frozen=True)
class LedgerEntry:
    tenancy_id: str
    service_id: str
    tier: IsolationTier
    database: str
    schema_name: str
    role_name: str
    rotated_at: datetime | None
    removed_at: datetime | None
    removal: dict[str, Any] | None


class Ledger:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def lock_tenancy(self, tenancy_id: str) -> None:
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"tenant:{tenancy_id}"
        )

    async def get(self, tenancy_id: str) -> LedgerEntry | None:
        row = await self.conn.fetchrow(
            "SELECT tenancy_id::text, service_id, tier, database_name, schema_name, role_name,"
            " rotated_at, removed_at, removal FROM tenancy_platform.tenants"
            " WHERE tenancy_id = $1",
            tenancy_id,
        )
        if row is None:
            return None
        return LedgerEntry(
            tenancy_id=row["tenancy_id"],
            service_id=row["service_id"],
            tier=IsolationTier(row["tier"]),
            database=row["database_name"],
            schema_name=row["schema_name"],
            role_name=row["role_name"],
            rotated_at=row["rotated_at"],
            removed_at=row["removed_at"],
            removal=row["removal"],
        )

    async def add(
        self,
        tenancy_id: str,
        service_id: str,
        tier: IsolationTier,
        database: str,
        schema: str,
        role: str,
        password: str,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO tenancy_platform.tenants (tenancy_id, service_id, tier, database_name,"
            " schema_name, role_name, password) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tenancy_id,
            service_id,
            tier.value,
            database,
            schema,
            role,
            password,
        )

    async def password(self, tenancy_id: str) -> str | None:
        value: str | None = await self.conn.fetchval(
            "SELECT password FROM tenancy_platform.tenants WHERE tenancy_id = $1"
            " AND removed_at IS NULL",
            tenancy_id,
        )
        return value

    async def set_password(self, tenancy_id: str, password: str) -> None:
        await self.conn.execute(
            "UPDATE tenancy_platform.tenants SET password = $2, rotated_at = clock_timestamp()"
            " WHERE tenancy_id = $1",
            tenancy_id,
            password,
        )

    async def mark_removed(self, tenancy_id: str, removal: dict[str, Any]) -> None:
        # The secret goes with the role; the row stays as the record of what was removed.
        await self.conn.execute(
            "UPDATE tenancy_platform.tenants SET password = '', removed_at = now(),"
            " removal = $2 WHERE tenancy_id = $1",
            tenancy_id,
            removal,
        )

    async def tenants(self, service_id: str) -> list[LedgerEntry]:
        ids = await self.conn.fetch(
            "SELECT tenancy_id::text FROM tenancy_platform.tenants WHERE service_id = $1"
            " ORDER BY created_at",
            service_id,
        )
        entries = [await self.get(r["tenancy_id"]) for r in ids]
        return [e for e in entries if e is not None]


class Migrations:
    """Applied migration versions, in the database holding the data they changed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def of_tenancy(self, tenancy_id: str) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT version FROM tenancy_platform.tenant_migrations WHERE tenancy_id = $1"
            " ORDER BY version",
            tenancy_id,
        )
        return [r["version"] for r in rows]

    async def record_for_tenancy(self, tenancy_id: str, versions: list[int]) -> None:
        if versions:
            await self.conn.execute(
                "INSERT INTO tenancy_platform.tenant_migrations (tenancy_id, version)"
                " SELECT $1, unnest($2::int[])",
                tenancy_id,
                versions,
            )

    async def of_service(self) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT version FROM tenancy_platform.service_migrations ORDER BY version"
        )
        return [r["version"] for r in rows]

    async def record_for_service(self, versions: list[int]) -> None:
        if versions:
            await self.conn.execute(
                "INSERT INTO tenancy_platform.service_migrations (version)"
                " SELECT unnest($1::int[])",
                versions,
            )
