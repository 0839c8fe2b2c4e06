"""Offboarding with exit: export a tenancy's data in open formats, then remove it.

The order is what makes it safe to repeat and impossible to lose data:

1. the tenant's role is locked out (``NOLOGIN``, its sessions ended), so the export is its
   final state;
2. every table is exported and the archive is on disk before anything is dropped;
3. the schema, database or rows and then the role are dropped, and the ledger records the
   removal (with the archive's location and checksum) last.

A re-run after a crash at any point finishes the job; a re-run after success finds the
recorded removal and returns it without touching anything. One session advisory lock, under the
key ``Ledger.lock_tenancy`` takes, keeps isolation, rotation and migration of the same tenancy
out while the removal runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from services.isolation.databases import ServiceDatabases
from services.isolation.export import Export, TableFile
from services.isolation.plan import POOLED_SCHEMA, TENANT_COLUMN, TenantNames
from services.isolation.repository import Ledger, LedgerEntry
from shared import db
from shared.catalogue import IsolationTier, ServiceManifest
from shared.db import Connection
from shared.events import IsolationRemovedData
from shared.identifiers import quote_ident, tenant_object_name
from shared.logging import get_logger
from shared.outages import PermanentError

log = get_logger(__name__)

# How long to wait for each of the tenant's open sessions to end once it is locked out.
TERMINATE_TIMEOUT_MS = 5000


class RemovalRefused(PermanentError):
    """The ledger names something that is not this tenancy's own: never drop it."""


@dataclass(frozen=True)
class Table:
    name: str
    partitioned: bool
    columns: list[str]


def export_query(schema: str, table: Table, tenant_column: str | None = None) -> str | None:
    """The query whose result is the tenancy's part of one table, or None if it has none.

    With ``tenant_column`` (pooled tier) only the tenant's rows, without that column: it names
    a role that is about to be dropped and means nothing to the council.
    """
    only = "" if table.partitioned else "ONLY "  # inheritance children are exported on their own
    source = f"{only}{quote_ident(schema)}.{quote_ident(table.name)}"
    if tenant_column is None:
        return f"SELECT * FROM {source}"
    if tenant_column not in table.columns:
        return None
    columns = ", ".join(quote_ident(c) for c in table.columns if c != tenant_column)
    return f"SELECT {columns} FROM {source} WHERE {quote_ident(tenant_column)} = $1"


def deletion_order(tables: list[str], references: Iterable[tuple[str, str]]) -> list[str]:
    """Tables ordered so that rows referencing others go first; a cycle keeps listed order
    (its foreign keys will say so, and the removal is retried)."""
    referenced_by: dict[str, set[str]] = {t: set() for t in tables}
    for referencing, referenced in references:
        if referencing != referenced and referenced in referenced_by:
            referenced_by[referenced].add(referencing)
    ordered: list[str] = []
    remaining = list(tables)
    while remaining:
        free = [t for t in remaining if not referenced_by[t] & set(remaining)]
        batch = free or remaining
        ordered += batch
        remaining = [t for t in remaining if t not in batch]
    return ordered


def copied_rows(status: str) -> int:
    """Row count from a COPY command tag, e.g. ``COPY 42``."""
    return int(status.rsplit(" ", 1)[-1])


async def remove(
    databases: ServiceDatabases, exports_dir: Path, tenancy_id: str, manifest: ServiceManifest
) -> IsolationRemovedData:
    """Export a tenancy's data to ``exports_dir`` and remove it; returns what was done."""
    pool, service_db = await databases.pool_for(manifest.id)
    started = time.monotonic()
    async with pool.acquire() as conn, tenancy_locked(conn, tenancy_id):
        entry = await Ledger(conn).get(tenancy_id)
        if entry is not None and entry.removed_at is not None and entry.removal is not None:
            log.info("tenancy already removed; reporting the recorded removal")
            return IsolationRemovedData.model_validate(entry.removal)
        if entry is None:
            removal = await _remove_nothing(conn, exports_dir, tenancy_id, manifest, service_db)
        else:
            removal = await export_and_drop(conn, databases, exports_dir, entry)
    log.info(
        "tenancy exported and removed",
        tenancy_id=tenancy_id,
        service_id=manifest.id,
        tier=removal.tier.value,
        tables=len(removal.tables),
        rows=sum(t.rows for t in removal.tables),
        archive=removal.archive,
        seconds=round(time.monotonic() - started, 3),
    )
    return removal


async def export_and_drop(
    conn: Connection, databases: ServiceDatabases, exports_dir: Path, entry: LedgerEntry
) -> IsolationRemovedData:
    """Lock the tenant out, export its tables, then drop them and its role; the caller holds
    the tenancy's lock. Shared with the retirement of a reorganised predecessor, whose frozen
    data leave as an offboarded council's do."""
    _check_own_names(entry)
    await lock_out(conn, entry.role_name)
    if entry.tier is IsolationTier.DATABASE:
        return await _remove_database(conn, databases, exports_dir, entry)
    return await _remove_in_service_database(conn, exports_dir, entry)


@contextlib.asynccontextmanager
async def tenancy_locked(conn: Connection, tenancy_id: str) -> AsyncIterator[None]:
    # A session lock, unlike Ledger.lock_tenancy's transaction lock, because the database tier
    # spans several transactions (DROP DATABASE cannot run in one). Same key, so they exclude
    # each other.
    async with db.session_lock(conn, f"tenant:{tenancy_id}"):
        yield


def _check_own_names(entry: LedgerEntry) -> None:
    own = tenant_object_name(entry.tenancy_id)
    expected_schema = POOLED_SCHEMA if entry.tier is IsolationTier.POOLED else own
    if entry.role_name != own or entry.schema_name != expected_schema:
        raise RemovalRefused(f"ledger entry of {entry.tenancy_id} names objects not its own")
    if entry.tier is IsolationTier.DATABASE and entry.database != own:
        raise RemovalRefused(f"ledger entry of {entry.tenancy_id} names a database not its own")


async def _role_exists(conn: Connection, role: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role))


async def lock_out(conn: Connection, role: str) -> None:
    """No new sessions, and the open ones ended, so nothing changes after the export.
    Committed on its own: a login must see it before the export starts."""
    if not await _role_exists(conn, role):
        return
    await conn.execute(f"ALTER ROLE {quote_ident(role)} NOLOGIN")
    await conn.execute(
        "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity WHERE usename = $1",
        role,
        TERMINATE_TIMEOUT_MS,
    )


async def _drop_role(conn: Connection, role: str) -> None:
    # DROP OWNED BY also revokes the role's rights on shared objects (CONNECT on the database);
    # what it holds in a tenant database goes with that database.
    if await _role_exists(conn, role):
        await conn.execute(f"DROP OWNED BY {quote_ident(role)}")
        await conn.execute(f"DROP ROLE {quote_ident(role)}")


async def _tables(conn: Connection, schema: str) -> list[Table]:
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind = 'p' AS partitioned,"
        " array_agg(a.attname::text ORDER BY a.attnum) AS columns"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " GROUP BY c.oid, c.relname, c.relkind ORDER BY c.relname",
        schema,
    )
    return [Table(r["relname"], r["partitioned"], list(r["columns"])) for r in rows]


async def _export_tables(
    conn: Connection, export: Export, schema: str, tenant_role: str | None = None
) -> None:
    """Stream each table as CSV straight to its file, so a large table never sits in memory."""
    for table in await _tables(conn, schema):
        query = export_query(schema, table, TENANT_COLUMN if tenant_role else None)
        if query is None:
            continue
        args = [tenant_role] if tenant_role else []
        sink = export.table(table.name)

        async def write(chunk: bytes, sink: TableFile = sink) -> None:
            await asyncio.to_thread(sink.write, chunk)

        status = await conn.copy_from_query(
            query, *args, output=write, format="csv", header=True, encoding="UTF8"
        )
        export.add(sink, copied_rows(status))


async def _archive(export: Export) -> IsolationRemovedData:
    path, digest = await asyncio.to_thread(export.write_archive)
    return IsolationRemovedData(
        service_id=export.service_id,
        tier=export.tier,
        archive=str(path),
        archive_sha256=digest,
        tables=export.tables,
    )


async def _remove_nothing(
    conn: Connection,
    exports_dir: Path,
    tenancy_id: str,
    manifest: ServiceManifest,
    service_db: str,
) -> IsolationRemovedData:
    """Isolation never got as far as a role (the tenancy failed first): the archive holds just
    the manifest. The ledger keeps a removed entry, so a registration still in flight finds the
    tenancy offboarded instead of creating it afresh."""
    names = TenantNames.for_tenancy(tenancy_id, manifest.isolation, service_db)
    with Export(exports_dir, manifest.id, tenancy_id, manifest.isolation) as export:
        removal = await _archive(export)
    async with conn.transaction():
        ledger = Ledger(conn)
        await ledger.add(
            tenancy_id,
            manifest.id,
            manifest.isolation,
            names.database,
            names.schema,
            names.role,
            password="",
        )
        await ledger.mark_removed(tenancy_id, removal.model_dump(mode="json"))
    return removal


async def _remove_in_service_database(
    conn: Connection, exports_dir: Path, entry: LedgerEntry
) -> IsolationRemovedData:
    """Schema and pooled tiers: export, drop and record in one transaction, so a failure
    anywhere leaves the data in place for the next attempt."""
    pooled = entry.tier is IsolationTier.POOLED
    role = entry.role_name
    with Export(exports_dir, entry.service_id, entry.tenancy_id, entry.tier) as export:
        async with conn.transaction():
            if pooled:
                # The platform must see past the row policy; if it cannot, fail loudly rather
                # than export and delete nothing.
                await conn.execute("SET LOCAL row_security = off")
            await _export_tables(conn, export, entry.schema_name, role if pooled else None)
            removal = await _archive(export)
            if pooled:
                await _delete_pooled_rows(conn, role)
            else:
                await conn.execute(
                    f"DROP SCHEMA IF EXISTS {quote_ident(entry.schema_name)} CASCADE"
                )
            await _drop_role(conn, role)
            await Ledger(conn).mark_removed(entry.tenancy_id, removal.model_dump(mode="json"))
    return removal


async def _delete_pooled_rows(conn: Connection, role: str) -> None:
    tables = {t.name: t for t in await _tables(conn, POOLED_SCHEMA) if TENANT_COLUMN in t.columns}
    references = await conn.fetch(
        "SELECT src.relname AS referencing, dst.relname AS referenced FROM pg_constraint k"
        " JOIN pg_class src ON src.oid = k.conrelid JOIN pg_class dst ON dst.oid = k.confrelid"
        " JOIN pg_namespace n ON n.oid = src.relnamespace"
        " WHERE k.contype = 'f' AND n.nspname = $1",
        POOLED_SCHEMA,
    )
    edges = [(r["referencing"], r["referenced"]) for r in references]
    for name in deletion_order(sorted(tables), edges):
        only = "" if tables[name].partitioned else "ONLY "
        await conn.execute(
            f"DELETE FROM {only}{quote_ident(POOLED_SCHEMA)}.{quote_ident(name)}"
            f" WHERE {quote_ident(TENANT_COLUMN)} = $1",
            role,
        )


async def _record_export(conn: Connection, tenancy_id: str, removal: IsolationRemovedData) -> None:
    # Recorded before the removal is complete (removed_at stays empty): a re-run after a crash
    # past DROP DATABASE then finishes the removal, instead of taking the missing database for
    # one that was never created and writing an empty archive over the real one.
    await conn.execute(
        "UPDATE tenancy_platform.tenants SET removal = $2"
        " WHERE tenancy_id = $1 AND removed_at IS NULL",
        tenancy_id,
        removal.model_dump(mode="json"),
    )


async def _remove_database(
    conn: Connection, databases: ServiceDatabases, exports_dir: Path, entry: LedgerEntry
) -> IsolationRemovedData:
    """Database tier: DROP DATABASE cannot run in a transaction, so the export is recorded
    in the ledger before the drop, and the removal completed after it."""
    role = entry.role_name
    removal = IsolationRemovedData.model_validate(entry.removal) if entry.removal else None
    exists = await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", entry.database)
    if exists:
        # Not ServiceDatabases.tenant_database: it would create the database if it were gone.
        own = await db.connect(databases.dsn(entry.database))
        try:
            if removal is None:
                with Export(exports_dir, entry.service_id, entry.tenancy_id, entry.tier) as export:
                    # One snapshot for every table.
                    async with own.transaction(isolation="repeatable_read", readonly=True):
                        await _export_tables(own, export, entry.schema_name)
                    removal = await _archive(export)
                await _record_export(conn, entry.tenancy_id, removal)
            if await _role_exists(conn, role):
                await own.execute(f"DROP OWNED BY {quote_ident(role)}")
        finally:
            await own.close()
        await databases.drop_database(entry.database)
    elif removal is None:
        # Isolation failed before it created the database: there is nothing to export.
        with Export(exports_dir, entry.service_id, entry.tenancy_id, entry.tier) as export:
            removal = await _archive(export)
    async with conn.transaction():
        await _drop_role(conn, role)
        await Ledger(conn).mark_removed(entry.tenancy_id, removal.model_dump(mode="json"))
    return removal
