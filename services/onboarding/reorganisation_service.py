"""Onboarding's part in carrying out a reorganisation plan (issue 18); each use case runs in a
unit of work the caller opened.

``apply`` locks the plan and asks for one move per predecessor tenancy, keyed by the successor's
tenancy, so the moves into one tenancy run one after another. Onboarding makes the successor's
tenancy where the plan says so (under the plan's fixed id, provisioned as any other), asks
isolation to move the data once it is active, and ends the predecessor's tenancy only when
isolation reports the data verified there. A failure anywhere fails the move, never the
predecessor's tenancy, which stays active with its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from services.onboarding import moves
from services.onboarding.councils import CouncilRecord, CouncilRegister
from services.onboarding.domain import State
from services.onboarding.moves import Arrangement, Move, MoveStatus, PlanNotApplicable
from services.onboarding.reorganisation import (
    Plan,
    Shares,
    london_today,
    plan,
    replaced_refusal,
    vesting_instant,
)
from services.onboarding.reorganisation_repository import MoveRepository, live_tenancies
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from shared import audit
from shared.catalogue import ServiceManifest
from shared.db import Connection
from shared.events import (
    Acceptance,
    Brand,
    Colours,
    DataMovedData,
    DataMoveRequested,
    DataMoveRequestedData,
    MoveRequested,
    MoveRequestedData,
    OnboardingRequestedData,
    TenancyRegistered,
    TenancyRegisteredData,
    TenancyReorganised,
    TenancyReorganisedData,
)
from shared.outbox import Transaction

if TYPE_CHECKING:
    # Only a type here: onboarding.service calls into this module as tenancies change.
    from services.onboarding.service import Person

SOURCE = "tenancy/onboarding"


@dataclass(frozen=True)
class Applied:
    vesting: date
    first: bool  # False: the plan was applied before, and this asked again for failed moves
    requested: list[str]  # the predecessor tenancies whose moves were asked for now
    early: str | None = None  # why the plan was applied before vesting day, if it was


async def apply(
    tx: Transaction,
    register: CouncilRegister,
    vesting: date,
    hosts: dict[str, str],
    accepted_by: Person,
    source: str,
    *,
    today: date,
    early: str | None = None,
    retry_failed: bool = True,
    shares: Shares | None = None,
    applied_by: str | None = None,
) -> Applied:
    """Lock the plan for ``vesting`` and ask for its moves. Applying it again is harmless: it
    carries out the plan as first applied, asking again only for moves that failed, unless
    ``retry_failed`` is False (the automatic apply on vesting day, which must leave a failed
    move to the operator rather than ask for it again every round).

    ``today`` is the day in London. Before vesting day a plan is refused
    (:class:`~services.onboarding.moves.BeforeVestingDay`) unless ``early`` gives the reason for
    applying it already, which is kept with the plan and in the audit trail. Asking again for
    failed moves needs no second reason: the plan was applied, early or not, already.

    ``shares`` divide a split's cost among its successors (equally where none are given); the
    agreement each move carries records them, and applying again refuses other shares.

    ``applied_by`` is who carried the plan out, when not the person accepting the agreements
    (the worker carrying out a plan an operator scheduled)."""
    repository = MoveRepository(tx.conn)
    applied = await repository.reorganisation(vesting)
    if applied is not None and not retry_failed:
        return Applied(vesting, False, [])
    if applied is not None:
        refusal = moves.hosts_differ(applied["hosts"], hosts) or moves.shares_differ(
            applied["plan"], shares or {}
        )
        if refusal is not None:
            raise PlanNotApplicable(refusal)
        return Applied(vesting, False, await _retry_failed(tx, vesting))

    reason = moves.early_reason(vesting, today, early)
    found = plan(register, vesting, await live_tenancies(tx.conn), hosts, shares)
    ready = moves.locked(found)
    tenancies = TenancyRepository(tx.conn)
    for tenancy in ready:
        # Under the row lock: an offboarding asked for since the plan was read is seen here.
        locked = await tenancies.lock(tenancy.tenancy_id)
        if locked is None or locked.state is not State.ACTIVE:
            state = locked.state if locked else "gone"
            raise PlanNotApplicable(f"tenancy {tenancy.tenancy_id} is {state} now: plan again")
    already = await repository.moved_elsewhere([t.tenancy_id for t in ready])
    if already:
        raise PlanNotApplicable(f"tenancies {', '.join(already)} are moved by an earlier plan")
    if not await repository.add_reorganisation(
        vesting,
        hosts,
        found.as_json(),
        moves.checksum(found),
        applied_by or accepted_by.name,
        reason,
    ):
        raise PlanNotApplicable(f"on: a plan for {vesting.isoformat()} was applied meanwhile")
    catalogue = CatalogueRepository(tx.conn)
    now = datetime.now(UTC)
    for tenancy in ready:
        manifest = await catalogue.get(tenancy.service_id)
        if manifest is None:
            raise PlanNotApplicable(f"service: {tenancy.service_id!r} is not in the catalogue")
        acceptance = Acceptance(
            agreement_version=manifest.agreement.version,
            name=accepted_by.name,
            role=accepted_by.role,
            accepted_at=now,
        )
        council = register.find(tenancy.council.register_code)
        assert council is not None  # the plan was made from this register
        request = moves.move_request(register, found, tenancy, council.gss, acceptance)
        target = tenancy.target_tenancy_id
        assert target is not None  # a ready tenancy has one
        await repository.add(vesting, request, target)
        tx.emit(MoveRequested.new(source=source, subject=target, data=request))
        await record(
            tx,
            "tenancy.reorganisation.requested",
            tenancy.tenancy_id,
            vesting=vesting.isoformat(),
            kind=request.kind,
            target=target,
            successor=request.successor.gss,
            host=request.agreement.host.gss,
            served=",".join(c.gss for c in request.agreement.served),
            shares=moves.shares_text(request.agreement.shares),
            **({"early": reason} if reason else {}),
        )
    return Applied(vesting, True, [t.tenancy_id for t in ready], reason)


@dataclass(frozen=True)
class Scheduled:
    arrangement: Arrangement
    replaced: Arrangement | None  # the arrangement this one replaces, if any
    plan: Plan  # as it stands now, with the arrangement's hosts and shares


async def schedule(
    conn: Connection,
    register: CouncilRegister,
    vesting: date,
    hosts: dict[str, str],
    shares: Shares,
    accepted_by: Person,
    actor: str,
    *,
    today: date,
) -> Scheduled:
    """Arrange the plan for ``vesting`` ahead of the day, for the onboarding worker to carry out
    at its start; scheduling again replaces the arrangement. A plan not ready now may be
    scheduled (the register may still lack a GSS code): the worker applies it only if it is
    ready then. Runs in a transaction the caller opened; no event is sent until the day."""
    day = vesting.isoformat()
    if today >= vesting:
        raise PlanNotApplicable(
            f"on: {day} has arrived (it is {today.isoformat()} in London): apply the plan now"
            " rather than schedule it"
        )
    if not register.replaced_on(vesting):
        raise PlanNotApplicable(f"on: no council is replaced on {day} in the reference data")
    repository = MoveRepository(conn)
    applied = await repository.reorganisation(vesting)
    if applied is not None:
        raise PlanNotApplicable(
            f"on: the plan for {day} was applied already, on {applied['applied_at']:%Y-%m-%d}"
            f" by {applied['applied_by']}; follow it with tenancy reorganise moves --on {day}"
        )
    found = plan(register, vesting, await live_tenancies(conn), hosts, shares)
    replaced = await repository.arrange(
        vesting, hosts, shares, accepted_by.name, accepted_by.role, actor
    )
    arrangement = await repository.arrangement(vesting)
    assert arrangement is not None  # just written
    await audit.append(
        conn,
        actor=actor,
        action="reorganise.scheduled",
        detail={
            "reorganisation.vesting": day,
            "hosts": moves.hosts_text(hosts),
            "shares": moves.shares_given_text(shares),
            "accepted_by": accepted_by.name,
            "readiness": found.readiness.value,
            "replaces": moves.hosts_text(replaced.hosts) if replaced else "",
        },
    )
    return Scheduled(arrangement, replaced, found)


async def cancel(conn: Connection, vesting: date, actor: str) -> Arrangement | None:
    """Cancel the plan scheduled for ``vesting``; None if none was. A plan already applied is
    not undone by this (its moves are under way or done): refused."""
    repository = MoveRepository(conn)
    applied = await repository.reorganisation(vesting)
    if applied is not None:
        day = vesting.isoformat()
        raise PlanNotApplicable(
            f"on: the plan for {day} was applied on {applied['applied_at']:%Y-%m-%d} by"
            f" {applied['applied_by']}; an applied plan is not cancelled (its moves: tenancy"
            f" reorganise moves --on {day})"
        )
    cancelled = await repository.cancel_arrangement(vesting)
    if cancelled is not None:
        await audit.append(
            conn,
            actor=actor,
            action="reorganise.schedule_cancelled",
            detail={
                "reorganisation.vesting": vesting.isoformat(),
                "hosts": moves.hosts_text(cancelled.hosts),
                "arranged_by": cancelled.arranged_by,
            },
        )
    return cancelled


async def joining_refusal(
    conn: Connection, register: CouncilRegister, council: CouncilRecord
) -> str | None:
    """Why ``council`` may not newly join a service: its replacement's plan is applied or
    scheduled (see :func:`~services.onboarding.reorganisation.replaced_refusal`). Reads the
    database only for a council the register says is replaced."""
    if not council.replaced_by or council.end is None:
        return None
    decided = await MoveRepository(conn).decided(council.end)
    return replaced_refusal(register, council, decided, london_today())


async def _retry_failed(tx: Transaction, vesting: date) -> list[str]:
    repository = MoveRepository(tx.conn)
    retried = []
    for move in await repository.lock_of_day(vesting):
        if not move.retry():
            continue
        await repository.save(move)
        request = await repository.request(move.source)
        # A new event id: the first request's id is in the inbox and would be skipped.
        tx.emit(MoveRequested.new(source=SOURCE, subject=move.target, data=request))
        await record(tx, "tenancy.reorganisation.retried", move.source, attempt=str(move.attempts))
        retried.append(move.source)
    return retried


async def move_requested(tx: Transaction, target_id: str, request: MoveRequestedData) -> None:
    """Make the successor's tenancy if the plan says so, or move into the one it has."""
    tenancies = TenancyRepository(tx.conn)
    # The target's row first, then the move's: the order a step result arriving for the
    # target takes them in (see target_active), so the two never deadlock.
    target = await tenancies.lock(target_id)
    repository = MoveRepository(tx.conn)
    move = await repository.lock(request.source)
    if move is None or move.status is not MoveStatus.REQUESTED:
        return  # an earlier request, overtaken by a retry or already under way
    refusal = None
    if target is None:
        other = await tenancies.live_tenancy_of(request.successor.gss, request.service_id)
        manifest = await CatalogueRepository(tx.conn).get(request.service_id)
        if other is not None:
            refusal = (
                f"{request.successor.name} has tenancy {other} in {request.service_id} now,"
                f" not the plan's {target_id}: offboard one of them or move it by hand"
            )
        elif not request.creates_target:
            refusal = f"the successor's tenancy {target_id} is gone"
        elif manifest is None:
            refusal = f"service: {request.service_id!r} is no longer in the catalogue"
        else:
            await _create_target(tx, target_id, request, manifest)
            move.wait_for_target()
    elif target.state is State.ACTIVE:
        await _ask_for_data(tx, move)
    elif target.state in (State.REQUESTED, State.REGISTERED):
        move.wait_for_target()  # made by an earlier move into it; its activation starts this
    else:
        refusal = f"the successor's tenancy {target_id} is {target.state}"
    if refusal is not None:
        await _fail(tx, move, "onboarding", refusal)
        return
    await repository.save(move)
    agreement = request.agreement
    await record(
        tx,
        "tenancy.reorganisation.agreement_novated",
        target_id,
        novated_from=agreement.novated_from,
        host=agreement.host.gss,
        served=",".join(c.gss for c in agreement.served),
        cost_shared=str(agreement.cost_shared).lower(),
        shares=moves.shares_text(moves.cost_shares(agreement)),
        accepted_by=agreement.acceptance.name,
        agreement_version=agreement.acceptance.agreement_version,
    )


async def _create_target(
    tx: Transaction, target_id: str, request: MoveRequestedData, manifest: ServiceManifest
) -> None:
    """The successor's tenancy, provisioned like any other from here on. Its council comes
    from the applied plan: the register may not list it until the day it starts."""
    successor = request.successor
    joining = OnboardingRequestedData(
        council=successor.gss, service_id=manifest.id, acceptance=request.agreement.acceptance
    )
    tenancies = TenancyRepository(tx.conn)
    await tenancies.add_request(target_id, successor.gss, successor.name, manifest.id, joining)
    tenancy = await tenancies.lock(target_id)
    assert tenancy is not None
    tenancy.register()
    await tenancies.save(tenancy)
    await record(
        tx,
        "tenancy.registered",
        target_id,
        council=successor.gss,
        service=manifest.id,
        reorganisation=request.vesting.isoformat(),
    )
    # The successor's own name on its theme until its admin sends its brand.
    brand = Brand(name=successor.name, colours=Colours(primary="#0B0C0C"), logo_alt=successor.name)
    data = TenancyRegisteredData(council=successor, service=manifest, brand=brand)
    tx.emit(TenancyRegistered.new(source=SOURCE, subject=target_id, data=data))


async def _ask_for_data(tx: Transaction, move: Move) -> None:
    if not move.start_moving():
        return
    service_id = (await MoveRepository(tx.conn).request(move.source)).service_id
    manifest = await CatalogueRepository(tx.conn).get(service_id)
    if manifest is None:
        await _fail(tx, move, "onboarding", f"service: {service_id!r} left the catalogue")
        return
    data = DataMoveRequestedData(source=move.source, service=manifest)
    tx.emit(DataMoveRequested.new(source=SOURCE, subject=move.target, data=data))


async def target_active(tx: Transaction, target_id: str) -> None:
    """A successor's tenancy made for a plan is active: its moves go ahead, in order."""
    repository = MoveRepository(tx.conn)
    for move in await repository.lock_into(target_id, MoveStatus.TARGET_PROVISIONING):
        await _ask_for_data(tx, move)
        await repository.save(move)


async def target_failed(tx: Transaction, target_id: str, reason: str) -> None:
    repository = MoveRepository(tx.conn)
    for move in await repository.lock_into(target_id, MoveStatus.TARGET_PROVISIONING):
        await _fail(
            tx,
            move,
            "onboarding",
            f"the successor's tenancy {target_id} failed: {reason}; retry it, then apply again",
        )


async def data_moved(tx: Transaction, target_id: str, moved: DataMovedData) -> None:
    """The data are verified in the successor's tenancy: the predecessor's ends."""
    repository = MoveRepository(tx.conn)
    move = await repository.lock(moved.source)
    if move is None or move.target != target_id or not move.moved():
        return
    tables = [t.model_dump(mode="json") for t in moved.tables]
    await repository.save(move, tables)
    tenancies = TenancyRepository(tx.conn)
    predecessor = await tenancies.lock(moved.source)
    if predecessor is None or not predecessor.reorganise():
        return  # only an active tenancy is moved, and a move holds off its offboarding
    await tenancies.save_state(predecessor)
    await tx.conn.execute(
        "UPDATE onboarding.tenancies SET reorganised_into = $2 WHERE id = $1",
        moved.source,
        target_id,
    )
    request = await repository.request(moved.source)
    data = TenancyReorganisedData(
        target=target_id,
        successor=request.successor.gss,
        service_id=request.service_id,
        vesting=request.vesting,
        closes_at=vesting_instant(request.vesting),
        served=[c.gss for c in request.agreement.served],
        shares=moves.cost_shares(request.agreement),
    )
    tx.emit(TenancyReorganised.new(source=SOURCE, subject=moved.source, data=data))
    counts = "; ".join(
        f"{t.name}: {t.source_rows} rows, checksum {t.source_checksum}, target"
        f" {t.target_rows_before} -> {t.target_rows_after} rows"
        for t in moved.tables
    )
    await record(tx, "tenancy.reorganised", moved.source, target=target_id, tables=counts)
    await record(
        tx, "tenancy.reorganisation.received", target_id, source=moved.source, tables=counts
    )


async def data_move_failed(tx: Transaction, target_id: str, source: str, reason: str) -> None:
    move = await MoveRepository(tx.conn).lock(source)
    if move is not None and move.target == target_id:
        await _fail(tx, move, "isolation", reason)


async def _fail(tx: Transaction, move: Move, step: str, reason: str) -> None:
    if move.fail(step, reason):
        await MoveRepository(tx.conn).save(move)
        await record(
            tx, "tenancy.reorganisation.failed", move.source, step=step, reason=reason[:500]
        )


async def record(tx: Transaction, action: str, tenancy_id: str, **detail: str) -> None:
    await audit.append(
        tx.conn, actor="worker:onboarding", action=action, tenancy_id=tenancy_id, detail=detail
    )
