"""Isolating a tenancy in its shared service, in the tier the service's manifest asks for.

Every step is safe to repeat: a redelivered event, or one re-driven after a crash at any
point, finds what was already done in the ledger and only finishes what was not.
"""

from __future__ import annotations

import asyncpg

from services.isolation.databases import ServiceDatabases
from services.isolation.plan import (
    POOLED_SCHEMA,
    TenantNames,
    login_role,
    migration_statements,
    new_password,
    own_schema,
    pooled_access,
    pooled_schema,
    row_level_security,
    scram_verifier,
)
from services.isolation.repository import Ledger, Migrations
from shared.catalogue import IsolationTier, Migration, ServiceManifest
from shared.db import Connection
from shared.events import IsolationReadyData
from shared.messaging import is_outage


class IsolationFailed(Exception):
    """The service's own SQL cannot be applied for this tenancy: a failed step, not an outage."""


async def execute_all(conn: Connection, statements: list[str]) -> None:
    """Run the statements in one round trip. They carry no parameters (identifiers are quoted
    when the plan is built), so the simple query protocol takes them all at once; each on its
    own line, so a statement ending in a comment cannot swallow the separator."""
    if statements:
        await conn.execute("\n;\n".join(statements))


async def apply_migration(
    conn: Connection, schema: str, migration: Migration, service_id: str
) -> None:
    # No savepoint: a failed migration fails the caller's whole transaction, which rolls back.
    try:
        await execute_all(conn, migration_statements(schema, migration))
    except asyncpg.PostgresError as error:
        if is_outage(error):
            raise
        raise IsolationFailed(
            f"migration {migration.version} ({migration.description or 'no description'})"
            f" of {service_id} failed: {type(error).__name__}: {error}"
        ) from error


async def migrate_tenancy(
    conn: Connection, tenancy_id: str, schema: str, manifest: ServiceManifest
) -> list[int]:
    """Apply the manifest's pending migrations to one tenancy's schema; returns all applied."""
    migrations = Migrations(conn)
    applied = await migrations.of_tenancy(tenancy_id)
    pending = [m for m in manifest.migrations if m.version not in applied]
    for migration in pending:
        await apply_migration(conn, schema, migration, manifest.id)
    await migrations.record_for_tenancy(tenancy_id, [m.version for m in pending])
    return sorted(applied + [m.version for m in pending])


async def migrate_pooled_service(
    conn: Connection, manifest: ServiceManifest
) -> tuple[list[int], bool]:
    """Pooled tables are the service's, migrated once, and every table gets row-level
    security. Returns the applied versions, and whether any table is new (then every live
    tenant role needs its grants again). Tables already guarded are left alone: altering them
    would lock the tables every other tenant is using."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"pooled:{manifest.id}")
    await execute_all(conn, pooled_schema())
    migrations = Migrations(conn)
    applied = await migrations.of_service()
    pending = [m for m in manifest.migrations if m.version not in applied]
    for migration in pending:
        await apply_migration(conn, POOLED_SCHEMA, migration, manifest.id)
    await migrations.record_for_service([m.version for m in pending])
    applied += [m.version for m in pending]
    migrated = bool(pending)
    unguarded = await conn.fetch(
        "SELECT t.tablename FROM pg_tables t WHERE t.schemaname = $1 AND NOT EXISTS ("
        " SELECT 1 FROM pg_policies p WHERE p.schemaname = t.schemaname"
        " AND p.tablename = t.tablename AND p.policyname = 'tenant_rows')"
        " ORDER BY t.tablename",
        POOLED_SCHEMA,
    )
    for table in unguarded:
        await execute_all(conn, row_level_security(table["tablename"]))
    return sorted(applied), migrated or bool(unguarded)


async def isolate(
    databases: ServiceDatabases, tenancy_id: str, manifest: ServiceManifest, connection_limit: int
) -> IsolationReadyData:
    """Give a tenancy its role and its space, and bring it up to the manifest's migrations."""
    pool, service_db = await databases.pool_for(manifest.id)
    tier = manifest.isolation
    names = TenantNames.for_tenancy(tenancy_id, tier, service_db)
    async with pool.acquire() as conn, conn.transaction():
        ledger = Ledger(conn)
        await ledger.lock_tenancy(tenancy_id)
        entry = await ledger.get(tenancy_id)
        if entry is not None and entry.removed_at is not None:
            raise IsolationFailed(f"tenancy {tenancy_id} was offboarded from {manifest.id}")
        if entry is None:
            password = new_password()
            await execute_all(conn, login_role(names, scram_verifier(password), connection_limit))
            await ledger.add(
                tenancy_id, manifest.id, tier, names.database, names.schema, names.role, password
            )
        if tier is IsolationTier.SCHEMA:
            if entry is None:
                await execute_all(conn, own_schema(names))
            applied = await migrate_tenancy(conn, tenancy_id, names.schema, manifest)
        elif tier is IsolationTier.POOLED:
            applied, tables_changed = await migrate_pooled_service(conn, manifest)
            roles = await ledger.live_roles(manifest.id, tier) if tables_changed else []
            for role in {names.role, *roles}:
                await execute_all(conn, pooled_access(_as_role(names, role)))
    if tier is IsolationTier.DATABASE:
        # CREATE DATABASE cannot run in a transaction: the role and ledger entry are committed
        # first, so a crash here is finished by the next delivery.
        async with databases.tenant_database(names.database) as own, own.transaction():
            await own.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"tenant:{tenancy_id}")
            await execute_all(own, own_schema(names))
            applied = await migrate_tenancy(own, tenancy_id, names.schema, manifest)
    return IsolationReadyData(
        service_id=manifest.id,
        tier=tier,
        database=names.database,
        schema_name=names.schema,
        role=names.role,
        credentials_ref=f"isolation:{service_db}/{tenancy_id}",
        migrations_applied=applied,
    )


def _as_role(names: TenantNames, role: str) -> TenantNames:
    return TenantNames(names.tier, names.service_database, names.database, names.schema, role)
