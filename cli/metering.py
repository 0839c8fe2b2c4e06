"""`tenancy usage`, `tenancy billing` and `tenancy invoices`: live usage, closing a billing
period into invoices, and the file finance imports."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import JsonFlag, err, fail, out, parse_tenancy_id, poll, run, settings
from cli.context import database, request
from services.metering import MIGRATIONS as METERING_MIGRATIONS
from services.metering.periods import Period
from services.metering.pricing import format_pounds
from services.metering.repository import Billing, usage_of
from services.metering.service import CloseRefused, parse_period
from services.onboarding.reorganisation import share_text
from services.onboarding.repository import CatalogueRepository
from shared import db
from shared.catalogue import ServiceManifest
from shared.events import BillingCloseRequested, BillingCloseRequestedData

billing_app = typer.Typer(help="Billing periods: close them into invoices; rejected usage.")
PeriodOption = Annotated[
    str | None,
    typer.Option(
        help="A month (2026-11) or a financial year (FY2026-27); the current if not given."
    ),
]


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.command()(usage)
    app.command()(invoices)
    app.add_typer(billing_app, name="billing")


def number(value: Decimal) -> int | float:
    """Usage is not money: JSON numbers, whole ones as integers."""
    return int(value) if value == value.to_integral() else float(value)


def usage(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    period: PeriodOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a tenancy's live usage: each meter's value in a period."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()
    try:
        chosen = Period.parse(period) if period else None
    except ValueError as error:
        raise fail(str(error)) from None

    async def fetch() -> tuple[Period, dict[str, Decimal]] | None:
        async with database(config) as pool:
            await db.migrate(pool, "metering", METERING_MIGRATIONS)
            async with pool.acquire() as conn:
                tenancy = await Billing(conn).tenancy(tenancy_id)
                if tenancy is None:
                    return None
                shown = chosen or Period.containing(tenancy.period_kind, datetime.now(UTC))
                return shown, await usage_of(conn, tenancy_id, [str(m) for m in shown.months()])

    found = run(fetch())
    if found is None:
        raise fail(f"no metered tenancy {tenancy_id}")
    shown, values = found
    if as_json:
        print(json.dumps({meter: number(value) for meter, value in values.items()}, indent=2))
        return
    table = Table("meter", "value", title=f"Usage of {tenancy_id} in {shown}")
    for meter, value in values.items():
        table.add_row(meter, f"{number(value):,}")
    out.print(table)


async def manifest_of(pool: db.Pool, service_id: str) -> ServiceManifest:
    async with pool.acquire() as conn:
        manifest = await CatalogueRepository(conn).get(service_id)
    if manifest is None:
        raise fail(f"service: {service_id!r} is not in the catalogue")
    return manifest


@billing_app.command("close")
def billing_close(
    service: Annotated[str, typer.Argument(help="The id of a service in the catalogue.")],
    period: Annotated[str, typer.Argument(help="A month (2026-11) or financial year (FY2026-27).")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the invoices.")] = 30.0,
    as_json: JsonFlag = False,
) -> None:
    """Freeze a billing period, price every tenancy's usage and issue their invoices."""
    config = settings()

    async def submit() -> list[dict[str, Any]] | None:
        async with database(config) as pool:
            manifest = await manifest_of(pool, service)
            if manifest.pricing is None:
                raise fail(f"service: {service} has no pricing; there is nothing to bill")
            try:
                closing = parse_period(manifest, period)
            except CloseRefused as refused:
                raise fail(str(refused)) from None
            now = datetime.now(UTC)
            if closing.start > now:
                raise fail(f"period: {closing} has not started; it starts {closing.start}")
            if closing.end > now:
                err.print(
                    f"closing {closing} before it ends ({closing.end.isoformat()}): usage for"
                    " the rest of it will be billed on the next invoice as an adjustment",
                    highlight=False,
                )
            await db.migrate(pool, "metering", METERING_MIGRATIONS)
            async with pool.acquire() as conn:
                if await Billing(conn).is_closed(service, str(closing)):
                    return await Billing(conn).invoices(service, str(closing))
            attributes = {"service": service, "period": str(closing)}
            async with request(
                config, pool, "metering", "tenancy billing close", attributes, METERING_MIGRATIONS
            ) as tx:
                data = BillingCloseRequestedData(service=manifest, period=str(closing))
                tx.emit(BillingCloseRequested.new(source="tenancy/cli", subject=service, data=data))

            async def closed() -> bool:
                async with pool.acquire() as conn:
                    return await Billing(conn).is_closed(service, str(closing))

            if not await poll(closed, bool, wait):
                return None
            async with pool.acquire() as conn:
                return await Billing(conn).invoices(service, str(closing))

    issued = run(submit())
    if issued is None:
        raise fail(f"the metering worker has not closed {period} yet; is it running?", code=2)
    if as_json:
        print(json.dumps([invoice_json(i) for i in issued], indent=2))
        return
    print_invoices(service, period, issued)


def invoice_json(invoice: dict[str, Any]) -> dict[str, Any]:
    return {
        **invoice,
        "issued_at": invoice["issued_at"].isoformat(),
        "total": format_pounds(invoice["total_pence"]),
    }


def print_invoices(service: str, period: str, issued: list[dict[str, Any]]) -> None:
    table = Table("council", "GSS code", "purchase order", "lines", "total (£)", "shared by",
                  title=f"Invoices of {service} for {period}")  # fmt: skip
    for invoice in issued:
        table.add_row(
            invoice["council_name"],
            invoice["council_gss"],
            invoice["purchase_order"] or "",
            str(len(invoice["lines"])),
            format_pounds(invoice["total_pence"]),
            "\n".join(party_text(p) for p in invoice.get("parties") or []),
        )
    out.print(table)
    total = sum(invoice["total_pence"] for invoice in issued)
    out.print(f"{len(issued)} invoices, £{format_pounds(total)} in all", highlight=False)


def party_text(party: dict[str, Any]) -> str:
    """One council's part of a shared invoice: ``Cumberland 45%: 22.50``."""
    share = share_text(Fraction(party["share"]))
    return f"{party['council']['name']} {share}: {format_pounds(party['amount_pence'])}"


CSV_COLUMNS = (
    "invoice_id", "service", "period", "council_name", "gss_code", "purchase_order",
    "line", "kind", "description", "meter", "quantity", "amount_gbp", "invoice_total_gbp",
    "shared_by",
)  # fmt: skip


def invoices(
    service: Annotated[str, typer.Argument(help="The id of a service in the catalogue.")],
    period: Annotated[str, typer.Option(help="A month (2026-11) or financial year (FY2026-27).")],
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write the invoices' lines to this CSV file.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List a closed period's invoices; --csv writes the file finance imports, a row per line."""
    config = settings()
    try:
        Period.parse(period)
    except ValueError as error:
        raise fail(str(error)) from None

    async def fetch() -> list[dict[str, Any]]:
        async with database(config) as pool:
            await db.migrate(pool, "metering", METERING_MIGRATIONS)
            async with pool.acquire() as conn:
                return await Billing(conn).invoices(service, period)

    issued = run(fetch())
    if csv_file is not None:
        write_csv(csv_file, service, issued)
        out.print(f"wrote {csv_file}: {len(issued)} invoices", highlight=False)
    if as_json:
        print(json.dumps([invoice_json(i) for i in issued], indent=2))
    elif csv_file is None:
        print_invoices(service, period, issued)


def shared_by(invoice: dict[str, Any]) -> str:
    """For finance: who pays which part of a split's host's invoice, each council's GSS code,
    exact share and amount (``E06000063 9/20 4.61; E06000064 11/20 5.64``); empty when the
    council invoiced pays it all."""
    return "; ".join(
        f"{p['council']['gss']} {p['share']} {format_pounds(p['amount_pence'])}"
        for p in invoice.get("parties") or []
    )


def write_csv(path: Path, service: str, issued: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for invoice in issued:
            parties = shared_by(invoice)
            for number_, line in enumerate(invoice["lines"], start=1):
                writer.writerow(
                    [
                        invoice["id"], service, invoice["period"], invoice["council_name"],
                        invoice["council_gss"], invoice["purchase_order"] or "", number_,
                        line["kind"], line["description"], line["meter"] or "",
                        line["quantity"] if line["quantity"] is not None else "",
                        format_pounds(line["amount_pence"]),
                        format_pounds(invoice["total_pence"]), parties,
                    ]
                )  # fmt: skip


@billing_app.command("rejections")
def billing_rejections(as_json: JsonFlag = False) -> None:
    """Usage events refused to the dead-letter topic, counted by reason."""
    config = settings()

    async def fetch() -> dict[str, int]:
        async with database(config) as pool:
            await db.migrate(pool, "metering", METERING_MIGRATIONS)
            rows = await pool.fetch(
                "SELECT error_type, count(*) AS n FROM metering.dead_letters"
                " WHERE topic = $1 GROUP BY error_type ORDER BY error_type",
                config.topic("usage.recorded"),
            )
        return {row["error_type"]: row["n"] for row in rows}

    counts = run(fetch())
    if as_json:
        print(json.dumps(counts, indent=2))
        return
    table = Table("reason", "events", title="Rejected usage")
    for reason, n in counts.items():
        table.add_row(reason, str(n))
    out.print(table)
