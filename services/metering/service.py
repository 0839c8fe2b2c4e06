"""Metering use cases: open meters, count usage exactly once, close periods into invoices."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.metering import invoicing, usage
from services.metering.periods import Period
from services.metering.pricing import Line, share_cost, to_pence
from services.metering.repository import (
    BilledTenancy,
    Billing,
    Meters,
    Reach,
    UsageLedger,
    counted_months,
    lock_services,
    lock_services_of,
    move_usage,
    usage_of,
)
from services.metering.tally import Tally
from services.metering.usage import Record, Rejection, TenancyMeters, Usage
from shared import audit
from shared.catalogue import PeriodKind, Pricing, ServiceManifest
from shared.db import Connection
from shared.events import (
    CostShare,
    Council,
    InvoiceIssued,
    InvoiceIssuedData,
    InvoiceLine,
    MeteringEnabled,
    MeteringEnabledData,
    TenancyReorganisedData,
)
from shared.outbox import Transaction

SOURCE = "tenancy/metering"


class CloseRefused(ValueError):
    """A close request that cannot be carried out; the message says why."""


def period_kind(service: ServiceManifest) -> PeriodKind:
    return service.pricing.period if service.pricing else PeriodKind.MONTH


async def open_meters(
    tx: Transaction,
    tenancy_id: str,
    service: ServiceManifest,
    council: Council,
    purchase_order: str | None,
) -> None:
    meters = Meters(tx.conn)
    await meters.open(
        tenancy_id, service.id, service.meters, council, period_kind(service), purchase_order
    )
    await meters.remember_plan(service)
    data = MeteringEnabledData(meters=[m.key for m in service.meters])
    tx.emit(MeteringEnabled.new(source=SOURCE, subject=tenancy_id, data=data))


@dataclass
class Counted:
    counted: int
    duplicates: int
    rejected: list[tuple[int, Rejection]]  # index in the batch, why


# A batch is read a slice at a time (letting the counting of the batch before go on between
# slices), then counted by a statement per CHUNK events, all in one transaction.
CHUNK = 2500
READ_SLICE = 200


async def read(records: Sequence[Record]) -> list[Usage | Rejection]:
    """Parse a batch a slice at a time, letting other tasks run between slices (the counting of
    the batch before, whose statements then go on while this one is read)."""
    found: list[Usage | Rejection] = []
    for start in range(0, len(records), READ_SLICE):
        found += usage.parse_batch(records[start : start + READ_SLICE])
        await asyncio.sleep(0)
    return found


async def count(
    conn: Connection,
    records: Sequence[Record],
    chunk: int = CHUNK,
    *,
    parsed: Sequence[Usage | Rejection] | None = None,
) -> Counted:
    """Count a batch of usage events in the caller's transaction. Each event is recorded as seen
    with its quantity, so a repeat of the batch counts nothing twice. A few statements whatever
    the batch's size: the services' locks and the tenancies' meters, one per CHUNK events that
    records them, and one that adds them up. ``parsed`` is the batch as :func:`read` gave it,
    if it was read already."""
    if parsed is None:
        parsed = await read(records)
    batch = _Batch(conn)
    subjects = batch.unseen(parsed)
    if subjects:
        await batch.look_up(subjects)
    ready = batch.check(0, parsed)
    for start in range(0, len(ready), chunk):
        await batch.record(ready[start : start + chunk])
    await batch.add_up()
    return Counted(batch.new, batch.duplicates, sorted(batch.rejected, key=lambda r: r[0]))


class _Batch:
    """What counting a batch knows as it goes: the tenancies it has read, the first event of
    each (source, id) in it, what its new events add up to, and the outcome so far."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ledger = UsageLedger(conn)
        self.tenancies: dict[str, TenancyMeters | None] = {}
        self.first: dict[tuple[str, str], Usage] = {}
        self.tally = Tally()
        self.rejected: list[tuple[int, Rejection]] = []
        self.duplicates = 0
        self.new = 0

    def unseen(self, read: Sequence[Usage | Rejection]) -> list[str]:
        """The tenancies of these events not yet looked up."""
        return sorted(
            {u.subject for u in read if isinstance(u, Usage) and u.subject not in self.tenancies}
        )

    async def look_up(self, subjects: list[str]) -> None:
        # The locks first, then the tenancies, read after them: a tenancy that left while this
        # waited for its service is seen closed. Held to the commit, the locks keep what was
        # read true for the rest of the batch.
        await lock_services_of(self.conn, subjects)
        meters = Meters(self.conn)
        found = await meters.of_tenancies(subjects)
        self.tenancies.update({subject: found.get(subject) for subject in subjects})
        # A reorganised predecessor's successor, in the same service (so under the same lock):
        # usage sent under the old id from vesting on counts for it.
        successors = sorted(
            {t.successor for t in found.values() if t.successor} - set(self.tenancies)
        )
        if successors:
            more = await meters.of_tenancies(successors)
            self.tenancies.update({s: more.get(s) for s in successors})

    def check(self, start: int, read: Sequence[Usage | Rejection]) -> list[tuple[int, Usage]]:
        """The events of one chunk that may be counted, each the first of its (source, id) in
        the batch."""
        accepted: list[tuple[int, Usage]] = []
        for index, item in enumerate(read, start):
            if isinstance(item, Rejection):
                self.rejected.append((index, item))
                continue
            tenancy = self.tenancies[item.subject]
            if tenancy is not None and tenancy.successor is not None:
                successor = usage.counts_for(item, tenancy)
                if successor is not None:  # counted, and its reach marked, as the successor's
                    item.subject = successor
                    tenancy = self.tenancies[successor]
            problem = usage.check(item, tenancy)
            if problem is not None:
                self.rejected.append((index, problem))
                continue
            earlier = self.first.setdefault(item.key, item)
            if earlier is not item:  # a repeat inside this batch
                if earlier.digest != item.digest:
                    self.rejected.append((index, conflicting(item)))
                else:
                    self.duplicates += 1
                continue
            accepted.append((index, item))
        return accepted

    async def record(self, accepted: list[tuple[int, Usage]]) -> None:
        repeats = await self.ledger.count([u for _, u in accepted])
        for position, digest in repeats:
            index, item = accepted[position]
            if digest == item.digest:
                self.duplicates += 1
            else:
                self.rejected.append((index, conflicting(item)))
        repeated = {position for position, _ in repeats}
        for position, (_, item) in enumerate(accepted):
            if position not in repeated:
                self.tally.add(item)
        self.new += len(accepted) - len(repeats)

    async def add_up(self) -> None:
        """Add the batch's new events to the ledger's totals, once for all its chunks."""
        if self.tally.sums:
            reaches = [self._reach(where) for where in sorted(self.tally.months())]
            await self.ledger.add(self.tally, reaches)

    def _reach(self, where: tuple[str, str]) -> Reach:
        subject, month = where
        tenancy = self.tenancies[subject]
        assert tenancy is not None  # its events were accepted
        period = Period.parse(month).of_month(tenancy.period_kind)
        return Reach(subject, month, tenancy.service_id, str(period))


def conflicting(item: Usage) -> Rejection:
    return Rejection(
        "conflicting_duplicate",
        f"id: {item.id!r} from {item.source!r} was counted before with a different"
        " payload; an event id names one event",
    )


def parse_period(service: ServiceManifest, text: str) -> Period:
    try:
        period = Period.parse(text)
    except ValueError as error:
        raise CloseRefused(str(error)) from error
    if period.kind is not period_kind(service):
        raise CloseRefused(
            f"period: {service.id} is billed by {period_kind(service).value.replace('_', ' ')},"
            f" so {text!r} is not one of its periods"
        )
    return period


async def close_period(tx: Transaction, service: ServiceManifest, text: str) -> int:
    """Freeze a period, price every tenancy's usage and emit one invoice each; returns how
    many invoices were issued (none when the period was already closed)."""
    period = parse_period(service, text)
    billing = Billing(tx.conn)
    await lock_services(tx.conn, [service.id], exclusive=True)
    if not await billing.close(service.id, str(period)):
        return 0
    if service.pricing is None:
        return 0
    months = [str(m) for m in period.months()]
    tenancies = await billing.to_invoice(service.id, str(period), months, period.start, period.end)
    usages = {t.tenancy_id: await usage_of(tx.conn, t.tenancy_id, months) for t in tenancies}
    shares = cost_shares(service.pricing, usages, {t.tenancy_id: t.council.gss for t in tenancies})
    for tenancy in tenancies:
        final = tenancy.final_in(period.start, period.end)
        await issue(tx, service, tenancy, period, usages[tenancy.tenancy_id], shares, final=final)
        if final:
            await _final_recorded(tx, tenancy.tenancy_id, period)
    return len(tenancies)


def cost_shares(
    pricing: Pricing, usages: dict[str, dict[str, Decimal]], gss: dict[str, str]
) -> dict[str, Line]:
    """Each tenancy's share of a joint service's running cost; a leftover penny that two
    councils could equally claim goes to the lower GSS code."""
    if pricing.cost_share is None or not usages:
        return {}
    meter = pricing.cost_share.meter
    by_council = {f"{gss[t]}:{t}": t for t in usages}
    used = {key: usages[t].get(meter, Decimal(0)) for key, t in by_council.items()}
    shares = share_cost(to_pence(pricing.cost_share.running_cost), used)
    return {
        by_council[key]: invoicing.cost_share_line(pricing, pence, used[key])
        for key, pence in shares.items()
    }


async def final_invoice(tx: Transaction, service: ServiceManifest, tenancy_id: str) -> None:
    """A council leaves: its meters close and the period so far is invoiced, with any late
    usage of earlier periods. It has no share of a joint service's cost for this period."""
    await lock_services(tx.conn, [service.id], exclusive=True)
    billing = Billing(tx.conn)
    tenancy = await billing.tenancy(tenancy_id)
    if tenancy is None or tenancy.closed:
        return  # unknown, or a repeated request: the final invoice went out the first time
    await Meters(tx.conn).close(tenancy_id)
    if service.pricing is not None:
        await _issue_final(tx, service, tenancy, datetime.now(UTC))


async def _issue_final(
    tx: Transaction, service: ServiceManifest, tenancy: BilledTenancy, during: datetime
) -> Period:
    """The final invoice for the period that holds ``during`` or, if that period was closed
    already, for the first one after it that is not, with what remains (late usage). Returns
    the period invoiced."""
    assert service.pricing is not None
    billing = Billing(tx.conn)
    period = Period.containing(tenancy.period_kind, during)
    months = [str(m) for m in period.months()]
    while await billing.is_closed(service.id, str(period)):
        period = period.next()  # unusual: closed early; what remains is billed as late usage
        months = []
        if tenancy.reorganised_into is not None:
            tenancy = dataclasses.replace(tenancy, open_during=False)  # it ended before
    used = await usage_of(tx.conn, tenancy.tenancy_id, months) if months else {}
    await issue(tx, service, tenancy, period, used, {}, final=True)
    return period


async def close_for_reorganisation(
    tx: Transaction, predecessor: str, reorganised: TenancyReorganisedData
) -> None:
    """A predecessor's tenancy was reorganised into ``reorganised.target``: its meters close at
    ``closes_at`` and its usage from then on counts for the target (see
    :func:`services.metering.usage.counts_for`).

    Its final invoice is for the period that ends at ``closes_at``, issued when that period
    closes, with every other council's (so a joint service's cost is shared over the whole
    period, and usage still arriving counts), or at once if it closed already. A split's host
    records the councils it serves, sharing its costs. Repeated, it changes nothing."""
    await lock_services(tx.conn, [reorganised.service_id], exclusive=True)
    billing = Billing(tx.conn)
    tenancy = await billing.tenancy(predecessor)
    if tenancy is None or tenancy.closed:
        return  # not metered, or a repeated event: done the first time
    meters = Meters(tx.conn)
    await meters.close_into(predecessor, reorganised.closes_at, reorganised.target)
    await _move_counted_since(tx, tenancy, reorganised)
    if reorganised.served:
        await meters.share_with(reorganised.target, reorganised.served)
    if reorganised.shares:
        await meters.share_costs(reorganised.target, reorganised.shares, reorganised.closes_at)
    tenancy = dataclasses.replace(
        tenancy, closes_at=reorganised.closes_at, reorganised_into=reorganised.target
    )
    service = await meters.plan(reorganised.service_id)
    last_instant = reorganised.closes_at - _INSTANT  # the last of the predecessor's billing
    last = Period.containing(tenancy.period_kind, last_instant)
    if service is None or service.pricing is None:
        final = "none: the service charges nothing"
    elif await billing.is_closed(service.id, str(last)):
        final = f"issued for {await _issue_final(tx, service, tenancy, last_instant)}"
    else:
        final = f"with the close of {last}"
    await _record(
        tx,
        "billing.reorganisation.closed",
        predecessor,
        closes_at=reorganised.closes_at.isoformat(),
        target=reorganised.target,
        successor=reorganised.successor,
        final_invoice=final,
        shared_with=",".join(reorganised.served),
        shares=shares_text(reorganised.shares),
    )


def shares_text(shares: Sequence[CostShare]) -> str:
    """An agreement's shares for the audit trail: ``E06000063=9/20,E06000064=11/20``."""
    return ",".join(f"{s.council.gss}={s.share}" for s in shares)


_INSTANT = timedelta(microseconds=1)


async def _move_counted_since(
    tx: Transaction, tenancy: BilledTenancy, reorganised: TenancyReorganisedData
) -> None:
    """Usage counted under the predecessor's id for time from the close on, before this was
    known (a plan applied after vesting day), is the successor's too: moved, month by month,
    while its period is open. A billed period's stays as billed; a month the close falls
    inside (a vesting day other than the 1st) stays the predecessor's."""
    first = Period.containing(PeriodKind.MONTH, reorganised.closes_at)
    if first.start < reorganised.closes_at:
        first = first.next()
    billing = Billing(tx.conn)
    months = [
        month
        for month in await counted_months(tx.conn, tenancy.tenancy_id, str(first))
        if not await billing.is_closed(
            reorganised.service_id, str(Period.parse(month).of_month(tenancy.period_kind))
        )
    ]
    if months:
        await move_usage(tx.conn, tenancy.tenancy_id, reorganised.target, months)


async def _final_recorded(tx: Transaction, tenancy_id: str, period: Period) -> None:
    await _record(tx, "billing.final_invoice", tenancy_id, period=str(period))


async def _record(tx: Transaction, action: str, tenancy_id: str, **detail: str) -> None:
    await audit.append(
        tx.conn, actor="worker:metering", action=action, tenancy_id=tenancy_id, detail=detail
    )


async def issue(
    tx: Transaction,
    service: ServiceManifest,
    tenancy: BilledTenancy,
    period: Period,
    used: dict[str, Decimal],
    shares: dict[str, Line],
    *,
    final: bool,
) -> None:
    assert service.pricing is not None
    billing = Billing(tx.conn)
    pricing = service.pricing
    late: list[Line] = []
    for earlier in await billing.late_periods(tenancy.tenancy_id):
        earlier_period = Period.parse(earlier)
        months = [str(m) for m in earlier_period.months()]
        now_used = await usage_of(tx.conn, tenancy.tenancy_id, months)
        lines, billed = invoicing.adjustments(
            pricing, earlier, now_used, await billing.billed(tenancy.tenancy_id, earlier)
        )
        late += lines
        for meter, (quantity, amount) in billed.items():
            await billing.set_billed(tenancy.tenancy_id, earlier, meter, quantity, amount)
    units = {m.key: m.unit for m in service.meters}
    share = shares.get(tenancy.tenancy_id)
    lines = invoicing.invoice_lines(pricing, used, units, share, late, flat_fee=tenancy.open_during)
    for meter, (quantity, amount) in invoicing.billed_usage(pricing, lines).items():
        await billing.set_billed(tenancy.tenancy_id, str(period), meter, quantity, amount)
    invoice_id = uuid.uuid5(uuid.NAMESPACE_URL, f"invoice:{tenancy.tenancy_id}:{period}")
    invoice_lines = [
        InvoiceLine(
            kind=line.kind,
            description=line.description,
            meter=line.meter,
            quantity=line.quantity,
            amount_pence=line.amount_pence,
        )
        for line in lines
    ]
    total = sum(line.amount_pence for line in lines)
    parties = invoicing.parties(total, tenancy.shares_in(period.end))
    await billing.add_invoice(
        invoice_id,
        tenancy,
        service.id,
        str(period),
        [line.model_dump(mode="json") for line in invoice_lines],
        total,
        final,
        [party.model_dump(mode="json") for party in parties],
    )
    data = InvoiceIssuedData(
        invoice_id=invoice_id,
        service_id=service.id,
        period=str(period),
        council=tenancy.council,
        purchase_order=tenancy.purchase_order,
        lines=invoice_lines,
        total_pence=total,
        final=final,
        parties=parties,
    )
    tx.emit(InvoiceIssued.new(source=SOURCE, subject=tenancy.tenancy_id, data=data))
