"""Rotating a tenancy's password: a new secret, and the old one stops working at once.

The role's new verifier and the ledger's new secret commit in one transaction, under the
tenancy's lock, so the ledger never hands out a password the server does not accept. Like
every password here, it reaches PostgreSQL only as a SCRAM verifier and leaves this module
only through the ledger: the event says where to get it (``credentials_ref``), never what it is.

Sessions opened with the old password are ended: PostgreSQL checks a password only when a
session starts, and a rotation is often made because the old one leaked.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.isolation.credentials import NoCredentials
from services.isolation.databases import ServiceDatabases
from services.isolation.plan import new_password, scram_verifier
from services.isolation.repository import Ledger
from shared import db
from shared.events import CredentialsRotatedData
from shared.identifiers import quote_ident, quote_literal, tenant_object_name
from shared.logging import get_logger

log = get_logger(__name__)


async def rotate(
    databases: ServiceDatabases, tenancy_id: str, service_id: str
) -> CredentialsRotatedData | None:
    """``None`` for a tenancy with no live login (never isolated, or offboarded): it is left
    alone and the request logged. There is nothing to rotate, and failing the event would
    dead-letter it and mark the tenancy's isolation step failed, which is not what happened."""
    pool, service_db = await databases.pool_for(service_id)
    rotated = CredentialsRotatedData(
        role=tenant_object_name(tenancy_id),
        credentials_ref=f"isolation:{service_db}/{tenancy_id}",
    )
    async with pool.acquire() as conn, conn.transaction():
        ledger = Ledger(conn)
        await ledger.lock_tenancy(tenancy_id)
        entry = await ledger.get(tenancy_id)
        if entry is None or entry.removed_at is not None:
            log.warning(
                "credentials not rotated: the tenancy has no live login",
                service_id=service_id,
                isolated=entry is not None,
            )
            return None
        password = new_password()
        await conn.execute(
            f"ALTER ROLE {quote_ident(entry.role_name)}"
            f" PASSWORD {quote_literal(scram_verifier(password))}"
        )
        await ledger.set_password(tenancy_id, password)
    # PostgreSQL checks a password only when a session starts: a rotation made because the
    # old one leaked must also end the sessions opened with it.
    ended = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
        entry.role_name,
    )
    log.info(
        "credentials rotated", service_id=service_id, role=entry.role_name, sessions_ended=ended
    )
    return rotated


async def last_rotated(
    databases: ServiceDatabases, service_id: str, tenancy_id: str
) -> datetime | None:
    """When the tenancy's password was last rotated (``None``: never), so a caller can tell
    that a rotation it asked for is done. Raises ``NoCredentials`` if it has no live login."""
    try:
        conn = await db.connect(databases.dsn(databases.name_for(service_id)))
    except asyncpg.InvalidCatalogNameError as error:  # nobody ever joined the service
        raise NoCredentials(f"no credentials for tenancy {tenancy_id}: {error}") from error
    try:
        entry = await Ledger(conn).get(tenancy_id)
    finally:
        await conn.close()
    if entry is None or entry.removed_at is not None:
        raise NoCredentials(f"no credentials for tenancy {tenancy_id} (not isolated, or removed)")
    return entry.rotated_at
