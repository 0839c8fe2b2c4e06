"""Where an operator gets a tenancy's connection string; the secret never leaves this path."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from services.isolation.repository import Ledger, LedgerEntry
from shared import db
from shared.identifiers import service_database_name


class NoCredentials(LookupError):
    pass


def tenant_dsn(server_dsn: str, database: str, role: str, password: str) -> str:
    """The server's address (host and port, or a Unix socket given in the query) with the
    tenancy's login and database."""
    parts = urlsplit(server_dsn)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role)}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + database))


async def connection_string(
    server_dsn: str, platform_dsn: str, service_id: str, tenancy_id: str
) -> str:
    """The tenancy's own login, read from its service database's ledger."""
    _, dsn = await tenant_login(server_dsn, platform_dsn, service_id, tenancy_id)
    return dsn


async def tenant_login(
    server_dsn: str, platform_dsn: str, service_id: str, tenancy_id: str
) -> tuple[LedgerEntry, str]:
    """The tenancy's ledger entry (tier, database, schema, role, last rotation) and its
    connection string; ``NoCredentials`` if it has no live login."""
    service_db = service_database_name(db.database_name(platform_dsn), service_id)
    try:
        conn = await db.connect(db.with_database(server_dsn, service_db))
    except (OSError, asyncpg.PostgresError) as error:  # no such database: no tenancy there
        raise NoCredentials(f"no credentials for tenancy {tenancy_id}: {error}") from error
    try:
        ledger = Ledger(conn)
        entry = await ledger.get(tenancy_id)
        password = await ledger.password(tenancy_id)
    finally:
        await conn.close()
    if entry is None or password is None:
        raise NoCredentials(f"no credentials for tenancy {tenancy_id} (not isolated, or removed)")
    return entry, tenant_dsn(server_dsn, entry.database, entry.role_name, password)
