"""Reorganisations applied by themselves on vesting day (issue 18).

Every few minutes the onboarding worker looks for the vesting days that have arrived, in London,
with no plan applied, and applies each plan that is ready through
:func:`services.onboarding.reorganisation_service.apply`, exactly as ``tenancy reorganise
apply`` does, recorded as applied by ``worker:onboarding``.

Only a day never applied is applied here: a move that fails waits for an operator to look and
apply again, rather than being asked for every round. A plan that is waiting (a successor
without its GSS code) or blocked is left alone, its reasons logged once a day and counted in
``tenancy_reorganisations_waiting``. A plan the operator scheduled ahead of the day (``tenancy
reorganise apply`` before vesting day) is applied with the hosts and shares they arranged, and
the acceptance they gave; a split with no host arranged is blocked here, since which successor
hosts it is the operator's choice, and its warning says how to arrange it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from services.onboarding import moves
from services.onboarding.councils import CouncilRegister
from services.onboarding.moves import Arrangement, PlanNotApplicable
from services.onboarding.reorganisation import (
    LiveTenancy,
    Plan,
    Readiness,
    london_today,
    plan,
)
from services.onboarding.reorganisation_repository import MoveRepository, live_tenancies
from services.onboarding.reorganisation_service import SOURCE, apply
from services.onboarding.service import Person
from shared import audit, metrics
from shared.logging import get_logger
from shared.outages import is_outage
from shared.outbox import UnitOfWork
from shared.tracing import tracer

log = get_logger(__name__)
ACTOR = "worker:onboarding"
# Who accepts the novated agreements for the successors when nobody applies the plan by hand.
ON_VESTING_DAY = Person(ACTOR, "applied on vesting day, on the successor's behalf")
Clock = Callable[[], date]


def due(
    register: CouncilRegister,
    today: date,
    applied: Collection[date],
    tenancies: Sequence[LiveTenancy],
    arranged: Mapping[date, Arrangement] | None = None,
) -> list[Plan]:
    """The plan of each vesting day that has arrived by ``today`` with no plan applied, if it
    moves any tenancy, earliest first: with the hosts and shares ``arranged`` for its day, or
    none, so that a split with no arrangement is blocked."""
    arranged = arranged or {}
    days = [d for d in register.vesting_days(date.min) if d <= today and d not in applied]
    found = []
    for day in days:
        chosen = arranged.get(day)
        day_plan = (
            plan(register, day, tenancies, chosen.hosts, chosen.shares)
            if chosen
            else plan(register, day, tenancies)
        )
        if day_plan.tenancies:
            found.append(day_plan)
    return found


@dataclass
class Watch:
    """What the loop remembers between rounds, in this process only (a restart warns again)."""

    warned: dict[date, date] = field(default_factory=dict)  # vesting day -> day last warned
    shown: set[tuple[str, str]] = field(default_factory=set)  # the gauge series it set

    def first_today(self, vesting: date, today: date) -> bool:
        """Whether to warn of ``vesting``'s plan not being applied: once a day, not each round."""
        if self.warned.get(vesting) == today:
            return False
        self.warned[vesting] = today
        return True


async def apply_due(uow: UnitOfWork, register: CouncilRegister, today: date, watch: Watch) -> None:
    """One round: apply every due plan that is ready; warn of and count those that are not."""
    async with uow.transaction() as tx:
        repository = MoveRepository(tx.conn)
        applied = await repository.applied_days()
        arranged = await repository.arrangements()
        tenancies = await live_tenancies(tx.conn)
    waiting: dict[tuple[str, str], int] = {}
    for found in due(register, today, applied, tenancies, arranged):
        day, readiness = found.vesting.isoformat(), found.readiness
        if readiness is Readiness.READY:
            try:
                await _apply(uow, register, found.vesting, today, arranged.get(found.vesting))
            except PlanNotApplicable as refusal:
                # Ready as read, refused under the locks: the reason says what changed.
                readiness, reasons, held = Readiness.BLOCKED, str(refusal), len(found.tenancies)
            else:
                continue
        else:
            reasons = moves.not_ready(found)
            held = sum(t.readiness is not Readiness.READY for t in found.tenancies)
        waiting[day, readiness.value] = held
        if watch.first_today(found.vesting, today):
            log.warning(
                "reorganisation not applied on vesting day",
                vesting=day,
                readiness=readiness.value,
                reasons=reasons,
                then=moves.how_to_arrange(found),
            )
    watch.shown = metrics.show_reorganisations_waiting(waiting, watch.shown)


async def _apply(
    uow: UnitOfWork,
    register: CouncilRegister,
    vesting: date,
    today: date,
    arranged: Arrangement | None,
) -> None:
    """Apply the day's plan as ``tenancy reorganise apply`` does, unless someone applied it
    since the round looked: as the operator arranged it, if they did."""
    attributes = {"reorganisation.vesting": vesting.isoformat(), "reorganisation.automatic": "true"}
    accepted_by = ON_VESTING_DAY
    if arranged is not None:
        attributes["reorganisation.arranged_by"] = arranged.arranged_by
        # The acceptance the operator gave when scheduling it, not the worker's.
        accepted_by = Person(arranged.accepted_by, arranged.accepted_role)
    with tracer().start_as_current_span("reorganise apply", attributes=attributes):
        async with uow.transaction() as tx:
            applied = await apply(
                tx,
                register,
                vesting,
                arranged.hosts if arranged else {},
                accepted_by,
                SOURCE,
                today=today,
                retry_failed=False,
                shares=arranged.shares if arranged else None,
                applied_by=ACTOR,
            )
            if applied.first:
                detail = {**attributes, "tenancies": str(len(applied.requested))}
                await audit.append(tx.conn, actor=ACTOR, action="reorganise.apply", detail=detail)
    if applied.first:
        log.info(
            "reorganisation applied on vesting day",
            vesting=vesting.isoformat(),
            tenancies=len(applied.requested),
        )


async def run_vesting_days(
    uow: UnitOfWork, councils_csv: Path, every_seconds: float, today: Clock = london_today
) -> None:
    watch = Watch()
    while True:
        try:
            # Read each round: a plan waiting for a GSS code goes ahead once the register has it.
            await apply_due(uow, CouncilRegister.from_csv(councils_csv), today(), watch)
        except Exception as error:
            if is_outage(error):
                log.warning("vesting-day check failed; it will try again", error=str(error))
            else:
                log.exception("vesting-day check failed; it will try again")
        await asyncio.sleep(every_seconds)
