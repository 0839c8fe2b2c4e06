"""Rolling a service's new migrations out to one tenancy, and recording the result.

A rollout (``tenancy migrate``) is one ``MigrationRequested`` per live tenancy, all sharing a
run id. Each is handled on its own, so one tenancy failing leaves the others migrated; within a
tenancy a run is all-or-nothing, because ``isolate`` applies its pending migrations in one
transaction. The result goes to ``isolation.migration_results``, where the CLI follows the run.

Versions are read where they are recorded: the service database's ledger for the pooled tier
(the service's own tables, migrated once) and the schema tier, the tenancy's own database for
the database tier.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from services.isolation.databases import ServiceDatabases
from services.isolation.repository import Ledger, LedgerEntry, Migrations
from services.isolation.service import IsolationFailed, isolate
from shared import db
from shared.catalogue import IsolationTier
from shared.db import Connection
from shared.events import MigrationRequestedData, TenancyMigratedData
from shared.logging import get_logger

log = get_logger(__name__)


async def migrate(
    databases: ServiceDatabases,
    tenancy_id: str,
    request: MigrationRequestedData,
    conn: Connection,
    connection_limit: int,
) -> TenancyMigratedData:
    """``conn`` is the isolation worker's own transaction, to record the result in."""
    manifest = request.service
    try:
        applied = await _bring_up_to_date(databases, tenancy_id, request, connection_limit)
        error = None
    except IsolationFailed as failure:
        # The failed run was rolled back: report what the tenancy still has.
        applied = await applied_versions(databases, manifest.id, tenancy_id) or []
        error = str(failure)
    result = TenancyMigratedData(
        run_id=request.run_id,
        ok=error is None,
        version=max(applied, default=0),
        applied=applied,
        error=error,
    )
    await conn.execute(
        "INSERT INTO isolation.migration_results"
        " (run_id, tenancy_id, service_id, ok, version, applied, error)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (run_id, tenancy_id) DO UPDATE SET ok = EXCLUDED.ok,"
        " version = EXCLUDED.version, applied = EXCLUDED.applied, error = EXCLUDED.error,"
        " at = now()",
        request.run_id,
        tenancy_id,
        manifest.id,
        result.ok,
        result.version,
        result.applied,
        result.error,
    )
    log.info(
        "tenancy migrated" if result.ok else "tenancy migration failed",
        service_id=manifest.id,
        run_id=str(request.run_id),
        version=result.version,
        error=result.error,
    )
    return result


async def _bring_up_to_date(
    databases: ServiceDatabases,
    tenancy_id: str,
    request: MigrationRequestedData,
    connection_limit: int,
) -> list[int]:
    manifest = request.service
    pool, _ = await databases.pool_for(manifest.id)
    async with pool.acquire() as conn:
        entry = await Ledger(conn).get(tenancy_id)
        if entry is None:
            # isolate() would create a login for a tenancy it does not know: a rollout must
            # only ever change tenancies that onboarding already isolated.
            raise IsolationFailed(f"tenancy {tenancy_id} is not isolated in {manifest.id}")
        if entry.removed_at is not None:
            raise IsolationFailed(f"tenancy {tenancy_id} was offboarded from {manifest.id}")
    ready = await isolate(databases, tenancy_id, manifest, connection_limit)
    return ready.migrations_applied


async def applied_versions(
    databases: ServiceDatabases, service_id: str, tenancy_id: str
) -> list[int] | None:
    """The migrations a tenancy has; ``None`` when it is not (or no longer) isolated there."""
    async with _service_database(databases, service_id) as conn:
        if conn is None:
            return None
        entry = await Ledger(conn).get(tenancy_id)
        if entry is None or entry.removed_at is not None:
            return None
        return await _versions_of(databases, conn, entry)


async def versions(databases: ServiceDatabases, service_id: str) -> dict[str, int]:
    """Each live tenancy's migration version (its highest applied, 0 for none), for the drift
    report. Read-only: unlike ``pool_for`` it creates no database for a service nobody joined."""
    found: dict[str, int] = {}
    async with _service_database(databases, service_id) as conn:
        if conn is None:
            return found
        for entry in await Ledger(conn).tenants(service_id):
            if entry.removed_at is None:
                found[entry.tenancy_id] = max(await _versions_of(databases, conn, entry), default=0)
    return found


async def _versions_of(
    databases: ServiceDatabases, service_conn: Connection, entry: LedgerEntry
) -> list[int]:
    if entry.tier is IsolationTier.POOLED:
        return await Migrations(service_conn).of_service()
    if entry.tier is IsolationTier.SCHEMA:
        return await Migrations(service_conn).of_tenancy(entry.tenancy_id)
    own = await db.connect(databases.dsn(entry.database))
    try:
        return await Migrations(own).of_tenancy(entry.tenancy_id)
    finally:
        await own.close()


@contextlib.asynccontextmanager
async def _service_database(
    databases: ServiceDatabases, service_id: str
) -> AsyncIterator[Connection | None]:
    try:
        conn = await db.connect(databases.dsn(databases.name_for(service_id)))
    except asyncpg.InvalidCatalogNameError:  # no tenancy ever joined: no database yet
        yield None
        return
    try:
        yield conn
    finally:
        await conn.close()
