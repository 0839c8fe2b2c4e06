"""Carrying out a reorganisation plan (issue 18): what ``apply`` locks and what becomes of each
predecessor tenancy's move into its successor's. Plain Python, free of I/O.

A move is ``requested`` when the plan is applied, ``target-provisioning`` while the successor's
tenancy is made, ``moving`` while isolation moves the data and ``moved`` once they are verified
there, which is when the predecessor's tenancy ends. Until then the predecessor's tenancy is
active and untouched, so a move that fails (``failed``, with the step and the reason) leaves it
as it was, and applying the plan again asks for the failed moves once more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any

from services.onboarding.councils import CouncilRegister
from services.onboarding.reorganisation import (
    Hosts,
    Kind,
    Party,
    Plan,
    Readiness,
    Shares,
    TenancyPlan,
    fraction_text,
    share_text,
)
from shared.events import Acceptance, CostShare, Council, MoveRequestedData, SuccessorAgreement


class PlanNotApplicable(ValueError):
    """A plan that cannot be carried out as it stands; the message says what must change."""


class BeforeVestingDay(PlanNotApplicable):
    """A plan applied before its vesting day with no reason given for applying it early."""

    def __init__(self, vesting: date, today: date) -> None:
        self.vesting, self.today = vesting, today
        days = (vesting - today).days
        super().__init__(
            f"on: {vesting.isoformat()} is vesting day, {days} day{'' if days == 1 else 's'} away"
            f" (it is {today.isoformat()} in London): a plan is applied on or after its vesting"
            " day, or before it only with a reason for applying early"
        )


def early_reason(vesting: date, today: date, early: str | None) -> str | None:
    """The reason a plan is applied before its vesting day, kept with the plan, or None on or
    after that day, when the councils have changed and no reason is needed. Applying early ends
    the predecessors' tenancies and moves their data before the councils legally change, so it
    must be meant."""
    if today >= vesting:
        return None
    if early is None:
        raise BeforeVestingDay(vesting, today)
    reason = early.strip()
    if not reason:
        raise PlanNotApplicable("early: the reason for applying before vesting day is blank")
    return reason


class MoveStatus(StrEnum):
    REQUESTED = "requested"
    TARGET_PROVISIONING = "target-provisioning"
    MOVING = "moving"
    MOVED = "moved"
    FAILED = "failed"


@dataclass
class Move:
    source: str
    target: str
    status: MoveStatus
    failed_step: str | None = None
    reason: str | None = None
    attempts: int = 1

    def wait_for_target(self) -> bool:
        if self.status is not MoveStatus.REQUESTED:
            return False
        self.status = MoveStatus.TARGET_PROVISIONING
        return True

    def start_moving(self) -> bool:
        """The successor's tenancy is active: True when the data move is to be asked for now."""
        if self.status not in (MoveStatus.REQUESTED, MoveStatus.TARGET_PROVISIONING):
            return False
        self.status = MoveStatus.MOVING
        return True

    def moved(self) -> bool:
        if self.status is not MoveStatus.MOVING:
            return False  # a late or repeated result of a move already settled
        self.status = MoveStatus.MOVED
        return True

    def fail(self, step: str, reason: str) -> bool:
        if self.status in (MoveStatus.MOVED, MoveStatus.FAILED):
            return False
        self.status = MoveStatus.FAILED
        self.failed_step = step
        self.reason = reason
        return True

    def retry(self) -> bool:
        if self.status is not MoveStatus.FAILED:
            return False
        self.status = MoveStatus.REQUESTED
        self.failed_step = None
        self.reason = None
        self.attempts += 1
        return True


def locked(found: Plan) -> tuple[TenancyPlan, ...]:
    """The plan's tenancies, if every one can be carried out now; otherwise every reason."""
    if not found.tenancies:
        raise PlanNotApplicable(
            f"on: no live tenancy belongs to a council replaced on {found.vesting.isoformat()}"
        )
    if found.readiness is not Readiness.READY:
        raise PlanNotApplicable(
            f"the plan for {found.vesting.isoformat()} is not ready: {not_ready(found)}"
        )
    return found.tenancies


def not_ready(found: Plan) -> str:
    """Each tenancy of the plan that is not ready, with its reasons, for people."""
    return "; ".join(
        f"tenancy {t.tenancy_id} ({t.council.label}, {t.service_id}) is {t.readiness}: "
        + ", ".join(t.reasons)
        for t in found.tenancies
        if t.readiness is not Readiness.READY
    )


def checksum(found: Plan) -> str:
    """The plan as it was applied, so a later look can tell it from the plan shown today."""
    canonical = json.dumps(found.as_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def move_request(
    register: CouncilRegister,
    found: Plan,
    tenancy: TenancyPlan,
    predecessor_gss: str,
    acceptance: Acceptance,
) -> MoveRequestedData:
    """What the move of one ready tenancy needs, fixed when the plan is applied: the workers
    carry it out from this alone, whatever the reference data say by then."""
    assert tenancy.successor is not None  # a ready tenancy has both
    host = council_of(register, tenancy.successor)
    served = [council_of(register, party) for party in tenancy.served]
    return MoveRequestedData(
        vesting=found.vesting,
        kind=tenancy.kind.value,
        source=tenancy.tenancy_id,
        predecessor=predecessor_gss,
        service_id=tenancy.service_id,
        tier=tenancy.tier,
        successor=host,
        creates_target=tenancy.creates_target,
        agreement=SuccessorAgreement(
            novated_from=tenancy.tenancy_id,
            host=host,
            served=served,
            cost_shared=tenancy.kind is Kind.SPLIT and bool(served),
            acceptance=acceptance,
            shares=[CostShare.of(council_of(register, p), share) for p, share in tenancy.shares],
        ),
    )


def cost_shares(agreement: SuccessorAgreement) -> list[CostShare]:
    """How the host's invoices are divided under ``agreement``: as it records, or equally for
    a move asked for before agreements recorded their shares."""
    if agreement.shares or not agreement.cost_shared:
        return list(agreement.shares)
    parties = [agreement.host, *agreement.served]
    return [CostShare.of(council, Fraction(1, len(parties))) for council in parties]


def shares_text(shares: list[CostShare]) -> str:
    """For the audit trail: ``E06000063=9/20,E06000064=11/20``."""
    return ",".join(f"{s.council.gss}={s.share}" for s in shares)


def council_of(register: CouncilRegister, party: Party) -> Council:
    record = register.find(party.register_code)
    if record is None or not record.gss:  # a ready plan has only successors with GSS codes
        raise PlanNotApplicable(f"successor {party.label} has no GSS code yet")
    return Council(gss=record.gss, name=record.name, nation=record.nation, slug=record.slug or None)


def hosts_differ(applied: Hosts, given: Hosts) -> str | None:
    """Why applying again with ``given`` hosts is refused, or None when they are the same."""
    if dict(applied) == dict(given):
        return None
    return (
        f"host: the plan was applied with hosts {hosts_text(applied)}; applying it again carries"
        " out the same plan, so name the same hosts"
    )


def applied_shares(applied_plan: Mapping[str, Any]) -> dict[str, dict[str, Fraction]]:
    """The shares of each split's cost a plan was applied with, read back from the plan."""
    shares: dict[str, dict[str, Fraction]] = {}
    for tenancy in applied_plan.get("tenancies", []):
        for party in tenancy.get("shares", []):
            of_split = shares.setdefault(tenancy["council"]["register_code"], {})
            of_split[party["register_code"]] = Fraction(party["share"])
    return shares


def shares_differ(applied_plan: Mapping[str, Any], given: Shares) -> str | None:
    """Why applying again with ``given`` shares is refused, or None. Giving none is carrying
    out the plan with the shares it was applied with."""
    applied = applied_shares(applied_plan)
    if not given or all(applied.get(p) == dict(s) for p, s in given.items()):
        return None
    shown = "; ".join(
        ", ".join(f"{code}={share_text(share)}" for code, share in of_split.items())
        for of_split in applied.values()
    )
    return (
        f"share: the plan was applied with shares {shown or 'none'}; applying it again carries"
        " out the same plan, so give the same shares or none"
    )


@dataclass(frozen=True)
class Arrangement:
    """A plan scheduled ahead of its vesting day: the hosts and shares the operator chose and
    who accepts the novated agreements, so that the onboarding worker can carry out even a day
    with a split at the start of vesting day, when nobody is at hand to name a host."""

    vesting: date
    hosts: dict[str, str]
    shares: dict[str, dict[str, Fraction]]
    accepted_by: str
    accepted_role: str
    arranged_by: str
    arranged_at: datetime
    applied_at: datetime | None = None  # once the day's plan is applied, by anyone

    def as_json(self, *, who: bool = True) -> dict[str, Any]:
        """``who``: with the names of who arranged it and who accepts, for operators."""
        shown: dict[str, Any] = {
            "vesting": self.vesting.isoformat(),
            "hosts": dict(self.hosts),
            "shares": shares_json(self.shares),
            "arranged_at": self.arranged_at.isoformat(),
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
        }
        if who:
            shown |= {"arranged_by": self.arranged_by, "accepted_by": self.accepted_by}
        return shown


def shares_json(shares: Shares) -> dict[str, dict[str, str]]:
    """Shares as records keep them: exact, as numerator/denominator."""
    return {p: {s: fraction_text(f) for s, f in of.items()} for p, of in shares.items()}


def shares_read(stored: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, Fraction]]:
    return {p: {s: Fraction(f) for s, f in of.items()} for p, of in stored.items()}


def hosts_text(hosts: Hosts) -> str:
    """As the operator writes them: ``CMA=CBD CMA/parking-permits=WAF``, or ``none``."""
    return " ".join(f"{p}={h}" for p, h in sorted(hosts.items())) or "none"


def shares_given_text(shares: Shares) -> str:
    return (
        " ".join(
            f"{p}/{s}={share_text(f)}" for p, of in sorted(shares.items()) for s, f in of.items()
        )
        or "equal"
    )


def how_to_arrange(found: Plan) -> str:
    """What an operator runs to carry out a day's plan that is not ready: for a split with no
    host, the command naming one (before vesting day it schedules the plan, on or after it
    carries it out)."""
    day = found.vesting.isoformat()
    unhosted = {
        t.council.register_code: " or ".join(p.register_code for p in t.served)
        for t in found.tenancies
        if t.kind is Kind.SPLIT and t.successor is None
    }
    if not unhosted:
        return f"tenancy reorganise apply --on {day}, once the reasons are dealt with"
    named = " ".join(f"--host {code}=SUCCESSOR" for code in unhosted)
    which = "; ".join(f"{code}'s successor: {options}" for code, options in unhosted.items())
    return (
        f"tenancy reorganise apply --on {day} {named} ({which}; PREDECESSOR/SERVICE=SUCCESSOR"
        " for one service): before vesting day this schedules the plan for the worker to carry"
        " out at the start of the day, on or after it carries it out now"
    )


def hosts_overridden(arranged: Arrangement | None, given: Hosts) -> str | None:
    """What to tell an operator applying by hand with hosts other than those arranged: theirs
    win (they are here, on the day), but the arrangement was someone's decision."""
    if arranged is None or dict(arranged.hosts) == dict(given):
        return None
    return (
        f"note: the plan was scheduled with hosts {hosts_text(arranged.hosts)} (by"
        f" {arranged.arranged_by}, {arranged.arranged_at:%Y-%m-%d %H:%M %Z}); it is applied with"
        f" the hosts given here, {hosts_text(given)}"
    )
