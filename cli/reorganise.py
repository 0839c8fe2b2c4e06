"""`tenancy reorganise`: tenancies follow councils that merge or split (issue 18)."""

from __future__ import annotations

import getpass
import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import JsonFlag, fail, out, run, settings
from cli.context import database, request
from services.onboarding.councils import (
    CouncilRegister,
    ReferenceDataInvalid,
    ReferenceDataMissing,
)
from services.onboarding.moves import PlanNotApplicable
from services.onboarding.reorganisation import (
    LiveTenancy,
    Plan,
    PlanInputInvalid,
    Readiness,
    TenancyPlan,
    parse_hosts,
    plan,
)
from services.onboarding.reorganisation_repository import MoveRepository, live_tenancies
from services.onboarding.reorganisation_service import Applied, apply
from services.onboarding.service import Person

reorganise_app = typer.Typer(
    help="Tenancies of councils that merge or split in a reorganisation.", no_args_is_help=True
)
COLOURS = {Readiness.READY: "green", Readiness.WAITING: "yellow", Readiness.BLOCKED: "red"}


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.add_typer(reorganise_app, name="reorganise")


On = Annotated[str, typer.Option("--on", help="Vesting day, YYYY-MM-DD, e.g. 2027-04-01.")]
Hosts = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        help="The successor that hosts a split council's services for the others, as "
        "PREDECESSOR=SUCCESSOR or just SUCCESSOR (register or GSS codes); repeatable.",
    ),
]


def inputs(on: str, host: list[str] | None) -> tuple[date, CouncilRegister, dict[str, str]]:
    """The vesting day, the register and the hosts an operator gave, or a refusal naming
    the field and the rule."""
    try:
        vesting = date.fromisoformat(on)
    except ValueError:
        raise fail(f"on: {on!r} is not a date written YYYY-MM-DD") from None
    try:
        register_ = CouncilRegister.from_csv(settings().councils_csv)
    except (ReferenceDataMissing, ReferenceDataInvalid) as unreadable:
        raise fail(str(unreadable)) from None
    try:
        return vesting, register_, parse_hosts(register_, vesting, host or [])
    except PlanInputInvalid as refusal:
        raise fail(str(refusal)) from None


@reorganise_app.command("plan")
def plan_command(on: On, host: Hosts = None, as_json: JsonFlag = False) -> None:
    """List every tenancy whose council is replaced on a vesting day, and what happens to it in
    each worker. Changes nothing."""
    vesting, register_, hosts = inputs(on, host)
    config = settings()

    async def fetch() -> list[LiveTenancy]:
        async with database(config) as pool, pool.acquire() as conn:
            return await live_tenancies(conn)

    found = plan(register_, vesting, run(fetch()), hosts)
    if as_json:
        print(json.dumps(found.as_json(), indent=2))
        return
    if not found.changes:
        coming = ", ".join(d.isoformat() for d in register_.vesting_days(date.today()))
        out.print(f"no council is replaced on {vesting.isoformat()} in the reference data")
        out.print(f"coming vesting days: {coming or 'none'}", highlight=False)
        return
    print_plan(found)


@reorganise_app.command("apply")
def apply_command(
    on: On,
    host: Hosts = None,
    accepted_by: Annotated[
        str | None,
        typer.Option(help="Who accepts the novated agreements for the successors (default: you)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Carry out the plan for a vesting day: each tenancy's data move into its successor's,
    verified by row counts and checksums, then the predecessor's tenancy ends. Refused unless
    every tenancy in the plan is ready. Applying again is harmless: it asks again only for
    the moves that failed."""
    vesting, register_, hosts = inputs(on, host)
    config = settings()
    by = Person(accepted_by or getpass.getuser(), "operator, on the successor's behalf")

    async def submit() -> Applied:
        attributes = {"reorganisation.vesting": vesting.isoformat()}
        async with (
            database(config) as pool,
            request(config, pool, "onboarding", "tenancy reorganise apply", attributes) as tx,
        ):
            return await apply(tx, register_, vesting, hosts, by, source="tenancy/cli")

    try:
        applied = run(submit())
    except PlanNotApplicable as refusal:
        if as_json:
            print(json.dumps({"error": str(refusal)}))
        raise fail(f"refused: {refusal}") from None
    if as_json:
        print(
            json.dumps(
                {
                    "vesting": vesting.isoformat(),
                    "first": applied.first,
                    "requested": applied.requested,
                }
            )
        )
        return
    if applied.first:
        out.print(f"applied: {len(applied.requested)} tenancies move on {vesting.isoformat()}")
    else:
        out.print(
            f"already applied; asked again for {len(applied.requested)} failed moves",
            highlight=False,
        )
    out.print(f"follow it with: tenancy reorganise moves --on {vesting.isoformat()}")


@reorganise_app.command("moves")
def moves_command(on: On, as_json: JsonFlag = False) -> None:
    """Where each move of an applied plan is: requested, target-provisioning, moving, moved
    (with each table's row counts and checksums) or failed (with the step and the reason)."""
    vesting = inputs(on, None)[0]
    config = settings()

    async def fetch() -> list[dict[str, Any]]:
        async with database(config) as pool, pool.acquire() as conn:
            return await MoveRepository(conn).of_day(vesting)

    found = run(fetch())
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return
    if not found:
        out.print(f"no plan was applied for {vesting.isoformat()}")
        return
    table = Table("tenancy", "council", "into", "service", "status", "rows", "reason")
    for move in found:
        rows = sum(t["source_rows"] for t in move["tables"] or [])
        table.add_row(
            move["source"],
            move["council"],
            f"{move['successor']}\n{move['target']}",
            f"{move['service_id']} ({move['tier']})",
            move["status"],
            str(rows) if move["tables"] is not None else "",
            f"{move['failed_step']}: {move['reason']}" if move["reason"] else "",
        )
    out.print(table)


def print_plan(found: Plan) -> None:
    changes = Table("change", "from", "to", "host", "problems", title=f"Vesting {found.vesting}")
    for change in found.changes:
        changes.add_row(
            change.kind.value,
            "\n".join(p.label for p in change.predecessors),
            "\n".join(s.label for s in change.successors),
            change.host.label if change.host else "",
            "\n".join(change.problems),
        )
    out.print(changes)
    if not found.tenancies:
        out.print("no live tenancy belongs to a council replaced on this day")
        return
    for tenancy in found.tenancies:
        out.print(heading(tenancy))
        if tenancy.steps:
            out.print(steps_table(tenancy))
        for reason in tenancy.reasons:
            out.print(f"  - {reason}", highlight=False)
    colour = COLOURS[found.readiness]
    out.print(f"{len(found.tenancies)} tenancies; the plan is [bold {colour}]{found.readiness}[/]")
    if any("must name the successor that hosts" in r for t in found.tenancies for r in t.reasons):
        out.print("name a split's host with --host PREDECESSOR=SUCCESSOR", highlight=False)


def heading(tenancy: TenancyPlan) -> str:
    colour = COLOURS[tenancy.readiness]
    if tenancy.successor is None:
        into = "split among " + " and ".join(p.label for p in tenancy.served) + ", no host named"
    else:
        into = f"{tenancy.kind.value} into {tenancy.successor.label}"
        if tenancy.served:
            into += ", hosting for " + " and ".join(p.label for p in tenancy.served)
        into += f", tenancy {tenancy.target_tenancy_id}"
        if tenancy.creates_target:
            into += " (new)"
    return (
        f"\n[bold]tenancy {tenancy.tenancy_id}[/]: {tenancy.council.label} in "
        f"{tenancy.service_id} ({tenancy.tier.value})\n{into}: "
        f"[bold {colour}]{tenancy.readiness.value}[/]"
    )


def steps_table(tenancy: TenancyPlan) -> Table:
    table = Table("worker", "action", "what happens")
    for step in tenancy.steps:
        table.add_row(step.worker, step.action, step.detail)
    return table
