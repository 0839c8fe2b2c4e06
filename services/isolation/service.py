"""Isolating a tenancy in its shared service's database."""

from __future__ import annotations

import asyncio

import asyncpg

from services.isolation.plan import (
    TenantNames,
    database_setup,
    migration_statements,
    new_password,
    schema_tier,
    scram_verifier,
)
from services.isolation.repository import Ledger
from shared import db
from shared.catalogue import ServiceManifest
from shared.events import IsolationReadyData
from shared.identifiers import service_database_name
from shared.messaging import OUTAGE_ERRORS


class IsolationFailed(Exception):
    """The service's own SQL cannot be applied for this tenancy: a failed step, not an outage."""


class ServiceDatabases:
    """One pool per shared service's database, created (and locked down) on first use."""

    def __init__(self, server_dsn: str, platform_database: str) -> None:
        self._server_dsn = server_dsn
        self._platform_database = platform_database
        self._pools: dict[str, db.Pool] = {}
        self._lock = asyncio.Lock()

    async def pool_for(self, service_id: str) -> tuple[db.Pool, str]:
        name = service_database_name(self._platform_database, service_id)
        async with self._lock:
            if name not in self._pools:
                dsn = db.with_database(self._server_dsn, name)
                await db.ensure_database(dsn)
                pool = await db.create_pool(dsn, max_size=4)
                async with pool.acquire() as conn:
                    await conn.execute("SELECT pg_advisory_lock(hashtext('tenancy:setup'))")
                    try:
                        for statement in database_setup(name):
                            await conn.execute(statement)
                    finally:
                        await conn.execute("SELECT pg_advisory_unlock(hashtext('tenancy:setup'))")
                self._pools[name] = pool
        return self._pools[name], name

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()


async def isolate(
    databases: ServiceDatabases, tenancy_id: str, manifest: ServiceManifest, connection_limit: int
) -> IsolationReadyData:
    pool, database = await databases.pool_for(manifest.id)
    names = TenantNames.for_tenancy(tenancy_id, database)
    async with pool.acquire() as conn, conn.transaction():
        ledger = Ledger(conn)
        await ledger.lock_tenancy(tenancy_id)
        entry = await ledger.get(tenancy_id)
        applied = entry.migrations if entry else []
        if entry is None:
            password = new_password()
            for statement in schema_tier(names, scram_verifier(password), connection_limit):
                await conn.execute(statement)
            await ledger.add(tenancy_id, manifest.id, "schema", names.schema, names.role, password)
        for migration in manifest.migrations:
            if migration.version in applied:
                continue
            try:
                for statement in migration_statements(names, migration):
                    await conn.execute(statement)
            except asyncpg.PostgresError as error:
                if isinstance(error, OUTAGE_ERRORS):
                    raise
                raise IsolationFailed(
                    f"migration {migration.version} ({migration.description or 'no description'})"
                    f" of {manifest.id} failed: {type(error).__name__}: {error}"
                ) from error
            await ledger.record_migration(tenancy_id, migration.version)
            applied = [*applied, migration.version]
    return IsolationReadyData(
        service_id=manifest.id,
        tier="schema",
        database=database,
        schema_name=names.schema,
        role=names.role,
        credentials_ref=f"isolation:{database}/{tenancy_id}",
        migrations_applied=applied,
    )
