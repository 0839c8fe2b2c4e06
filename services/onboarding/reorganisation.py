"""Council reorganisation (issue 18): what happens, on vesting day, to every tenancy of a council
the register says is replaced. Plain Python over the register and the live tenancies, free of
I/O, so the CLI, the API and (later) the workers that carry a plan out share one set of rules.

A council replaced by **one** successor is *merged*: its data move into the successor's tenancy
in the same service, which is created if the successor has none (every predecessor merging into
that successor in that service lands in the same one). A council replaced by **several** is
*split*: one successor, named by the operator, *hosts* the service for the others under an
inter-authority agreement novated from the predecessor's, with the cost shared; its data move
into the host's tenancy exactly as in a merge. Moving into a tenancy rather than handing the old
one over keeps "one live tenancy per council and service" and lets a failure leave the
predecessor's tenancy untouched.

Each tenancy's plan is ``ready``, ``waiting`` (the register is not complete yet: a successor
without a GSS code; only the register changing moves it on) or ``blocked`` (someone must act
first; the reasons say what).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from services.metering.periods import Period
from services.onboarding.councils import CouncilRecord, CouncilRegister
from shared.catalogue import IsolationTier, PeriodKind
from shared.identifiers import tenant_object_name

LONDON = ZoneInfo("Europe/London")
# Names the successor tenancy a plan creates, so that planning twice, or applying a plan again
# after a failure, names the same tenancy rather than making a second one.
_SUCCESSOR_TENANCIES = uuid.UUID("0b1e4c8e-5d0a-4c55-9a43-2f8a3f0e1804")
# A tenancy leaving its service has nothing to move: it is not part of any plan.
_LEAVING = frozenset({"offboarding", "offboarded", "reorganised"})


class Kind(StrEnum):
    MERGE = "merge"  # one successor: the predecessors' data move into its tenancy
    SPLIT = "split"  # several successors: one hosts the service for the others


class Readiness(StrEnum):
    READY = "ready"
    WAITING = "waiting"
    BLOCKED = "blocked"


class PlanInputInvalid(ValueError):
    """An operator's choice the plan cannot use; the message names the field and the rule."""


@dataclass(frozen=True)
class Party:
    """A council in a plan, identified for people and for software."""

    register_code: str
    name: str
    gss: str | None
    label: str

    @classmethod
    def of(cls, record: CouncilRecord) -> Party:
        return cls(record.register_code, record.name, record.gss or None, record.label)

    def as_json(self) -> dict[str, Any]:
        return {
            "register_code": self.register_code,
            "name": self.name,
            "gss": self.gss,
            "label": self.label,
        }


@dataclass(frozen=True)
class LiveTenancy:
    """What the plan needs of a tenancy: whose it is, where its data live and how it is billed."""

    id: str
    council_gss: str
    service_id: str
    tier: IsolationTier
    state: str
    billing_period: PeriodKind | None  # None: the service does not charge
    # The platform's database. A successor's new tenancy has a fixed id, made from it too:
    # tenant roles are the PostgreSQL cluster's, and two platforms may share one.
    platform: str = ""


@dataclass(frozen=True)
class CouncilChange:
    """One line of the register's reorganisation: a merge into one successor (all its
    predecessors) or the split of one predecessor."""

    kind: Kind
    predecessors: tuple[Party, ...]
    successors: tuple[Party, ...]
    host: Party | None  # a split's hosting successor, once the operator names it
    problems: tuple[str, ...]  # what in the register itself stops it
    # A split's hosts of single services, each winning over ``host`` for its service.
    service_hosts: tuple[tuple[str, Party], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "predecessors": [p.as_json() for p in self.predecessors],
            "successors": [s.as_json() for s in self.successors],
            "host": self.host.as_json() if self.host else None,
            "service_hosts": {service: p.as_json() for service, p in self.service_hosts},
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Step:
    worker: str  # which worker does it: onboarding, isolation, branding, metering, audit
    action: str  # a stable name for software
    detail: str  # what happens, for people

    def as_json(self) -> dict[str, str]:
        return {"worker": self.worker, "action": self.action, "detail": self.detail}


@dataclass(frozen=True)
class TenancyPlan:
    tenancy_id: str
    service_id: str
    tier: IsolationTier
    council: Party
    kind: Kind
    successor: Party | None  # whose tenancy takes the data; None while a split has no host
    served: tuple[Party, ...]  # a split's other successors, served by the host
    target_tenancy_id: str | None
    creates_target: bool
    readiness: Readiness
    reasons: tuple[str, ...]
    steps: tuple[Step, ...]
    # A hosted split's cost: the host's share and each served council's, adding up to 1.
    shares: tuple[tuple[Party, Fraction], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "tenancy_id": self.tenancy_id,
            "service": self.service_id,
            "isolation": self.tier.value,
            "council": self.council.as_json(),
            "kind": self.kind.value,
            "successor": self.successor.as_json() if self.successor else None,
            "served": [p.as_json() for p in self.served],
            "shares": [{**p.as_json(), "share": fraction_text(f)} for p, f in self.shares],
            "target_tenancy_id": self.target_tenancy_id,
            "creates_target": self.creates_target,
            "readiness": self.readiness.value,
            "reasons": list(self.reasons),
            "steps": [s.as_json() for s in self.steps],
        }


@dataclass(frozen=True)
class Plan:
    vesting: date
    changes: tuple[CouncilChange, ...]
    tenancies: tuple[TenancyPlan, ...]

    @property
    def readiness(self) -> Readiness:
        """The plan's as a whole: the worst of its tenancies'."""
        found = {t.readiness for t in self.tenancies}
        for worst in (Readiness.BLOCKED, Readiness.WAITING):
            if worst in found:
                return worst
        return Readiness.READY

    def as_json(self) -> dict[str, Any]:
        return {
            "vesting": self.vesting.isoformat(),
            "predecessors_close_at": vesting_instant(self.vesting).isoformat(),
            "readiness": self.readiness.value,
            "changes": [c.as_json() for c in self.changes],
            "tenancies": [t.as_json() for t in self.tenancies],
        }


def london_day(now: datetime) -> date:
    """The day it is in London at ``now``: vesting day starts at midnight there, which is 23:00
    UTC the day before in summer time."""
    return now.astimezone(LONDON).date()


def london_today() -> date:
    return london_day(datetime.now(UTC))


def vesting_instant(vesting: date) -> datetime:
    """Midnight at the start of vesting day in London, in UTC: where a predecessor's billing
    ends (the end of the day before) and the successor's continues."""
    return datetime(vesting.year, vesting.month, vesting.day, tzinfo=LONDON).astimezone(UTC)


def successor_tenancy_id(
    successor: Party, service_id: str, vesting: date, platform: str = ""
) -> str:
    name = f"{successor.register_code}/{service_id}/{vesting.isoformat()}"
    return str(uuid.uuid5(_SUCCESSOR_TENANCIES, f"{name}/{platform}" if platform else name))


# A split's hosts: predecessor register code -> host register code, or, for one service alone,
# "PREDECESSOR/SERVICE" -> host, which wins for that service. Flat, so the hosts stored with
# plans applied before per-service hosts existed ({"CMA": "CBD"}) read as they always did.
Hosts = Mapping[str, str]


def host_of(hosts: Hosts, predecessor: str, service_id: str) -> str | None:
    """The successor named to host ``service_id`` of the split ``predecessor``, if any."""
    return hosts.get(f"{predecessor}/{service_id}") or hosts.get(predecessor)


def parse_hosts(
    register: CouncilRegister,
    vesting: date,
    given: Sequence[str],
    *,
    services: Collection[str] | None = None,
    tenancies: Iterable[LiveTenancy] | None = None,
) -> dict[str, str]:
    """The operator's hosts for splits (see :data:`Hosts`).

    Each entry is ``PREDECESSOR=SUCCESSOR``, just ``SUCCESSOR`` (the host of every council
    split on ``vesting`` that it succeeds) or ``PREDECESSOR/SERVICE=SUCCESSOR`` (the host of
    that service alone, the service id as in the catalogue); council codes may be GSS or
    register codes. A per-service host is checked against ``services`` (the catalogue's ids)
    and ``tenancies`` (the live ones) when they are given.
    """
    splits = [r for r in register.replaced_on(vesting) if len(r.replaced_by) > 1]
    live = list(tenancies) if tenancies is not None else None
    hosts: dict[str, str] = {}
    for entry in given:
        named, _, chosen = entry.rpartition("=")
        named, slash, service = named.partition("/")
        service = service.strip()
        host = register.find(chosen)
        if host is None:
            raise PlanInputInvalid(f"host: {chosen!r} is not a council in the register")
        if slash and not named:
            raise PlanInputInvalid(
                f"host: {entry!r} names a service but no council: write"
                " PREDECESSOR/SERVICE=SUCCESSOR"
            )
        if named:
            predecessor = register.find(named)
            if predecessor is None:
                raise PlanInputInvalid(f"host: {named!r} is not a council in the register")
            if predecessor not in splits:
                raise PlanInputInvalid(
                    f"host: {predecessor.label} is not split on {vesting.isoformat()}; only a "
                    "council replaced by several successors has a host"
                )
            hosted = [predecessor]
        else:
            hosted = [r for r in splits if host.register_code in r.replaced_by]
        if slash:
            _check_service(entry, hosted[0], service, services, live)
        for predecessor in hosted:
            if host.register_code not in predecessor.replaced_by:
                successors = ", ".join(predecessor.replaced_by)
                raise PlanInputInvalid(
                    f"host: {host.label} does not succeed {predecessor.label}; its successors "
                    f"are {successors}"
                )
            key = f"{predecessor.register_code}/{service}" if slash else predecessor.register_code
            earlier = hosts.setdefault(key, host.register_code)
            if earlier != host.register_code:
                what = f"{service} of {predecessor.label}" if slash else predecessor.label
                raise PlanInputInvalid(
                    f"host: {what} is given two hosts, {earlier} and {host.register_code}; name one"
                )
        if not hosted:
            raise PlanInputInvalid(
                f"host: {host.label} succeeds no council split on {vesting.isoformat()}"
            )
    return hosts


def _check_service(
    entry: str,
    predecessor: CouncilRecord,
    service: str,
    services: Collection[str] | None,
    tenancies: Sequence[LiveTenancy] | None,
) -> None:
    if not service:
        raise PlanInputInvalid(f"host: {entry!r} names no service after the '/'")
    if services is not None and service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise PlanInputInvalid(
            f"host: {service!r} in {entry!r} is not a service in the catalogue (services: {known})"
        )
    if tenancies is not None and not any(
        t.council_gss == predecessor.gss and t.service_id == service for t in tenancies
    ):
        raise PlanInputInvalid(
            f"host: {predecessor.label} has no tenancy in {service}, so there is no host to name"
            f" for it; a per-service host is for a service the predecessor has joined"
        )


# A split's shares of its host's cost: predecessor's register code -> successor's -> share.
Shares = Mapping[str, Mapping[str, Fraction]]
_SHARE = re.compile(r"^(?:(\d{1,3}(?:\.\d{1,12})?)(%?)|(\d{1,9})/(\d{1,9}))$")
_SHARE_RULE = (
    "a share is from 0 to 1, written as a decimal (0.45), a percentage (45%) or a fraction (9/20)"
)


def parse_share(written: str) -> Fraction | None:
    """A share as an operator writes it, exactly, or None if it is not one from 0 to 1."""
    found = _SHARE.match(written.strip())
    if found is None:
        return None
    number, percent, top, bottom = found.groups()
    if number is not None:
        share = Fraction(Decimal(number)) / (100 if percent else 1)
    elif int(bottom) == 0:
        return None
    else:
        share = Fraction(int(top), int(bottom))
    return share if share <= 1 else None


def fraction_text(share: Fraction) -> str:
    """The exact form events and records carry: always numerator/denominator."""
    return f"{share.numerator}/{share.denominator}"


def share_text(share: Fraction) -> str:
    """For people: a percentage where one is exact (45%), otherwise the fraction (1/3)."""
    percent = Decimal(share.numerator * 100) / Decimal(share.denominator)
    return f"{percent.normalize():f}%" if Fraction(percent) == share * 100 else fraction_text(share)


def parse_shares(
    register: CouncilRegister, vesting: date, given: Sequence[str]
) -> dict[str, dict[str, Fraction]]:
    """The operator's shares of each split's cost under its agreement, as predecessor register
    code -> successor register code -> exact share.

    Each entry is ``SUCCESSOR=SHARE``, or ``PREDECESSOR/SUCCESSOR=SHARE`` for a successor of
    two councils split that day; either code may be a GSS or a register code. A split given any
    share must be given one for each of its successors, adding up to exactly 1: guessing the
    rest would put a figure in an agreement nobody wrote. A split given none shares equally.
    """
    day = vesting.isoformat()
    splits = [r for r in register.replaced_on(vesting) if len(r.replaced_by) > 1]
    shares: dict[str, dict[str, Fraction]] = {}
    for entry in given:
        named, equals, written = entry.partition("=")
        if not equals:
            raise PlanInputInvalid(f"share: {entry!r} is not SUCCESSOR=SHARE (e.g. CBD=0.45)")
        before, _, after = named.strip().rpartition("/")
        successor = register.find(after)
        if successor is None:
            raise PlanInputInvalid(f"share: {after!r} is not a council in the register")
        if before:
            predecessor = register.find(before)
            if predecessor is None:
                raise PlanInputInvalid(f"share: {before!r} is not a council in the register")
            if predecessor not in splits:
                raise PlanInputInvalid(
                    f"share: {predecessor.label} is not split on {day}; only a split's cost is"
                    " shared"
                )
            if successor.register_code not in predecessor.replaced_by:
                raise PlanInputInvalid(
                    f"share: {successor.label} does not succeed {predecessor.label}; its"
                    f" successors are {', '.join(predecessor.replaced_by)}"
                )
        else:
            succeeded = [r for r in splits if successor.register_code in r.replaced_by]
            if not succeeded:
                raise PlanInputInvalid(
                    f"share: {successor.label} succeeds no council split on {day}"
                )
            if len(succeeded) > 1:
                raise PlanInputInvalid(
                    f"share: {successor.label} succeeds {' and '.join(r.label for r in succeeded)}"
                    f" on {day}: write PREDECESSOR/{after}=SHARE"
                )
            predecessor = succeeded[0]
        share = parse_share(written)
        if share is None:
            raise PlanInputInvalid(f"share: {entry!r}: {_SHARE_RULE}")
        of_split = shares.setdefault(predecessor.register_code, {})
        if of_split.setdefault(successor.register_code, share) is not share:
            raise PlanInputInvalid(
                f"share: {successor.label} is given two shares of the cost of {predecessor.label};"
                " give one"
            )
    for code, of_split in shares.items():
        predecessor = register.find(code)
        assert predecessor is not None  # found above
        missing = [c for c in predecessor.replaced_by if c not in of_split]
        if missing:
            raise PlanInputInvalid(
                f"share: the cost of {predecessor.label} is shared by all its successors"
                f" ({', '.join(predecessor.replaced_by)}): give {', '.join(missing)} a share too"
            )
        total = sum(of_split.values(), Fraction(0))
        if total != 1:
            raise PlanInputInvalid(
                f"share: the shares of the cost of {predecessor.label} add up to"
                f" {share_text(total)}; they must add up to exactly 1 (100%)"
            )
    return shares


def plan(
    register: CouncilRegister,
    vesting: date,
    tenancies: Iterable[LiveTenancy],
    hosts: Hosts | None = None,
    shares: Shares | None = None,
) -> Plan:
    """What happens on ``vesting`` to each tenancy whose council the register replaces then.

    ``hosts`` names a split's hosting successor by register code, for all its services or one
    (see :func:`parse_hosts`),
    ``shares`` each successor's share of a split's cost (see :func:`parse_shares`; equal
    shares where none are given). Tenancies of councils not replaced on ``vesting`` are not in
    the plan, nor are tenancies already leaving their service.
    """
    hosts = hosts or {}
    shares = shares or {}
    replaced = {r.register_code: r for r in register.replaced_on(vesting)}
    problems = {code: _problems(register, r, vesting) for code, r in replaced.items()}
    tenancies = [t for t in tenancies if t.state not in _LEAVING]
    # The successor's own tenancy in each service, which a merge (or a host) moves data into;
    # a failed one is not it: the council may hold one live tenancy beside any failed ones.
    live = {(t.council_gss, t.service_id): t for t in tenancies if t.state != "failed"}
    planned = []
    for tenancy in tenancies:
        record = register.find(tenancy.council_gss)
        if record is None or record.register_code not in replaced:
            continue
        planned.append(
            _plan_tenancy(
                register,
                vesting,
                tenancy,
                record,
                hosts,
                shares.get(record.register_code, {}),
                problems[record.register_code],
                live,
            )
        )
    planned.sort(
        key=lambda t: (t.service_id, t.successor.name if t.successor else "", t.council.name)
    )
    return Plan(vesting, _changes(register, replaced.values(), hosts, problems), tuple(planned))


def _problems(register: CouncilRegister, record: CouncilRecord, vesting: date) -> tuple[str, ...]:
    """What in the register stops ``record``'s successors taking over on ``vesting``."""
    found = []
    known = {s.register_code for s in register.successors_of(record)}
    for code in record.replaced_by:
        if code not in known:
            found.append(f"successor {code}: not in the register (replaced-by of {record.label})")
    for successor in register.successors_of(record):
        if successor.end is not None and successor.end <= vesting:
            found.append(
                f"successor {successor.label} has itself ceased, on {successor.end.isoformat()}"
            )
        elif successor.start is not None and successor.start > vesting:
            found.append(
                f"successor {successor.label} starts on {successor.start.isoformat()}, after "
                f"vesting day {vesting.isoformat()}"
            )
    return tuple(found)


def _changes(
    register: CouncilRegister,
    replaced: Iterable[CouncilRecord],
    hosts: Hosts,
    problems: Mapping[str, tuple[str, ...]],
) -> tuple[CouncilChange, ...]:
    merges: dict[str, list[CouncilRecord]] = {}
    changes = []
    for record in replaced:
        successors = tuple(Party.of(s) for s in register.successors_of(record))
        if len(record.replaced_by) == 1:
            merges.setdefault(record.replaced_by[0], []).append(record)
            continue
        host = register.find(hosts[record.register_code]) if record.register_code in hosts else None
        by_service = []
        for key, code in sorted(hosts.items()):
            named, _, service = key.partition("/")
            found = register.find(code) if service and named == record.register_code else None
            if found is not None:
                by_service.append((service, Party.of(found)))
        changes.append(
            CouncilChange(
                Kind.SPLIT,
                (Party.of(record),),
                successors,
                Party.of(host) if host else None,
                problems[record.register_code],
                tuple(by_service),
            )
        )
    for group in merges.values():
        changes.append(
            CouncilChange(
                Kind.MERGE,
                tuple(Party.of(r) for r in group),
                tuple(Party.of(s) for s in register.successors_of(group[0])),
                None,
                # A successor's problem is each predecessor's: say it once.
                tuple(dict.fromkeys(p for r in group for p in problems[r.register_code])),
            )
        )
    changes.sort(key=lambda c: (c.kind, c.successors[0].name if c.successors else ""))
    return tuple(changes)


def _plan_tenancy(
    register: CouncilRegister,
    vesting: date,
    tenancy: LiveTenancy,
    record: CouncilRecord,
    hosts: Hosts,
    given_shares: Mapping[str, Fraction],
    problems: tuple[str, ...],
    live: Mapping[tuple[str, str], LiveTenancy],
) -> TenancyPlan:
    council = Party.of(record)
    successors = [Party.of(s) for s in register.successors_of(record)]
    kind = Kind.MERGE if len(record.replaced_by) == 1 else Kind.SPLIT
    blocked = list(problems)
    waiting = [
        f"successor {s.label} waits for its GSS code: ONS issues it before vesting and the "
        "register then lists it"
        for s in successors
        if s.gss is None
    ]
    if tenancy.state != "active":
        blocked.append(_not_active(tenancy))

    receiver: Party | None
    if kind is Kind.MERGE:
        receiver = successors[0] if successors else None
    else:
        chosen = host_of(hosts, record.register_code, tenancy.service_id)
        receiver = next((s for s in successors if s.register_code == chosen), None)
        if receiver is None:
            codes = ", ".join(record.replaced_by)
            blocked.append(
                f"split: the operator must name the successor that hosts {tenancy.service_id} "
                f"for the others (one of {codes})"
            )
    served = tuple(s for s in successors if kind is Kind.SPLIT and s != receiver)
    shares: tuple[tuple[Party, Fraction], ...] = ()
    if receiver is not None and served:
        parties = (receiver, *served)
        equal = Fraction(1, len(parties))
        shares = tuple((p, given_shares.get(p.register_code, equal)) for p in parties)

    target_id: str | None = None
    existing = live.get((receiver.gss, tenancy.service_id)) if receiver and receiver.gss else None
    if receiver is not None and existing is not None:
        target_id = existing.id
        if existing.state != "active":
            blocked.append(
                f"{receiver.name}'s tenancy {existing.id} in {tenancy.service_id} is "
                f"{existing.state}: it must be active to take the data"
            )
    elif receiver is not None:
        target_id = successor_tenancy_id(receiver, tenancy.service_id, vesting, tenancy.platform)

    readiness = Readiness.BLOCKED if blocked else Readiness.WAITING if waiting else Readiness.READY
    steps = (
        _steps(vesting, tenancy, council, receiver, shares, target_id, existing is None)
        if receiver is not None and target_id is not None
        else ()
    )
    return TenancyPlan(
        tenancy_id=tenancy.id,
        service_id=tenancy.service_id,
        tier=tenancy.tier,
        council=council,
        kind=kind,
        successor=receiver,
        served=served,
        target_tenancy_id=target_id,
        creates_target=existing is None and target_id is not None,
        readiness=readiness,
        reasons=tuple(blocked + waiting),
        steps=steps,
        shares=shares,
    )


def _not_active(tenancy: LiveTenancy) -> str:
    if tenancy.state == "failed":
        return f"tenancy {tenancy.id} is failed: retry it, or offboard it, before vesting"
    return f"tenancy {tenancy.id} is still {tenancy.state}: it must be active to be moved"


def _steps(
    vesting: date,
    tenancy: LiveTenancy,
    council: Party,
    receiver: Party,
    shares: tuple[tuple[Party, Fraction], ...],
    target_id: str,
    creates: bool,
) -> tuple[Step, ...]:
    service = tenancy.service_id
    served = tuple(p for p, _ in shares[1:])  # the host's share comes first
    source, target = tenant_object_name(tenancy.id), tenant_object_name(target_id)
    day_before = (vesting - timedelta(days=1)).isoformat()
    steps = []
    if creates:
        steps.append(
            Step(
                "onboarding",
                "create-successor-tenancy",
                f"creates {receiver.name}'s tenancy {target_id} in {service}, with the "
                "service's migrations, and records the successor's acceptance of its agreement",
            )
        )
    if served:
        others = " and ".join(p.label for p in served)
        steps.append(
            Step(
                "onboarding",
                "novate-hosting-agreement",
                f"records the inter-authority agreement, novated from {council.name}'s: "
                f"{receiver.label} hosts {service} for {others}, the cost shared among them"
                f" ({_shares_shown(shares)}); each successor's acceptance is recorded",
            )
        )
    else:
        steps.append(
            Step(
                "onboarding",
                "novate-agreement",
                f"{council.name}'s agreement for {service} passes to {receiver.label}, whose "
                "acceptance is recorded",
            )
        )
    steps.append(Step("isolation", *_isolation(tenancy.tier, source, target)))
    steps.append(
        Step(
            "branding",
            "publish-successor-theme" if creates else "keep-successor-theme",
            f"publishes a theme in {receiver.name}'s name until its admin sends its brand; "
            f"{council.name}'s theme is withdrawn"
            if creates
            else f"{receiver.name}'s published theme stays; {council.name}'s is withdrawn",
        )
    )
    steps.append(
        Step(
            "metering",
            "close-and-continue",
            f"closes {council.name}'s meters at the end of {day_before}, London time "
            f"({vesting_instant(vesting).isoformat()}), with a final invoice"
            f"{_part_period(tenancy.billing_period, vesting)}; usage from {vesting.isoformat()} "
            f"is counted on tenancy {target_id}"
            + (
                f", each invoice of it divided among the councils by their shares"
                f" ({_shares_shown(shares)})"
                if served
                else ""
            ),
        )
    )
    steps.append(
        Step(
            "audit",
            "record",
            f"records each step for tenancies {tenancy.id} and {target_id}, with row counts and "
            "checksums before and after",
        )
    )
    steps.append(
        Step(
            "onboarding",
            "close-predecessor",
            f"ends tenancy {tenancy.id} once its data are verified in {target_id}; until then "
            "it is left as it was",
        )
    )
    return tuple(steps)


def _shares_shown(shares: tuple[tuple[Party, Fraction], ...]) -> str:
    return ", ".join(f"{party.name} {share_text(share)}" for party, share in shares)


def _isolation(tier: IsolationTier, source: str, target: str) -> tuple[str, str]:
    checked = "row counts and checksums of every table compared before and after"
    if tier is IsolationTier.POOLED:
        return (
            "retag-pooled-rows",
            f"re-tags its rows in the service's shared tables from {source} to {target} "
            f"(nothing is copied), {checked}; then drops role {source}",
        )
    if tier is IsolationTier.SCHEMA:
        return (
            "copy-schema-rows",
            f"copies every table from schema {source} into schema {target} of the service's "
            f"database, keys kept apart as the manifest says, {checked}; then drops schema "
            f"and role {source}",
        )
    return (
        "copy-database-rows",
        f"copies every table from database {source} into database {target}, keys kept apart as "
        f"the manifest says, {checked}; then drops database and role {source}",
    )


def _part_period(kind: PeriodKind | None, vesting: date) -> str:
    if kind is None:
        return " (the service does not charge)"
    instant = vesting_instant(vesting)
    period = Period.containing(kind, instant)
    if period.start == instant:
        return ""
    return f" for the part of {period} before vesting"


def replaced_refusal(
    register: CouncilRegister, council: CouncilRecord, decided: str | None, today: date
) -> str | None:
    """Why ``council`` may not newly join a service, or None. ``decided`` is how the plan for
    the day it is replaced stands: ``"applied"``, ``"scheduled"`` or None (no plan yet).

    Once that plan is applied or scheduled, a new tenancy of the predecessor would be in no
    plan: nothing would move it, and it would be left behind when the council ceases. Its
    successors are the ones to join. Before that, a council still existing may join as ever,
    and it joins the plan."""
    if not council.replaced_by or council.end is None or decided is None:
        return None
    successors = register.successors_of(council)
    names = [s.name for s in successors] or list(council.replaced_by)
    day = council.end.isoformat()
    starts = min((s.start for s in successors if s.start), default=None)
    exists = "it exists" if len(names) == 1 else "they exist"
    when = f" (from {starts.isoformat()}, when {exists})" if starts and today < starts else ""
    return (
        f"council: {council.name} ({council.gss or council.register_code}) is replaced by"
        f" {' and '.join(names)} on {day} and the plan for that day is {decided}: onboard"
        f" {' or '.join(names)} instead{when}"
    )
