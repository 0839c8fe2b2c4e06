"""The metering worker's tables. Every query is scoped by tenancy or service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from services.metering.tally import Tally
from services.metering.usage import TenancyMeters, Usage, value_of
from shared.catalogue import Aggregation, Meter, PeriodKind, ServiceManifest
from shared.db import Connection
from shared.events import CostShare, Council


async def lock_services_of(conn: Connection, tenancy_ids: Sequence[str]) -> None:
    """The shared lock of every service these tenancies belong to, as counting takes it: one
    statement, in the same order as :func:`lock_services`."""
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock_shared(hashtext('metering:' || s.service_id)))"
        ' FROM (SELECT DISTINCT service_id COLLATE "C" AS service_id FROM metering.tenancies'
        '   WHERE tenancy_id = ANY($1::uuid[]) ORDER BY service_id COLLATE "C" OFFSET 0) s',
        tenancy_ids,
    )


async def lock_services(conn: Connection, service_ids: list[str], *, exclusive: bool) -> None:
    """Closing a period takes its service's lock alone; counting usage shares it. So usage
    either lands before the close reads the totals, or sees the period closed and is billed
    later as an adjustment: never neither."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    for service_id in sorted(set(service_ids)):  # one order everywhere: no deadlocks
        await conn.execute(f"SELECT {function}(hashtext('metering:' || $1))", service_id)


class Meters:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def open(
        self,
        tenancy_id: str,
        service_id: str,
        meters: list[Meter],
        council: Council,
        period_kind: PeriodKind,
        purchase_order: str | None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO metering.tenancies (tenancy_id, service_id, council_gss, council_name,"
            " council_nation, purchase_order, period_kind) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (tenancy_id) DO NOTHING",
            tenancy_id,
            service_id,
            council.gss,
            council.name,
            council.nation,
            purchase_order,
            period_kind.value,
        )
        await self.conn.executemany(
            "INSERT INTO metering.meters (tenancy_id, service_id, meter_key, aggregation, unit)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenancy_id, meter_key) DO NOTHING",
            [(tenancy_id, service_id, m.key, m.aggregation.value, m.unit) for m in meters],
        )

    async def remember_plan(self, service: ServiceManifest) -> None:
        await self.conn.execute(
            "INSERT INTO metering.plans (service_id, manifest) VALUES ($1, $2)"
            " ON CONFLICT (service_id) DO UPDATE SET manifest = EXCLUDED.manifest,"
            " updated_at = now()",
            service.id,
            service.model_dump(mode="json"),
        )

    async def close(self, tenancy_id: str) -> None:
        await self.conn.execute(
            "UPDATE metering.tenancies SET closed_at = coalesce(closed_at, now())"
            " WHERE tenancy_id = $1",
            tenancy_id,
        )
        await self.conn.execute(
            "UPDATE metering.meters SET closed_at = coalesce(closed_at, now())"
            " WHERE tenancy_id = $1",
            tenancy_id,
        )

    async def close_into(self, tenancy_id: str, closes_at: datetime, successor: str) -> None:
        """A reorganised predecessor's meters close at ``closes_at``, which may be days ahead:
        until then its usage counts for it, from then on for ``successor``."""
        await self.conn.execute(
            "UPDATE metering.tenancies SET closed_at = $2, reorganised_into = $3"
            " WHERE tenancy_id = $1",
            tenancy_id,
            closes_at,
            successor,
        )
        await self.conn.execute(
            "UPDATE metering.meters SET closed_at = $2 WHERE tenancy_id = $1", tenancy_id, closes_at
        )

    async def share_with(self, tenancy_id: str, councils: Sequence[str]) -> None:
        """Record on a split's host the councils it serves, sharing its costs."""
        await self.conn.execute(
            "UPDATE metering.tenancies SET shared_with = ARRAY(SELECT DISTINCT c FROM"
            " unnest(shared_with || $2::text[]) AS c ORDER BY c) WHERE tenancy_id = $1",
            tenancy_id,
            list(councils),
        )

    async def share_costs(
        self, tenancy_id: str, shares: Sequence[CostShare], shared_from: datetime
    ) -> None:
        """Record on a split's host each council's share of its invoices from ``shared_from``
        on. The latest agreement recorded is the one its invoices follow."""
        await self.conn.execute(
            "UPDATE metering.tenancies SET cost_shares = $2, shared_from = $3"
            " WHERE tenancy_id = $1",
            tenancy_id,
            [s.model_dump(mode="json") for s in shares],
            shared_from,
        )

    async def plan(self, service_id: str) -> ServiceManifest | None:
        """The service's manifest as its latest tenancy registered it."""
        raw = await self.conn.fetchval(
            "SELECT manifest FROM metering.plans WHERE service_id = $1", service_id
        )
        return ServiceManifest.model_validate(raw) if raw is not None else None

    async def of_tenancies(self, tenancy_ids: list[str]) -> dict[str, TenancyMeters]:
        rows = await self.conn.fetch(
            "SELECT t.tenancy_id::text, t.service_id, t.period_kind,"
            " t.closed_at IS NOT NULL AND t.reorganised_into IS NULL AS closed,"
            " CASE WHEN t.reorganised_into IS NOT NULL THEN t.closed_at END AS closes_at,"
            " t.reorganised_into::text AS successor, m.meter_key, m.aggregation"
            " FROM metering.tenancies t LEFT JOIN metering.meters m USING (tenancy_id)"
            " WHERE t.tenancy_id = ANY($1::uuid[])",
            tenancy_ids,
        )
        found: dict[str, TenancyMeters] = {}
        for row in rows:
            tenancy = found.get(row["tenancy_id"])
            if tenancy is None:
                tenancy = found[row["tenancy_id"]] = TenancyMeters(
                    row["service_id"],
                    PeriodKind(row["period_kind"]),
                    row["closed"],
                    {},
                    row["closes_at"],
                    row["successor"],
                )
            if row["meter_key"] is not None:
                tenancy.meters[row["meter_key"]] = Aggregation(row["aggregation"])
        return found


# One statement per chunk of a batch: the events it names, each looked up by its (source, id)
# and recorded as seen unless it was before; and the repeats returned, with the digest each was
# first counted with. The look-up and the insert read the table as it was when the statement
# began, so an event another transaction counts meanwhile is not skipped: its insert fails
# (unique_violation) and the whole transaction with it, to be counted again (see handlers).
# A plain insert behind one look-up, not ON CONFLICT: that costs half as much again per event.
_RECORD = """
WITH batch AS (
    SELECT e->>0 AS source, e->>1 AS id, e->>2 AS digest, (e->>3)::uuid AS tenancy_id,
        e->>4 AS meter_key, e->>5 AS month, (e->>6)::numeric AS quantity, e->>7 AS value, ord
    FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS b(e, ord)
), known AS MATERIALIZED (
    SELECT b.*, (SELECT e.payload_sha256 FROM metering.usage_events e
        WHERE e.source = b.source AND e.id = b.id) AS earlier
    FROM batch b
), added AS (
    INSERT INTO metering.usage_events
        (source, id, payload_sha256, tenancy_id, meter_key, month, quantity, value)
    SELECT source, id, digest, tenancy_id, meter_key, month, quantity, value
    FROM known WHERE earlier IS NULL
)
SELECT ord, earlier FROM known WHERE earlier IS NOT NULL
"""

# One statement per batch, after its chunks: what its new events add to each (tenancy, meter,
# month), the values added for the unique counts, and the billed periods they reach marked for
# an adjustment. Rows are written in key order, so two transactions sharing them never wait for
# each other in a cycle.
_ADD = """
WITH sums AS (
    SELECT (e->>0)::uuid AS tenancy_id, e->>1 AS meter_key, e->>2 AS month,
        (e->>3)::bigint AS events, (e->>4)::numeric AS total, (e->>5)::numeric AS peak
    FROM jsonb_array_elements($1::text::jsonb) AS s(e)
), totals AS (
    INSERT INTO metering.usage_totals AS t (tenancy_id, meter_key, month, events, total, peak)
    SELECT * FROM sums ORDER BY tenancy_id, meter_key, month
    ON CONFLICT (tenancy_id, meter_key, month) DO UPDATE SET
        events = t.events + EXCLUDED.events, total = t.total + EXCLUDED.total,
        peak = GREATEST(t.peak, EXCLUDED.peak)
), uniques AS (
    INSERT INTO metering.unique_values (tenancy_id, meter_key, month, value)
    SELECT (e->>0)::uuid, e->>1, e->>2, e->>3 FROM jsonb_array_elements($2::text::jsonb) AS v(e)
    ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING
)
INSERT INTO metering.late_usage (tenancy_id, period)
SELECT DISTINCT c.tenancy_id, c.period
FROM unnest($3::uuid[], $4::text[], $5::text[]) AS c(tenancy_id, service_id, period)
WHERE EXISTS (SELECT 1 FROM metering.closed_periods p
        WHERE p.service_id = c.service_id AND p.period = c.period)
    OR EXISTS (SELECT 1 FROM metering.invoices i
        WHERE i.tenancy_id = c.tenancy_id AND i.period = c.period)
ON CONFLICT DO NOTHING
"""


_ROWS = msgspec.json.Encoder()  # a Decimal as its digits, in a string


@dataclass(frozen=True)
class Reach:
    """A (tenancy, month) that a batch's usage falls in, with the tenancy's service and the
    billing period that month belongs to: if that period was billed, new usage in it is late."""

    tenancy_id: str
    month: str
    service_id: str
    period: str


class UsageLedger:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def count(self, batch: Sequence[Usage]) -> list[tuple[int, str]]:
        """Record the events of ``batch``, which holds each (source, id) once, as seen; returns
        the repeats, each its index in ``batch`` and the digest it was counted with before."""
        # One parameter, the batch as JSON rows, rather than an array per column: asyncpg
        # checks every element of an array it encodes, which cost more than the counting.
        rows = await self.conn.fetch(
            _RECORD,
            _ROWS.encode(
                [
                    (u.source, u.id, u.digest, u.subject, u.meter, u.month, u.quantity, u.value)
                    for u in batch
                ]
            ).decode(),
        )
        return [(row["ord"] - 1, row["earlier"]) for row in rows]

    async def add(self, tally: Tally, reaches: Sequence[Reach]) -> None:
        """Add what a batch's new events counted, and mark the billed periods they reach."""
        await self.conn.execute(
            _ADD,
            _ROWS.encode(
                [(*where, s.events, s.total, s.peak) for where, s in tally.sums.items()]
            ).decode(),
            _ROWS.encode(list(tally.values)).decode(),
            [r.tenancy_id for r in reaches],
            [r.service_id for r in reaches],
            [r.period for r in reaches],
        )


async def counted_months(conn: Connection, tenancy_id: str, since: str) -> list[str]:
    """The calendar months from ``since`` on in which the tenancy has usage counted."""
    rows = await conn.fetch(
        "SELECT DISTINCT month FROM metering.usage_totals WHERE tenancy_id = $1 AND month >= $2"
        " ORDER BY month",
        tenancy_id,
        since,
    )
    return [row["month"] for row in rows]


async def move_usage(conn: Connection, source: str, target: str, months: list[str]) -> None:
    """Count what ``source`` counted in ``months`` for ``target`` instead, added to what it
    has (both tenancies are of one service, so they have the same meters)."""
    await conn.execute(
        "WITH moved AS (DELETE FROM metering.usage_totals WHERE tenancy_id = $1"
        "   AND month = ANY($3::text[]) RETURNING *)"
        " INSERT INTO metering.usage_totals AS t"
        " (tenancy_id, meter_key, month, events, total, peak)"
        " SELECT $2::uuid, meter_key, month, events, total, peak FROM moved"
        " ORDER BY meter_key, month"
        " ON CONFLICT (tenancy_id, meter_key, month) DO UPDATE SET"
        " events = t.events + EXCLUDED.events, total = t.total + EXCLUDED.total,"
        " peak = GREATEST(t.peak, EXCLUDED.peak)",
        source,
        target,
        months,
    )
    await conn.execute(
        "WITH moved AS (DELETE FROM metering.unique_values WHERE tenancy_id = $1"
        "   AND month = ANY($3::text[]) RETURNING *)"
        " INSERT INTO metering.unique_values (tenancy_id, meter_key, month, value)"
        " SELECT $2::uuid, meter_key, month, value FROM moved ORDER BY 2, 3, 4"
        " ON CONFLICT DO NOTHING",
        source,
        target,
        months,
    )
    # Unindexed by tenancy (counting inserts into it, and an index would slow that): a scan, for
    # a plan applied after vesting day only.
    await conn.execute(
        "UPDATE metering.usage_events SET tenancy_id = $2 WHERE tenancy_id = $1"
        " AND month = ANY($3::text[])",
        source,
        target,
        months,
    )


async def usage_of(conn: Connection, tenancy_id: str, months: list[str]) -> dict[str, Decimal]:
    """Each of the tenancy's meters and its value over the given months."""
    rows = await conn.fetch(
        "SELECT m.meter_key, m.aggregation, coalesce(sum(t.total), 0) AS total,"
        " max(t.peak) AS peak, (SELECT count(DISTINCT u.value) FROM metering.unique_values u"
        "   WHERE u.tenancy_id = m.tenancy_id AND u.meter_key = m.meter_key"
        "   AND u.month = ANY($2::text[])) AS uniques"
        " FROM metering.meters m LEFT JOIN metering.usage_totals t"
        "   ON t.tenancy_id = m.tenancy_id AND t.meter_key = m.meter_key"
        "   AND t.month = ANY($2::text[])"
        " WHERE m.tenancy_id = $1 GROUP BY m.tenancy_id, m.meter_key, m.aggregation"
        " ORDER BY m.meter_key",
        tenancy_id,
        months,
    )
    return {
        row["meter_key"]: value_of(
            Aggregation(row["aggregation"]), row["total"], row["peak"], row["uniques"]
        )
        for row in rows
    }


@dataclass(frozen=True)
class BilledTenancy:
    tenancy_id: str
    council: Council
    purchase_order: str | None
    period_kind: PeriodKind
    open_during: bool = True  # its meters were open during the period being billed
    closed: bool = False  # it left: its meters are closed and its final invoice issued
    # A reorganised predecessor: when its meters close (its final invoice is for the period
    # that ends then) and the successor's tenancy its later usage counts for.
    closes_at: datetime | None = None
    reorganised_into: str | None = None
    # A split's host: each council's share of its invoices from ``shared_from`` on.
    cost_shares: tuple[CostShare, ...] = ()
    shared_from: datetime | None = None

    def shares_in(self, end: datetime) -> tuple[CostShare, ...]:
        """The shares an invoice for the period ending at ``end`` is divided by: none for a
        period over before the agreement began, which the host had to itself."""
        if self.shared_from is None or end <= self.shared_from:
            return ()
        return self.cost_shares

    def final_in(self, start: datetime, end: datetime) -> bool:
        """Whether the period from ``start`` to ``end`` is this predecessor's last."""
        return (
            self.reorganised_into is not None
            and self.closes_at is not None
            and start < self.closes_at <= end
        )


class Billing:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def close(self, service_id: str, period: str) -> bool:
        """Freeze a period; False when it was already closed."""
        closed = await self.conn.fetchval(
            "INSERT INTO metering.closed_periods (service_id, period) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING true",
            service_id,
            period,
        )
        return bool(closed)

    async def is_closed(self, service_id: str, period: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM metering.closed_periods WHERE service_id = $1 AND period = $2",
                service_id,
                period,
            )
        )

    async def tenancy(self, tenancy_id: str) -> BilledTenancy | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM metering.tenancies WHERE tenancy_id = $1", tenancy_id
        )
        return _billed(row) if row else None

    async def to_invoice(
        self, service_id: str, period: str, months: list[str], start: datetime, end: datetime
    ) -> list[BilledTenancy]:
        """Tenancies whose meters were open during the period (a predecessor's, closed the instant
        its successor's billing begins, were not open during the period that begins then), that
        used it, or that have late usage of earlier periods to adjust, and that have no invoice
        for it yet (one that left already had its final one)."""
        rows = await self.conn.fetch(
            "SELECT t.*, (t.opened_at < $5 AND (t.closed_at IS NULL OR t.closed_at > $4))"
            " AS open_during FROM metering.tenancies t WHERE t.service_id = $1"
            " AND NOT EXISTS (SELECT 1 FROM metering.invoices i"
            "   WHERE i.tenancy_id = t.tenancy_id AND i.period = $2)"
            " AND ((t.opened_at < $5 AND (t.closed_at IS NULL OR t.closed_at > $4))"
            "   OR EXISTS (SELECT 1 FROM metering.usage_totals u"
            "     WHERE u.tenancy_id = t.tenancy_id AND u.month = ANY($3::text[]))"
            "   OR EXISTS (SELECT 1 FROM metering.late_usage l WHERE l.tenancy_id = t.tenancy_id))"
            " ORDER BY t.council_gss, t.tenancy_id",
            service_id,
            period,
            months,
            start,
            end,
        )
        return [_billed(row) for row in rows]

    async def late_periods(self, tenancy_id: str) -> list[str]:
        rows = await self.conn.fetch(
            "DELETE FROM metering.late_usage WHERE tenancy_id = $1 RETURNING period", tenancy_id
        )
        return sorted(row["period"] for row in rows)

    async def billed(self, tenancy_id: str, period: str) -> dict[str, tuple[Decimal, int]]:
        rows = await self.conn.fetch(
            "SELECT meter_key, quantity, amount_pence FROM metering.billed"
            " WHERE tenancy_id = $1 AND period = $2",
            tenancy_id,
            period,
        )
        return {row["meter_key"]: (row["quantity"], row["amount_pence"]) for row in rows}

    async def set_billed(
        self, tenancy_id: str, period: str, meter: str, quantity: Decimal, amount_pence: int
    ) -> None:
        await self.conn.execute(
            "INSERT INTO metering.billed (tenancy_id, period, meter_key, quantity, amount_pence)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenancy_id, period, meter_key)"
            " DO UPDATE SET quantity = EXCLUDED.quantity, amount_pence = EXCLUDED.amount_pence",
            tenancy_id,
            period,
            meter,
            quantity,
            amount_pence,
        )

    async def add_invoice(
        self,
        invoice_id: uuid.UUID,
        tenancy: BilledTenancy,
        service_id: str,
        period: str,
        lines: list[dict[str, Any]],
        total_pence: int,
        final: bool,
        parties: list[dict[str, Any]] | None = None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO metering.invoices (id, tenancy_id, service_id, period, council_gss,"
            " council_name, purchase_order, lines, total_pence, final, parties)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            invoice_id,
            tenancy.tenancy_id,
            service_id,
            period,
            tenancy.council.gss,
            tenancy.council.name,
            tenancy.purchase_order,
            lines,
            total_pence,
            final,
            parties or [],
        )

    async def invoices(self, service_id: str, period: str) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            "SELECT id::text, tenancy_id::text, period, council_gss, council_name,"
            " purchase_order, lines, total_pence, final, parties, issued_at"
            " FROM metering.invoices WHERE service_id = $1 AND period = $2"
            " ORDER BY council_gss, tenancy_id",
            service_id,
            period,
        )
        return [dict(row) for row in rows]


def _billed(row: Any) -> BilledTenancy:
    return BilledTenancy(
        tenancy_id=str(row["tenancy_id"]),
        council=Council(
            gss=row["council_gss"], name=row["council_name"], nation=row["council_nation"]
        ),
        purchase_order=row["purchase_order"],
        period_kind=PeriodKind(row["period_kind"]),
        open_during=row.get("open_during", True),
        closed=row["closed_at"] is not None,
        closes_at=row["closed_at"] if row["reorganised_into"] else None,
        reorganised_into=str(row["reorganised_into"]) if row["reorganised_into"] else None,
        cost_shares=tuple(CostShare.model_validate(s) for s in row["cost_shares"]),
        shared_from=row["shared_from"],
    )
