"""Metering use cases: open meters, count usage exactly once, close periods into invoices."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from services.metering import invoicing, usage
from services.metering.periods import Period
from services.metering.pricing import Line, share_cost, to_pence
from services.metering.repository import (
    BilledTenancy,
    Billing,
    Meters,
    UsageLedger,
    lock_services,
    usage_of,
)
from services.metering.usage import Record, Rejection, Usage
from shared.catalogue import PeriodKind, Pricing, ServiceManifest
from shared.db import Connection
from shared.events import (
    Council,
    InvoiceIssued,
    InvoiceIssuedData,
    InvoiceLine,
    MeteringEnabled,
    MeteringEnabledData,
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


async def count(conn: Connection, records: Sequence[Record]) -> Counted:
    """Count a batch of usage events in the caller's transaction. Each event is recorded as seen
    with its quantity, so a repeat of the batch counts nothing twice."""
    rejected: list[tuple[int, Rejection]] = []
    parsed: list[tuple[int, Usage]] = []
    for index, record in enumerate(records):
        result = usage.parse(record.value, record.headers)
        if isinstance(result, Rejection):
            rejected.append((index, result))
        else:
            parsed.append((index, result))
    tenancies = await Meters(conn).of_tenancies(sorted({str(u.event.subject) for _, u in parsed}))
    await lock_services(conn, [t.service_id for t in tenancies.values()], exclusive=False)
    accepted: list[tuple[int, Usage]] = []
    first: dict[tuple[str, str], Usage] = {}
    duplicates = 0
    for index, item in parsed:
        problem = usage.check(item, tenancies.get(str(item.event.subject)))
        if problem is not None:
            rejected.append((index, problem))
        elif item.key in first:  # a repeat inside this batch
            if first[item.key].digest != item.digest:
                rejected.append((index, conflicting(item)))
            else:
                duplicates += 1
        else:
            first[item.key] = item
            accepted.append((index, item))
    ledger = UsageLedger(conn)
    new, conflicts = await ledger.record([u for _, u in accepted]) if accepted else ([], [])
    conflict_keys = {u.key for u in conflicts}
    for index, item in accepted:
        if item.key in conflict_keys:
            rejected.append((index, conflicting(item)))
    duplicates += len(accepted) - len(new) - len(conflicts)
    if new:
        await ledger.add(usage.aggregate(new))
        late: set[tuple[str, str, str]] = set()
        for item in new:
            tenancy = tenancies[str(item.event.subject)]
            late.add(
                (str(item.event.subject), tenancy.service_id, item.period(tenancy.period_kind))
            )
        await ledger.mark_late(sorted(late))
    return Counted(len(new), duplicates, sorted(rejected, key=lambda r: r[0]))


def conflicting(item: Usage) -> Rejection:
    return Rejection(
        "conflicting_duplicate",
        f"id: {item.event.id!r} from {item.event.source!r} was counted before with a different"
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
        await issue(tx, service, tenancy, period, usages[tenancy.tenancy_id], shares, final=False)
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
    if service.pricing is None:
        return
    period = Period.containing(tenancy.period_kind, datetime.now(UTC))
    months = [str(m) for m in period.months()]
    if await billing.is_closed(service.id, str(period)):
        period = period.next()  # unusual: closed early; what remains is billed as late usage
        months = []
    used = await usage_of(tx.conn, tenancy_id, months) if months else {}
    await issue(tx, service, tenancy, period, used, {}, final=True)


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
    await billing.add_invoice(
        invoice_id,
        tenancy,
        service.id,
        str(period),
        [line.model_dump(mode="json") for line in invoice_lines],
        total,
        final,
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
    )
    tx.emit(InvoiceIssued.new(source=SOURCE, subject=tenancy.tenancy_id, data=data))
