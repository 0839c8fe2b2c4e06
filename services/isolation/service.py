"""Isolating a tenancy in its shared service, in the tier the service's manifest asks for.

Every step is safe to repeat: a redelivered event, or one re-driven after a crash at any
point, finds what was already done in the ledger and only finishes what was not.
"""

from __future__ import annotations

import asyncpg

from services.isolation.databases import ServiceDatabases
from services.isolation.plan import (
    POOLED_SCHEMA,
    TENANT_COLUMN,
    TenantNames,
    login_role,
    migration_statements,
    new_password,
    own_schema,
    pooled_grants,
    pooled_schema,
    row_level_security,
    scram_verifier,
)
from services.isolation.repository import Ledger, Migrations
from shared.catalogue import IsolationTier, Migration, ServiceManifest
from shared.db import Connection
from shared.events import IsolationReadyData
from shared.outages import is_outage


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
        # The server's message alone, on one line and bounded: never its detail, which can
        # quote rows.
        message = " ".join(str(error).split())
        message = message if len(message) <= 300 else message[:297] + "..."
        raise IsolationFailed(
            f"migration {migration.version} ({migration.description or 'no description'})"
            f" of {service_id} failed: {type(error).__name__}: {message}"
        ) from error


async def migrate_tenancy(
    owner: Connection, tenancy_id: str, schema: str, manifest: ServiceManifest
) -> list[int]:
    """Apply the manifest's pending migrations to one tenancy's schema; returns all applied.
    ``owner`` is the service owner's transaction, which records them as it applies them."""
    await owner.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{tenancy_id}")
    migrations = Migrations(owner)
    applied = await migrations.of_tenancy(tenancy_id)
    pending = [m for m in manifest.migrations if m.version not in applied]
    for migration in pending:
        await apply_migration(owner, schema, migration, manifest.id)
    await migrations.record_for_tenancy(tenancy_id, [m.version for m in pending])
    return sorted(applied + [m.version for m in pending])


async def migrate_pooled_service(
    owner: Connection, names: TenantNames, manifest: ServiceManifest
) -> list[int]:
    """Pooled tables are the service's, migrated once by its owner, and every table gets
    row-level security and the tenants' group its grants. Tables already guarded are left
    alone: altering them would lock the tables every other tenant is using."""
    await owner.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"pooled:{manifest.id}")
    migrations = Migrations(owner)
    applied = await migrations.of_service()
    pending = [m for m in manifest.migrations if m.version not in applied]
    for migration in pending:
        await apply_migration(owner, POOLED_SCHEMA, migration, manifest.id)
    await migrations.record_for_service([m.version for m in pending])
    unguarded = await owner.fetch(
        "SELECT t.tablename FROM pg_tables t WHERE t.schemaname = $1 AND NOT EXISTS ("
        " SELECT 1 FROM pg_policies p WHERE p.schemaname = t.schemaname"
        " AND p.tablename = t.tablename AND p.policyname = 'tenant_rows')"
        " ORDER BY t.tablename",
        POOLED_SCHEMA,
    )
    for table in unguarded:
        await execute_all(owner, row_level_security(table["tablename"]))
    if pending:
        await _refuse_weakened_row_security(owner, manifest.id, pending)
    if pending or unguarded:
        await execute_all(owner, pooled_grants(names))
    return sorted(applied + [m.version for m in pending])


async def _refuse_weakened_row_security(
    owner: Connection, service_id: str, migrations: list[Migration]
) -> None:
    """The owner owns the pooled tables, so the database would let its SQL switch their
    row-level security off or add a policy that shows every row: fail the migration if it did.
    (The manifest check refuses such SQL before it gets here.)"""
    weakened = await owner.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND ("
        " NOT c.relrowsecurity OR NOT c.relforcerowsecurity"
        " OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive"
        "  AND p.polname <> 'tenant_rows')"
        " OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid"
        "  AND p.polname = 'tenant_rows' AND p.polpermissive AND p.polcmd = '*'"
        "  AND p.polroles = '{0}' AND pg_get_expr(p.polqual, p.polrelid) = $2"
        "  AND pg_get_expr(p.polwithcheck, p.polrelid) = $2))"
        " ORDER BY c.relname",
        POOLED_SCHEMA,
        f"({TENANT_COLUMN} = CURRENT_USER)",
    )
    if weakened:
        tables = ", ".join(row["relname"] for row in weakened)
        versions = ", ".join(str(m.version) for m in migrations)
        raise IsolationFailed(
            f"migration {versions} of {service_id} weakened the row-level security of"
            f" {tables}: pooled rows are kept apart by the platform's policy alone"
        )


async def isolate(
    databases: ServiceDatabases, tenancy_id: str, manifest: ServiceManifest, connection_limit: int
) -> IsolationReadyData:
    """Give a tenancy its role and its space, and bring it up to the manifest's migrations.

    The platform's transaction makes the role, the ledger entry and the space; the service
    owner's, committed after it, runs the manifest's SQL. A failure or crash between them
    leaves a tenancy whose migrations the next delivery (or a retry) applies."""
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
                await execute_all(conn, own_schema(names))
            elif tier is IsolationTier.POOLED:
                await _ensure_pooled_schema(conn, names, manifest)
    if tier is IsolationTier.DATABASE:
        # CREATE DATABASE cannot run in a transaction: the role and ledger entry are committed
        # first, so a crash here is finished by the next delivery.
        async with (
            databases.tenant_database(manifest.id, names.database) as own,
            own.transaction(),
        ):
            await own.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"tenant:{tenancy_id}")
            await execute_all(own, own_schema(names))
        async with databases.as_owner(manifest.id, names.database) as owner, owner.transaction():
            applied = await migrate_tenancy(owner, tenancy_id, names.schema, manifest)
    else:
        owners = await databases.owner_pool_for(manifest.id)
        async with owners.acquire() as owner, owner.transaction():
            if tier is IsolationTier.SCHEMA:
                applied = await migrate_tenancy(owner, tenancy_id, names.schema, manifest)
            else:
                applied = await migrate_pooled_service(owner, names, manifest)
    return IsolationReadyData(
        service_id=manifest.id,
        tier=tier,
        database=names.database,
        schema_name=names.schema,
        role=names.role,
        credentials_ref=f"isolation:{service_db}/{tenancy_id}",
        migrations_applied=applied,
    )


async def _ensure_pooled_schema(
    conn: Connection, names: TenantNames, manifest: ServiceManifest
) -> None:
    """The shared schema, made by the service's first tenancy. Under the lock the owner
    migrates it with, so two first tenancies do not both make it."""
    exists = await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", POOLED_SCHEMA)
    if not exists:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"pooled:{manifest.id}")
        await execute_all(conn, pooled_schema(names))
