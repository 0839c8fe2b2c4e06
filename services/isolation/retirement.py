"""Retiring a reorganised predecessor (issue 18): its frozen data leave as an offboarded
council's do.

A move leaves the predecessor's role locked out and, in the schema and database tiers, its
rows where they were, so that nothing is lost until the move is settled. Retiring it is the
offboarding exit, run once its move is verified: the frozen tables are exported to the same
archive an offboarding writes (``<EXPORTS_DIR>/<service>/<tenancy>.zip``, CSV per table and a
manifest of row counts and SHA-256 checksums), then its schema or database (pooled: any rows
still tagged with it, none after a re-tag) and its role are dropped, and the ledger records
the removal. The platform does it, as it does offboarding: it made those objects.

Isolation checks for itself that the move is recorded beside the rows it moved before dropping
anything, whatever onboarding asked. A repeated request finds the recorded removal.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg

from services.isolation import merge, offboarding
from services.isolation.databases import ServiceDatabases
from services.isolation.repository import Ledger, LedgerEntry
from shared.catalogue import ServiceManifest
from shared.events import IsolationRemovedData
from shared.logging import get_logger
from shared.outages import is_outage

log = get_logger(__name__)


class RetirementRefused(Exception):
    """The predecessor was not retired; the message says why. Its frozen data are as they were
    (in the database tier, a failure past the drop leaves their export recorded, and retiring
    again finishes the job)."""


def refusal(
    source_id: str,
    source: LedgerEntry | None,
    target_id: str,
    target: LedgerEntry | None,
    manifest: ServiceManifest,
) -> str | None:
    """Why the predecessor cannot be retired from what the ledger says, or None."""
    if source is None:
        return f"tenancy {source_id} has no data in {manifest.id}"
    if source.tier is not manifest.isolation or source.service_id != manifest.id:
        return f"tenancy {source_id} is not a {manifest.isolation} tenancy of {manifest.id}"
    if source_id == target_id:
        return "a tenancy is not its own successor"
    if target is None or target.removed_at is not None:
        # Its record of the move went with it: nothing confirms the rows arrived.
        return f"the successor's tenancy {target_id} has no data in {manifest.id}"
    return None


async def retire(
    databases: ServiceDatabases,
    exports_dir: Path,
    source_id: str,
    target_id: str,
    manifest: ServiceManifest,
) -> IsolationRemovedData:
    """Export the predecessor's frozen data, then drop them and its role; the removal done."""
    pool, _ = await databases.pool_for(manifest.id)
    started = time.monotonic()
    async with pool.acquire() as conn, offboarding.tenancy_locked(conn, source_id):
        ledger = Ledger(conn)
        source, target = await ledger.get(source_id), await ledger.get(target_id)
        if source is not None and source.removed_at is not None and source.removal is not None:
            log.info("predecessor already retired; reporting the recorded removal")
            return IsolationRemovedData.model_validate(source.removal)
        reason = refusal(source_id, source, target_id, target, manifest)
        if reason is not None:
            raise RetirementRefused(reason)
        assert source is not None
        assert target is not None
        try:
            if await merge.recorded_move(databases, conn, source_id, target) is None:
                raise RetirementRefused(
                    f"no verified move of tenancy {source_id} into {target_id} is recorded"
                    " beside its rows: only a predecessor whose move is verified is retired"
                )
            removal = await offboarding.export_and_drop(conn, databases, exports_dir, source)
        except (offboarding.RemovalRefused, asyncpg.PostgresError, OSError) as error:
            # OSError: the archive could not be written (a full disk, say); nothing was dropped.
            if is_outage(error):
                raise  # redelivered once the database is back, and finished then
            raise RetirementRefused(_reason(error)) from error
    log.info(
        "reorganised predecessor exported and retired",
        source=source_id,
        target=target_id,
        service_id=manifest.id,
        tier=removal.tier.value,
        tables=len(removal.tables),
        rows=sum(t.rows for t in removal.tables),
        archive=removal.archive,
        seconds=round(time.monotonic() - started, 3),
    )
    return removal


def _reason(error: BaseException) -> str:
    if isinstance(error, offboarding.RemovalRefused):
        return str(error)
    if isinstance(error, OSError):
        return f"the export could not be written: {error.strerror or error}"
    # The server's message alone, bounded: never its detail, which can quote rows.
    message = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {message}"
