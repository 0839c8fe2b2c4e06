"""`tenancy reorganise`: tenancies follow councils that merge or split (issue 18)."""

from __future__ import annotations

import getpass
import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import JsonFlag, err, fail, out, poll, run, settings
from cli.context import database, request
from services.onboarding.councils import (
    CouncilRegister,
    ReferenceDataInvalid,
    ReferenceDataMissing,
)
from services.onboarding.moves import BeforeVestingDay, PlanNotApplicable
from services.onboarding.reorganisation import (
    LiveTenancy,
    Plan,
    PlanInputInvalid,
    Readiness,
    Shares,
    TenancyPlan,
    parse_hosts,
    parse_shares,
    plan,
    share_text,
)
from services.onboarding.reorganisation_repository import MoveRepository, live_tenancies
from services.onboarding.reorganisation_service import Applied, apply
from services.onboarding.retirement import Retired
from services.onboarding.retirement_service import retire
from services.onboarding.service import Person
from services.onboarding.vesting_day import london_today

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
ShareOption = Annotated[
    list[str] | None,
    typer.Option(
        "--share",
        help="A successor's share of its split council's cost under the hosting agreement, "
        "as SUCCESSOR=SHARE (0.45, 45% or 9/20; register or GSS code), or "
        "PREDECESSOR/SUCCESSOR=SHARE; give every successor's, adding up to exactly 1 "
        "(default: equal shares); repeatable.",
    ),
]


def shares_of(register_: CouncilRegister, vesting: date, share: list[str] | None) -> Shares:
    """The shares an operator gave, or a refusal naming the option and the rule."""
    try:
        return parse_shares(register_, vesting, share or [])
    except PlanInputInvalid as refusal:
        raise fail(str(refusal)) from None


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
def plan_command(
    on: On, host: Hosts = None, share: ShareOption = None, as_json: JsonFlag = False
) -> None:
    """List every tenancy whose council is replaced on a vesting day, and what happens to it in
    each worker. Changes nothing."""
    vesting, register_, hosts = inputs(on, host)
    shares = shares_of(register_, vesting, share)
    config = settings()

    async def fetch() -> list[LiveTenancy]:
        async with database(config) as pool, pool.acquire() as conn:
            return await live_tenancies(conn)

    found = plan(register_, vesting, run(fetch()), hosts, shares)
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
    share: ShareOption = None,
    accepted_by: Annotated[
        str | None,
        typer.Option(help="Who accepts the novated agreements for the successors (default: you)."),
    ] = None,
    early: Annotated[
        str | None,
        typer.Option(
            "--early",
            metavar="REASON",
            help="Apply before vesting day, saying why (kept with the plan and in the audit "
            "trail): the predecessors' tenancies end and their data move at once.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Carry out the plan for a vesting day: each tenancy's data move into its successor's,
    verified by row counts and checksums, then the predecessor's tenancy ends. Refused unless
    every tenancy in the plan is ready, and before vesting day (London time) unless --early
    gives the reason. Applying again is harmless: it asks again only for the moves that
    failed."""
    vesting, register_, hosts = inputs(on, host)
    shares = shares_of(register_, vesting, share)
    config = settings()
    by = Person(accepted_by or getpass.getuser(), "operator, on the successor's behalf")
    today = london_today()

    async def submit() -> Applied:
        attributes = {"reorganisation.vesting": vesting.isoformat()}
        if early is not None and today < vesting:
            attributes["reorganisation.early"] = early.strip()
        async with (
            database(config) as pool,
            request(config, pool, "onboarding", "tenancy reorganise apply", attributes) as tx,
        ):
            return await apply(
                tx,
                register_,
                vesting,
                hosts,
                by,
                "tenancy/cli",
                today=today,
                early=early,
                shares=shares,
            )

    try:
        applied = run(submit())
    except PlanNotApplicable as refusal:
        if as_json:
            print(json.dumps({"error": str(refusal)}))
        if isinstance(refusal, BeforeVestingDay):
            day = vesting.isoformat()
            raise fail(
                f"refused: {refusal}\nwait until {day} (the onboarding worker applies a ready"
                ' plan with no split itself that day), or apply it now by adding --early "REASON"'
                " to the command (why it cannot wait: kept with the plan and in the audit trail)"
            ) from None
        raise fail(f"refused: {refusal}") from None
    if as_json:
        print(
            json.dumps(
                {
                    "vesting": vesting.isoformat(),
                    "first": applied.first,
                    "requested": applied.requested,
                    "early": applied.early,
                }
            )
        )
        return
    if applied.first and applied.early:
        out.print(
            f"applied early: {len(applied.requested)} tenancies move now, before vesting day"
            f" {vesting.isoformat()} ({applied.early})",
            highlight=False,
        )
    elif applied.first:
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
    table = Table("tenancy", "council", "into", "service", "status", "rows", "reason", "retired")
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
            retirement_shown(move),
        )
    out.print(table)


def retirement_shown(move: dict[str, Any]) -> str:
    """Where a predecessor's retirement is, in a few words (the archive is in --json)."""
    if move["retirement"] == "retired":
        rows = sum(t["rows"] for t in move["exported"] or [])
        return f"retired: {rows} rows exported"
    if move["retirement"] == "failed":
        return f"retirement failed: {move['retirement_reason']}"
    return "retiring" if move["retirement"] == "requested" else ""


RETIREMENT_FIELDS = (
    "source",
    "retirement",
    "retirement_reason",
    "archive",
    "archive_sha256",
    "exported",
    "retired_at",
)


@reorganise_app.command("retire")
def retire_command(
    on: On,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the exports and drops to finish.")
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Once a vesting day's moves are settled, retire its predecessors: each one's frozen data
    are exported as an offboarding's are (a CSV per table and a manifest of row counts and
    SHA-256 checksums, in one zip under EXPORTS_DIR), then its schema, database or rows and
    its role are dropped. A predecessor whose move is not verified is refused, with the
    reason. Retiring again is harmless: it asks again only for retirements not finished."""
    vesting = inputs(on, None)[0]
    config = settings()

    async def submit() -> Retired:
        attributes = {"reorganisation.vesting": vesting.isoformat()}
        async with (
            database(config) as pool,
            request(config, pool, "onboarding", "tenancy reorganise retire", attributes) as tx,
        ):
            return await retire(tx, vesting, "tenancy/cli")

    async def follow(sources: set[str]) -> list[dict[str, Any]]:
        async with database(config) as pool:

            async def ask() -> list[dict[str, Any]]:
                async with pool.acquire() as conn:
                    found = await MoveRepository(conn).of_day(vesting)
                return [m for m in found if m["source"] in sources]

            def done(found: list[dict[str, Any]]) -> bool:
                return all(m["retirement"] in ("retired", "failed") for m in found)

            return await poll(ask, done, wait)

    try:
        retired = run(submit())
    except PlanNotApplicable as refusal:
        if as_json:
            print(json.dumps({"error": str(refusal)}))
        raise fail(f"refused: {refusal}") from None
    found = run(follow({*retired.requested, *retired.already}))
    if as_json:
        summary = {
            "vesting": vesting.isoformat(),
            "requested": retired.requested,
            "already": retired.already,
            "refused": retired.refused,
            "retirements": [{key: m[key] for key in RETIREMENT_FIELDS} for m in found],
        }
        print(json.dumps(summary, indent=2, default=str))
    else:
        out.print(
            f"asked to retire {len(retired.requested)} predecessors of {vesting.isoformat()};"
            f" {len(retired.already)} retired already",
            highlight=False,
        )
        for m in found if wait > 0 else []:
            out.print(f"  {m['source']} ({m['council']}, {m['service_id']}): {retirement_shown(m)}")
            if m["archive"]:
                out.print(f"    archive: {m['archive']}", highlight=False, soft_wrap=True)
                out.print(f"    sha256:  {m['archive_sha256']}", highlight=False, soft_wrap=True)
        for source, reason in retired.refused.items():
            err.print(f"refused {source}: {reason}", highlight=False)
        out.print(f"follow it with: tenancy reorganise moves --on {vesting.isoformat()}")
    if retired.refused or any(m["retirement"] == "failed" for m in found):
        raise typer.Exit(3)
    if wait > 0 and any(m["retirement"] != "retired" for m in found):
        err.print(f"still retiring after {wait:g}s")
        raise typer.Exit(2)


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
            into += " (cost shared " + ", ".join(
                f"{p.register_code} {share_text(s)}" for p, s in tenancy.shares
            )
            into += ")"
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
