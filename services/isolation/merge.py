"""Moving a predecessor tenancy's rows into its successor's (issue 18: council reorganisation).

1. The source's role is locked out (``NOLOGIN``, its sessions ended), so nothing changes its rows
   while they move; it is not dropped: that waits until the move is settled for good.
2. In one transaction, per table: the source's rows and checksum as they will land, the target's
   before; the rows moved (``pooled``: re-tagged to the target's role in place; ``schema``:
   ``INSERT ... SELECT`` into the target's schema; ``database``: ``COPY`` from the source's
   database into the target's); the target's after; and the move recorded in
   ``tenancy_platform.tenant_moves`` beside the rows it moved. Any difference rolls it all back.
3. A failure lets the source log in again: its tenancy is left as it was.

Keys are kept apart as the manifest's ``reorganisation.merge_keys`` says. The service owner
moves the rows of the schema and database tiers, as it runs their migrations; only the pooled
tier needs the platform, the one role that sees past the row policy. A redelivered request
finds the recorded move and reports it again without moving anything.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from services.isolation.databases import ServiceDatabases
from services.isolation.merge_sql import (
    CANONICAL_SETTINGS,
    Count,
    MoveRefused,
    Reference,
    TableShape,
    advance_sequence,
    checksum_query,
    insert_order,
    insert_query,
    offset_query,
    qualified,
    renumbered,
    same_tables,
    verified,
)
from services.isolation.offboarding import lock_out
from services.isolation.plan import POOLED_SCHEMA, TENANT_COLUMN
from services.isolation.repository import Ledger, LedgerEntry, Migrations
from shared import db
from shared.catalogue import IsolationTier, MergeKeys, ServiceManifest
from shared.db import Connection
from shared.events import DataMovedData, MovedTable
from shared.identifiers import quote_ident
from shared.logging import get_logger
from shared.outages import is_outage

log = get_logger(__name__)


class MoveFailed(Exception):
    """Nothing was moved and the source can log in again; the message is the reason."""


async def move(
    databases: ServiceDatabases, source_id: str, target_id: str, manifest: ServiceManifest
) -> DataMovedData:
    pool, _ = await databases.pool_for(manifest.id)
    async with pool.acquire() as conn, _both_locked(conn, source_id, target_id):
        ledger = Ledger(conn)
        source, target = await ledger.get(source_id), await ledger.get(target_id)
        refusal = _refusal(source_id, source, target_id, target, manifest)
        if refusal is not None:
            raise MoveFailed(refusal)
        assert source is not None
        assert target is not None
        tier = manifest.isolation
        if tier is IsolationTier.DATABASE:
            done = await _recorded_in(databases, target.database, source_id)
        else:
            done = await _recorded(conn, source_id)
        if done is not None:
            log.info("move already made; reporting the recorded one", source=source_id)
            return done
        await lock_out(conn, source.role_name)
        try:
            if tier is IsolationTier.POOLED:
                tables = await _retag_pooled(conn, source, target)
            elif tier is IsolationTier.SCHEMA:
                owners = await databases.owner_pool_for(manifest.id)
                async with owners.acquire() as owner:
                    tables = await _copy_schema(owner, source, target, manifest)
            else:
                tables = await _copy_database(databases, source, target, manifest)
        except (MoveRefused, asyncpg.PostgresError) as error:
            if isinstance(error, asyncpg.PostgresError) and is_outage(error):
                raise  # redelivered once the database is back; the source stays locked out
            await _let_in(conn, source.role_name)
            raise MoveFailed(_reason(error)) from error
    moved = DataMovedData(source=source_id, service_id=manifest.id, tier=tier, tables=tables)
    log.info(
        "tenancy's rows moved",
        source=source_id,
        target=target_id,
        tier=tier.value,
        tables=len(tables),
        rows=sum(t.source_rows for t in tables),
    )
    return moved


@contextlib.asynccontextmanager
async def _both_locked(conn: Connection, source: str, target: str) -> AsyncIterator[None]:
    # The keys Ledger.lock_tenancy and offboarding take, in a fixed order, so two moves into
    # one target (or a migration of either) wait for each other and never deadlock.
    first, second = sorted((source, target))
    async with db.session_lock(conn, f"tenant:{first}"), db.session_lock(conn, f"tenant:{second}"):
        yield


def _refusal(
    source_id: str,
    source: LedgerEntry | None,
    target_id: str,
    target: LedgerEntry | None,
    manifest: ServiceManifest,
) -> str | None:
    for name, found, tenancy in (("source", source, source_id), ("target", target, target_id)):
        if found is None:
            return f"{name} tenancy {tenancy} has no data in {manifest.id}"
        if found.removed_at is not None:
            return f"{name} tenancy {tenancy} was offboarded from {manifest.id}"
        if found.tier is not manifest.isolation or found.service_id != manifest.id:
            tier = manifest.isolation
            return f"{name} tenancy {tenancy} is not a {tier} tenancy of {manifest.id}"
    if source_id == target_id:
        return "a tenancy cannot be moved into itself"
    return None


def _reason(error: BaseException) -> str:
    if isinstance(error, MoveRefused):
        return str(error)
    # The server's message alone, bounded: never its detail, which quotes the rows.
    message = " ".join(str(error).split())[:300]
    if isinstance(error, asyncpg.UniqueViolationError):
        return (
            f"key clash: {message}; the manifest keeps keys as they are"
            " (reorganisation.merge_keys: keep), so two councils' rows share a key"
        )
    return f"{type(error).__name__}: {message}"


async def _let_in(conn: Connection, role: str) -> None:
    await conn.execute(f"ALTER ROLE {quote_ident(role)} LOGIN")


async def _recorded(conn: Connection, source_id: str) -> DataMovedData | None:
    raw = await conn.fetchval(
        "SELECT result FROM tenancy_platform.tenant_moves WHERE source_tenancy_id = $1", source_id
    )
    return DataMovedData.model_validate(raw) if raw is not None else None


async def _recorded_in(
    databases: ServiceDatabases, database: str, source_id: str
) -> DataMovedData | None:
    conn = await db.connect(databases.dsn(database))
    try:
        return await _recorded(conn, source_id)
    finally:
        await conn.close()


async def recorded_move(
    databases: ServiceDatabases, conn: Connection, source_id: str, target: LedgerEntry
) -> DataMovedData | None:
    """The verified move of ``source_id`` into ``target``, as recorded beside the rows it moved
    (in the target's own database in the database tier), or None."""
    query = (
        "SELECT result FROM tenancy_platform.tenant_moves"
        " WHERE source_tenancy_id = $1 AND target_tenancy_id = $2"
    )
    if target.tier is not IsolationTier.DATABASE:
        raw = await conn.fetchval(query, source_id, target.tenancy_id)
    else:
        own = await db.connect(databases.dsn(target.database))
        try:
            raw = await own.fetchval(query, source_id, target.tenancy_id)
        finally:
            await own.close()
    return DataMovedData.model_validate(raw) if raw is not None else None


async def _record(conn: Connection, target_id: str, moved: DataMovedData) -> None:
    await conn.execute(
        "INSERT INTO tenancy_platform.tenant_moves (source_tenancy_id, target_tenancy_id, result)"
        " VALUES ($1, $2, $3)",
        moved.source,
        target_id,
        moved.model_dump(mode="json"),
    )


async def _canonical(conn: Connection) -> None:
    for setting in CANONICAL_SETTINGS:
        await conn.execute(setting)


async def _count(conn: Connection, query: str, *args: str) -> Count:
    row = await conn.fetchrow(query, *args)
    assert row is not None
    return Count(row["rows"], int(row["checksum"]))


async def _shapes(conn: Connection, schema: str) -> tuple[list[TableShape], list[Reference]]:
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind = 'p' AS partitioned,"
        " coalesce(array_agg(a.attname::text ORDER BY a.attnum)"
        "  FILTER (WHERE a.attgenerated = ''), '{}') AS columns,"
        " coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE"
        "  a.attgenerated = '' AND pg_get_serial_sequence("
        "   quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) IS NOT NULL),"
        "  '{}') AS numbered"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " GROUP BY c.oid, c.relname, c.relkind ORDER BY c.relname",
        schema,
    )
    references = await conn.fetch(
        "SELECT src.relname AS referencing, a.attname AS col, dst.relname AS referenced,"
        " b.attname AS ref_col FROM pg_constraint k"
        " JOIN pg_class src ON src.oid = k.conrelid JOIN pg_class dst ON dst.oid = k.confrelid"
        " JOIN pg_namespace n ON n.oid = src.relnamespace"
        " CROSS JOIN LATERAL unnest(k.conkey, k.confkey) AS u (kcol, fcol)"
        " JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.kcol"
        " JOIN pg_attribute b ON b.attrelid = k.confrelid AND b.attnum = u.fcol"
        " WHERE k.contype = 'f' AND n.nspname = $1",
        schema,
    )
    return (
        [
            TableShape(r["relname"], r["partitioned"], tuple(r["columns"]), tuple(r["numbered"]))
            for r in rows
        ],
        [Reference(r["referencing"], r["col"], r["referenced"], r["ref_col"]) for r in references],
    )


async def _retag_pooled(
    conn: Connection, source: LedgerEntry, target: LedgerEntry
) -> list[MovedTable]:
    """The source's rows become the target role's where they are: nothing is copied, and the
    shared identity keeps every key unique."""
    moved = []
    async with conn.transaction():
        # Only the platform sees past the row policy; if it cannot, fail rather than see nothing.
        await conn.execute("SET LOCAL row_security = off")
        await _canonical(conn)
        tables, _ = await _shapes(conn, POOLED_SCHEMA)
        tagged = [t for t in tables if TENANT_COLUMN in t.columns]
        column = quote_ident(TENANT_COLUMN)
        for table in tagged:
            kept = [f"r.{quote_ident(c)}" for c in table.columns if c != TENANT_COLUMN]
            name = qualified(POOLED_SCHEMA, table)
            query = checksum_query(name, kept, f"r.{column} = $1")
            before = await _count(conn, query, target.role_name)
            rows = await _count(conn, query, source.role_name)
            await conn.execute(
                f"UPDATE {name} SET {column} = $2 WHERE {column} = $1",
                source.role_name,
                target.role_name,
            )
            after = await _count(conn, query, target.role_name)
            left = await _count(conn, query, source.role_name)
            if left.rows:
                raise MoveRefused(f"table {table.name}: {left.rows} rows were not re-tagged")
            moved.append(verified(table.name, rows, before, after))
        result = DataMovedData(
            source=source.tenancy_id,
            service_id=source.service_id,
            tier=IsolationTier.POOLED,
            tables=moved,
        )
        await _record(conn, target.tenancy_id, result)
    return moved


async def _same_migrations(
    source_conn: Connection, source_id: str, target_conn: Connection, target_id: str
) -> None:
    theirs = await Migrations(source_conn).of_tenancy(source_id)
    ours = await Migrations(target_conn).of_tenancy(target_id)
    if theirs != ours:
        raise MoveRefused(
            f"the source has migrations {theirs} and the target {ours}: bring both to the"
            " manifest's latest migration first (tenancy migrate)"
        )


async def _offsets(
    target: Connection, schema: str, tables: list[TableShape], keys: MergeKeys
) -> dict[tuple[str, str], int]:
    if keys is MergeKeys.KEEP:
        return {}
    offsets = {}
    for table in tables:
        for column in table.numbered:
            offsets[table.name, column] = await target.fetchval(offset_query(schema, table, column))
    return offsets


# Writes one table's rows, as ``landing`` expressions over the source ``out_of``, into the
# target's schema.
CopyRows = Callable[[TableShape, str, list[str]], Awaitable[None]]


async def _copy_tables(
    reader: Connection,
    writer: Connection,
    source: LedgerEntry,
    target: LedgerEntry,
    manifest: ServiceManifest,
    copy: CopyRows,
) -> list[MovedTable]:
    """Schema and database tiers, inside the caller's transactions: every table copied and
    verified, referenced tables first, and the move recorded with the rows."""
    for conn in {id(reader): reader, id(writer): writer}.values():
        await _canonical(conn)
    await _same_migrations(reader, source.tenancy_id, writer, target.tenancy_id)
    tables, references = await _shapes(writer, target.schema_name)
    refusal = same_tables((await _shapes(reader, source.schema_name))[0], tables)
    if refusal is not None:
        raise MoveRefused(refusal)
    keys = manifest.reorganisation.merge_keys
    offsets = await _offsets(writer, target.schema_name, tables, keys)
    by_name = {t.name: t for t in tables}
    moved = []
    for name in insert_order(tables, references):
        table = by_name[name]
        into = qualified(target.schema_name, table)
        out_of = qualified(source.schema_name, table)
        landing = renumbered(table, references, offsets)
        plain = [f"r.{quote_ident(c)}" for c in table.columns]
        before = await _count(writer, checksum_query(into, plain))
        rows = await _count(reader, checksum_query(out_of, landing))
        await copy(table, out_of, landing)
        after = await _count(writer, checksum_query(into, plain))
        moved.append(verified(name, rows, before, after))
        for column in table.numbered if keys is MergeKeys.RENUMBER else ():
            await writer.execute(advance_sequence(target.schema_name, table, column))
    result = DataMovedData(
        source=source.tenancy_id, service_id=manifest.id, tier=manifest.isolation, tables=moved
    )
    await _record(writer, target.tenancy_id, result)
    return moved


async def _copy_schema(
    owner: Connection, source: LedgerEntry, target: LedgerEntry, manifest: ServiceManifest
) -> list[MovedTable]:
    """Both schemas are the owner's, in the service's database: one transaction does it all."""

    async def insert(table: TableShape, out_of: str, landing: list[str]) -> None:
        await owner.execute(insert_query(target.schema_name, table, out_of, landing))

    async with owner.transaction():
        return await _copy_tables(owner, owner, source, target, manifest, insert)


async def _copy_database(
    databases: ServiceDatabases,
    source: LedgerEntry,
    target: LedgerEntry,
    manifest: ServiceManifest,
) -> list[MovedTable]:
    """Two databases: the owner reads the source in one snapshot and writes the target in one
    transaction, with COPY between them; the record commits with the rows in the target."""
    async with databases.tenant_database(manifest.id, target.database):
        pass  # brings its lock-down up to date, with the table moves are recorded in
    async with (
        databases.as_owner(manifest.id, source.database) as reader,
        databases.as_owner(manifest.id, target.database) as writer,
    ):

        async def copy(table: TableShape, out_of: str, landing: list[str]) -> None:
            with tempfile.TemporaryFile() as spool:  # a table need not fit in memory
                await reader.copy_from_query(
                    f"SELECT {', '.join(landing)} FROM {out_of} AS r", output=spool, format="binary"
                )
                spool.seek(0)
                await writer.copy_to_table(
                    table.name,
                    source=spool,
                    schema_name=target.schema_name,
                    columns=list(table.columns),
                    format="binary",
                )

        async with (
            reader.transaction(isolation="repeatable_read", readonly=True),
            writer.transaction(),
        ):
            return await _copy_tables(reader, writer, source, target, manifest, copy)
