"""`tenancy reorganise`: tenancies follow councils that merge or split (issue 18)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from cli.common import JsonFlag, fail, out, run, settings
from cli.context import database
from services.onboarding.councils import (
    CouncilRegister,
    ReferenceDataInvalid,
    ReferenceDataMissing,
)
from services.onboarding.reorganisation import (
    LiveTenancy,
    Plan,
    PlanInputInvalid,
    Readiness,
    TenancyPlan,
    parse_hosts,
    plan,
)
from services.onboarding.reorganisation_repository import live_tenancies

reorganise_app = typer.Typer(
    help="Tenancies of councils that merge or split in a reorganisation.", no_args_is_help=True
)
COLOURS = {Readiness.READY: "green", Readiness.WAITING: "yellow", Readiness.BLOCKED: "red"}


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.add_typer(reorganise_app, name="reorganise")


@reorganise_app.command("plan")
def plan_command(
    on: Annotated[str, typer.Option("--on", help="Vesting day, YYYY-MM-DD, e.g. 2027-04-01.")],
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="The successor that hosts a split council's services for the others, as "
            "PREDECESSOR=SUCCESSOR or just SUCCESSOR (register or GSS codes); repeatable.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List every tenancy whose council is replaced on a vesting day, and what happens to it in
    each worker. Changes nothing."""
    try:
        vesting = date.fromisoformat(on)
    except ValueError:
        raise fail(f"on: {on!r} is not a date written YYYY-MM-DD") from None
    config = settings()
    try:
        register_ = CouncilRegister.from_csv(config.councils_csv)
    except (ReferenceDataMissing, ReferenceDataInvalid) as unreadable:
        raise fail(str(unreadable)) from None
    try:
        hosts = parse_hosts(register_, vesting, host or [])
    except PlanInputInvalid as refusal:
        raise fail(str(refusal)) from None

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
