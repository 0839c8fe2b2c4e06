"""PostgreSQL plumbing: pools, per-worker schema migrations, and the tables every worker shares
the shape of (inbox of processed event ids, transactional outbox, dead letters)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.identifiers import quote_ident

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# Handlers get pooled connections; both kinds answer the same queries.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# The plumbing every worker's schema has, recorded as migration -PLUMBING_REVISION (below the
# worker's own numbered files). Raise the revision when it changes: it is written to be re-run.
PLUMBING_REVISION = 1
_PLUMBING = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.processed_events (
    event_id uuid PRIMARY KEY,
    event_type text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id uuid PRIMARY KEY,
    topic text NOT NULL,
    key text NOT NULL,
    payload jsonb NOT NULL,
    headers jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished
    ON {schema}.outbox (created_at) WHERE published_at IS NULL;
-- The consumed event that caused each emitted one, so a redelivery can re-send its results.
ALTER TABLE {schema}.outbox ADD COLUMN IF NOT EXISTS caused_by uuid;
CREATE INDEX IF NOT EXISTS outbox_caused_by ON {schema}.outbox (caused_by);
CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
    id uuid PRIMARY KEY,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    key text,
    payload bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{{}}',
    error_type text NOT NULL,
    error text NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
"""


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` if the server does not have it yet."""
    name = database_name(dsn)
    conn = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # A sibling process may create it in the meantime.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()


async def create_pool(dsn: str, *, max_size: int = 10, runs_foreign_sql: bool = False) -> Pool:
    """A pool of connections set up for the platform's JSON columns.

    asyncpg's default release costs a round trip on every release (``RESET ALL``, unlisten,
    advisory unlock). The platform's own SQL changes no session state: its settings are
    ``SET LOCAL`` and its session locks go through :func:`session_lock`, which releases or drops
    them; asyncpg still rolls back a transaction left open. A pool that ``runs_foreign_sql``
    (a manifest's migrations) keeps the full reset, since that SQL may ``SET`` anything.
    """
    reset = None if runs_foreign_sql else _keep_session
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, init=_init_connection, reset=reset
    )
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Nothing to undo on release (see :func:`create_pool`)."""


@contextlib.asynccontextmanager
async def session_lock(conn: Connection, key: str) -> AsyncIterator[None]:
    """A session advisory lock on ``key``, for work spanning several transactions.

    If it cannot be released (the connection broke, or the task was cancelled mid-release),
    the connection is dropped, so a pooled connection never goes back holding it.
    """
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
    try:
        yield
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
        except BaseException:
            conn.terminate()
            raise


async def connect(dsn: str) -> asyncpg.Connection[asyncpg.Record]:
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def migration_files(folder: Path | None) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9][0-9]_*.sql")) if folder else []


async def migrate(pool: Pool, schema: str, migrations_dir: Path | None) -> list[int]:
    """Create the worker's schema and plumbing, then apply its numbered ``NNN_name.sql`` files.

    Called at every worker start and CLI command, so when nothing is pending it costs one read
    and takes no lock: re-running the plumbing's DDL would lock tables handlers are using.
    A session advisory lock serialises replicas of a worker starting at the same moment.
    """
    files = {int(file.name[:3]): file for file in migration_files(migrations_dir)}
    wanted = {-PLUMBING_REVISION, *files}
    applied: list[int] = []
    async with pool.acquire() as conn:
        if wanted <= await _applied(conn, schema):
            return applied
        async with session_lock(conn, f"tenancy:{schema}"):
            done = await _applied(conn, schema)
            for version in sorted(wanted - done):
                sql = (
                    _PLUMBING.format(schema=quote_ident(schema))
                    if version < 0
                    else files[version].read_text(encoding="utf-8")
                )
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        f"INSERT INTO {quote_ident(schema)}.schema_migrations (version)"
                        " VALUES ($1)",
                        version,
                    )
                applied.append(version)
    return applied


async def _applied(conn: Connection, schema: str) -> set[int]:
    table = f"{quote_ident(schema)}.schema_migrations"
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return set()
    return {row["version"] for row in await conn.fetch(f"SELECT version FROM {table}")}
