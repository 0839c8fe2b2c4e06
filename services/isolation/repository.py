"""The isolation ledger, kept in each service database's ``tenancy_platform`` schema: which
tenancies have a schema and role there, their secret, and which migrations each has."""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import Connection


@dataclass(frozen=True)
class LedgerEntry:
    schema_name: str
    role_name: str
    tier: str
    migrations: list[int]


class Ledger:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def lock_tenancy(self, tenancy_id: str) -> None:
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"tenant:{tenancy_id}"
        )

    async def get(self, tenancy_id: str) -> LedgerEntry | None:
        row = await self.conn.fetchrow(
            "SELECT schema_name, role_name, tier FROM tenancy_platform.tenants"
            " WHERE tenancy_id = $1",
            tenancy_id,
        )
        if row is None:
            return None
        versions = await self.conn.fetch(
            "SELECT version FROM tenancy_platform.tenant_migrations WHERE tenancy_id = $1"
            " ORDER BY version",
            tenancy_id,
        )
        return LedgerEntry(
            row["schema_name"], row["role_name"], row["tier"], [v["version"] for v in versions]
        )

    async def add(
        self, tenancy_id: str, service_id: str, tier: str, schema: str, role: str, password: str
    ) -> None:
        await self.conn.execute(
            "INSERT INTO tenancy_platform.tenants"
            " (tenancy_id, service_id, tier, schema_name, role_name, password)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            tenancy_id,
            service_id,
            tier,
            schema,
            role,
            password,
        )

    async def record_migration(self, tenancy_id: str, version: int) -> None:
        await self.conn.execute(
            "INSERT INTO tenancy_platform.tenant_migrations (tenancy_id, version) VALUES ($1, $2)",
            tenancy_id,
            version,
        )
