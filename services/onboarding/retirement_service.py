"""Onboarding's part in retiring a reorganisation's predecessors once settled (issue 18); each
use case runs in a unit of work the caller opened.

``retire`` asks isolation, with one event keyed by each predecessor's tenancy, to export its
frozen data and drop them with its role, for every predecessor of a vesting day whose move is
verified, and names why each other one is refused. Isolation's answer is recorded beside the
move and in the audit trail: the export's archive, checksum and row counts, and the drop.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from services.onboarding.moves import PlanNotApplicable
from services.onboarding.reorganisation_repository import MoveRepository
from services.onboarding.repository import CatalogueRepository
from services.onboarding.retirement import (
    Retired,
    Retirement,
    RetirementStatus,
    due_for_retirement,
)
from services.onboarding.retirement_repository import RetirementRepository
from shared import audit
from shared.catalogue import IsolationTier
from shared.events import IsolationRemovedData, RetirementRequested, RetirementRequestedData
from shared.logging import get_logger
from shared.outages import is_outage
from shared.outbox import Transaction, UnitOfWork
from shared.tracing import tracer

log = get_logger(__name__)
ACTOR = "worker:onboarding"
SOURCE = "tenancy/onboarding"


async def retire(tx: Transaction, vesting: date, source: str) -> Retired:
    """Ask for the retirement of each verified predecessor of ``vesting`` not retired yet.
    Asking again is harmless: a retired one is left alone, and one pending or failed is asked
    for again, which isolation's recorded removal makes a no-op when it was done."""
    if await MoveRepository(tx.conn).reorganisation(vesting) is None:
        raise PlanNotApplicable(f"on: no plan was applied for {vesting.isoformat()}")
    requested: list[str] = []
    already: list[str] = []
    refused: dict[str, str] = {}
    for retirement in await RetirementRepository(tx.conn).lock_of_day(vesting):
        refusal = retirement.refusal()
        if refusal is not None:
            refused[retirement.source] = refusal
        elif await _ask(tx, retirement, source):
            requested.append(retirement.source)
        elif retirement.status is RetirementStatus.RETIRED:
            already.append(retirement.source)
        else:
            refused[retirement.source] = retirement.reason or "not retired"
    return Retired(vesting, requested, already, refused)


async def retire_due(tx: Transaction, after_days: int, source: str) -> list[str]:
    """The worker's own round: retire each predecessor verified ``after_days`` ago or more."""
    found = await RetirementRepository(tx.conn).lock_moved()
    due = due_for_retirement(found, datetime.now(UTC), after_days)
    return [r.source for r in due if await _ask(tx, r, source, after_days=str(after_days))]


async def _ask(tx: Transaction, retirement: Retirement, source: str, **detail: str) -> bool:
    if not retirement.request():
        return False
    manifest = await CatalogueRepository(tx.conn).get(retirement.service_id)
    if manifest is None:
        # Its frozen data stay: without the manifest, isolation cannot find them.
        retirement.fail(f"service: {retirement.service_id!r} is no longer in the catalogue")
        await RetirementRepository(tx.conn).save(retirement)
        return False
    await RetirementRepository(tx.conn).save(retirement)
    data = RetirementRequestedData(target=retirement.target, service=manifest)
    tx.emit(RetirementRequested.new(source=source, subject=retirement.source, data=data))
    await record(tx, "tenancy.reorganisation.retirement_requested", retirement.source, **detail)
    return True


async def predecessor_retired(tx: Transaction, source: str, removed: IsolationRemovedData) -> None:
    repository = RetirementRepository(tx.conn)
    retirement = await repository.lock(source)
    if retirement is None or not retirement.retired():
        return
    await repository.save(retirement)
    await repository.record_retired(source, removed)
    await record(
        tx,
        "tenancy.reorganisation.exported",
        source,
        archive=removed.archive,
        archive_sha256=removed.archive_sha256,
        tables="; ".join(f"{t.name}: {t.rows} rows, sha256 {t.sha256}" for t in removed.tables),
        rows=str(sum(t.rows for t in removed.tables)),
    )
    dropped = {
        IsolationTier.POOLED: "its rows",
        IsolationTier.SCHEMA: "its schema",
        IsolationTier.DATABASE: "its database",
    }
    await record(
        tx,
        "tenancy.reorganisation.retired",
        source,
        tier=removed.tier.value,
        dropped=f"{dropped[removed.tier]} and its role",
        archive_sha256=removed.archive_sha256,
    )


async def retirement_failed(tx: Transaction, source: str, reason: str) -> None:
    repository = RetirementRepository(tx.conn)
    retirement = await repository.lock(source)
    if retirement is not None and retirement.fail(reason):
        await repository.save(retirement)
        await record(tx, "tenancy.reorganisation.retirement_failed", source, reason=reason[:500])


async def run_retirements(uow: UnitOfWork, after_days: int, every_seconds: float) -> None:
    """Retire, every round, the predecessors verified ``after_days`` ago (or more)."""
    while True:
        try:
            with tracer().start_as_current_span("reorganise retire", attributes={}):
                async with uow.transaction() as tx:
                    retired = await retire_due(tx, after_days, SOURCE)
                    if retired:
                        detail = {"tenancies": str(len(retired)), "after_days": str(after_days)}
                        await audit.append(
                            tx.conn, actor=ACTOR, action="reorganise.retire", detail=detail
                        )
            if retired:
                log.info("settled predecessors asked to retire", tenancies=len(retired))
        except Exception as error:
            if is_outage(error):
                log.warning("retirement check failed; it will try again", error=str(error))
            else:
                log.exception("retirement check failed; it will try again")
        await asyncio.sleep(every_seconds)


async def record(tx: Transaction, action: str, tenancy_id: str, **detail: str) -> None:
    await audit.append(tx.conn, actor=ACTOR, action=action, tenancy_id=tenancy_id, detail=detail)
