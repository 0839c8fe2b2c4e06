"""`tenancy reorganise`: tenancies follow councils that merge or split (issue 18)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from cli.common import JsonFlag, err, fail, out, poll, run, settings
from cli.context import database, request
from services.onboarding import moves
from services.onboarding.councils import (
    CouncilRegister,
    ReferenceDataInvalid,
    ReferenceDataMissing,
)
from services.onboarding.moves import Arrangement, PlanNotApplicable
from services.onboarding.reorganisation import (
    LiveTenancy,
    Plan,
    PlanInputInvalid,
    Readiness,
    Shares,
    TenancyPlan,
    london_today,
    parse_hosts,
    parse_shares,
    plan,
    share_text,
    vesting_instant,
)
from services.onboarding.reorganisation_repository import (
    MoveRepository,
    live_tenancies,
    service_ids,
)
from services.onboarding.reorganisation_service import Applied, Scheduled, apply, cancel, schedule
from services.onboarding.retirement import Retired
from services.onboarding.retirement_service import retire
from services.onboarding.service import Person

Done = TypeVar("Done")

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
        "PREDECESSOR=SUCCESSOR, just SUCCESSOR, or PREDECESSOR/SERVICE=SUCCESSOR for one "
        "service (its catalogue id), which wins for that service (register or GSS codes); "
        "repeatable. Default: the hosts of the plan scheduled for the day, if any.",
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


def inputs(on: str) -> tuple[date, CouncilRegister]:
    """The vesting day and the register, or a refusal naming the field and the rule."""
    try:
        vesting = date.fromisoformat(on)
    except ValueError:
        raise fail(f"on: {on!r} is not a date written YYYY-MM-DD") from None
    try:
        return vesting, CouncilRegister.from_csv(settings().councils_csv)
    except (ReferenceDataMissing, ReferenceDataInvalid) as unreadable:
        raise fail(str(unreadable)) from None


@dataclass(frozen=True)
class Chosen:
    """What a plan is made with: the operator's hosts and shares, or else those arranged."""

    tenancies: list[LiveTenancy]
    arrangement: Arrangement | None
    hosts: dict[str, str]
    shares: Shares
    given_hosts: bool  # the operator named hosts on this command
    applied: bool  # a plan for the day was applied already (early, or on or after the day)


def chosen(
    vesting: date, register_: CouncilRegister, host: list[str] | None, share: list[str] | None
) -> Chosen:
    config = settings()

    async def fetch() -> tuple[list[LiveTenancy], set[str], Arrangement | None, bool]:
        async with database(config) as pool, pool.acquire() as conn:
            repository = MoveRepository(conn)
            arranged = await repository.arrangement(vesting)
            applied = await repository.decided(vesting) == "applied"
            return await live_tenancies(conn), await service_ids(conn), arranged, applied

    tenancies, services, arranged, applied = run(fetch())
    try:
        hosts = parse_hosts(register_, vesting, host or [], services=services, tenancies=tenancies)
        shares: Shares = parse_shares(register_, vesting, share or [])
    except PlanInputInvalid as refusal:
        raise fail(str(refusal)) from None
    if arranged is not None and not host:
        hosts = dict(arranged.hosts)
    if arranged is not None and not share:
        shares = arranged.shares
    return Chosen(tenancies, arranged, hosts, shares, bool(host), applied)


def carried_out(work: Coroutine[Any, Any, Done], as_json: bool) -> Done:
    """Run a change to a reorganisation; a refusal is printed (as JSON too, if asked) and
    ends the command with its reason."""
    try:
        done: Done = run(work)
    except PlanNotApplicable as refusal:
        if as_json:
            print(json.dumps({"error": str(refusal)}))
        raise fail(f"refused: {refusal}") from None
    return done


@reorganise_app.command("plan")
def plan_command(
    on: On, host: Hosts = None, share: ShareOption = None, as_json: JsonFlag = False
) -> None:
    """List every tenancy whose council is replaced on a vesting day, and what happens to it in
    each worker; with the plan scheduled for the day, if any (its hosts and shares unless
    others are given). Changes nothing."""
    vesting, register_ = inputs(on)
    given = chosen(vesting, register_, host, share)
    found = plan(register_, vesting, given.tenancies, given.hosts, given.shares)
    arranged = given.arrangement
    if as_json:
        shown = {**found.as_json(), "arrangement": arranged.as_json() if arranged else None}
        print(json.dumps(shown, indent=2))
        return
    if not found.changes:
        coming = ", ".join(d.isoformat() for d in register_.vesting_days(date.today()))
        out.print(f"no council is replaced on {vesting.isoformat()} in the reference data")
        out.print(f"coming vesting days: {coming or 'none'}", highlight=False)
        return
    if arranged is not None:
        out.print(arrangement_shown(arranged), highlight=False)
        if given.given_hosts and arranged.hosts != given.hosts:
            out.print("  (shown with the hosts given here instead)", highlight=False)
    print_plan(found)


def arrangement_shown(arranged: Arrangement) -> str:
    day = arranged.vesting.isoformat()
    state = (
        f"applied on {arranged.applied_at:%Y-%m-%d}"
        if arranged.applied_at
        else "the onboarding worker carries it out at the start of that day"
    )
    return (
        f"scheduled for {day} by {arranged.arranged_by} on {arranged.arranged_at:%Y-%m-%d %H:%M %Z}"
        f": hosts {moves.hosts_text(arranged.hosts)}, shares"
        f" {moves.shares_given_text(arranged.shares)}, agreements accepted by"
        f" {arranged.accepted_by}; {state}"
    )


def actor() -> str:
    return f"cli:{getpass.getuser()}"


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
            help="Carry it out now, before vesting day, saying why (kept with the plan and in "
            "the audit trail): the predecessors' tenancies end and their data move at once.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Carry out the plan for a vesting day: each tenancy's data move into its successor's,
    verified by row counts and checksums, then the predecessor's tenancy ends. Refused unless
    every tenancy in the plan is ready. Before vesting day (London time), for a day not applied
    yet, it schedules the plan instead, with these hosts and shares, for the onboarding worker
    to carry out at the start of that day (running it again replaces the arrangement; `cancel`
    removes it), unless --early gives the reason to carry it out now. Applying again is
    harmless: it asks again only for the moves that failed."""
    vesting, register_ = inputs(on)
    given = chosen(vesting, register_, host, share)
    by = Person(accepted_by or getpass.getuser(), "operator, on the successor's behalf")
    today = london_today()
    # A plan applied early already is applied again (for its failed moves), not scheduled.
    if today < vesting and early is None and not given.applied:
        scheduled_command(vesting, register_, given, by, today, as_json)
        return
    config = settings()

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
                given.hosts,
                by,
                "tenancy/cli",
                today=today,
                early=early,
                shares=given.shares,
            )

    applied = carried_out(submit(), as_json)
    overridden = moves.hosts_overridden(given.arrangement, given.hosts) if applied.first else None
    if as_json:
        print(
            json.dumps(
                {
                    "vesting": vesting.isoformat(),
                    "first": applied.first,
                    "requested": applied.requested,
                    "early": applied.early,
                    "hosts": given.hosts,
                    "arrangement_overridden": overridden,
                }
            )
        )
        return
    if overridden:
        err.print(overridden, highlight=False)
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


def scheduled_command(
    vesting: date,
    register_: CouncilRegister,
    given: Chosen,
    by: Person,
    today: date,
    as_json: bool,
) -> None:
    """Before vesting day, ``apply`` arranges the plan rather than carrying it out."""
    config = settings()

    async def submit() -> Scheduled:
        async with database(config) as pool, pool.acquire() as conn, conn.transaction():
            return await schedule(
                conn, register_, vesting, given.hosts, given.shares, by, actor(), today=today
            )

    done = carried_out(submit(), as_json)
    day = vesting.isoformat()
    if as_json:
        shown = {
            "vesting": day,
            "scheduled": True,
            "replaced": done.replaced.as_json() if done.replaced else None,
            "arrangement": done.arrangement.as_json(),
            "plan": done.plan.as_json(),
        }
        print(json.dumps(shown, indent=2))
        return
    instant = vesting_instant(vesting).strftime("%Y-%m-%d %H:%M UTC")
    replaced = done.replaced
    out.print(
        f"scheduled, not applied: the onboarding worker carries out the plan for {day} at the"
        f" start of vesting day, midnight London time ({instant}), as it stands then, with"
        f" hosts {moves.hosts_text(done.arrangement.hosts)} and shares"
        f" {moves.shares_given_text(done.arrangement.shares)}, the agreements accepted by"
        f" {by.name}. That is when the worker runs with REORGANISE_AUTOMATICALLY=true (the"
        " default); with it false, run this command again on the day."
        + (
            f" This replaces the arrangement made by {replaced.arranged_by} on"
            f" {replaced.arranged_at:%Y-%m-%d} (hosts {moves.hosts_text(replaced.hosts)})."
            if replaced
            else ""
        ),
        highlight=False,
    )
    out.print(
        f"change it by running this again before {day}; cancel it with: tenancy reorganise"
        f' cancel --on {day}; carry it out now with --early "REASON"',
        highlight=False,
    )
    print_plan(done.plan)
    if done.plan.readiness is not Readiness.READY:
        err.print(
            f"as it stands the plan is {done.plan.readiness}: on {day} the worker carries it out"
            " only if every tenancy is ready by then, and otherwise warns and leaves it to you",
            highlight=False,
        )


@reorganise_app.command("cancel")
def cancel_command(on: On, as_json: JsonFlag = False) -> None:
    """Cancel the plan scheduled for a vesting day (by `apply` before the day), so that the
    onboarding worker does not carry it out. A plan already applied cannot be cancelled."""
    vesting = inputs(on)[0]
    config = settings()

    async def submit() -> Arrangement | None:
        async with database(config) as pool, pool.acquire() as conn, conn.transaction():
            return await cancel(conn, vesting, actor())

    cancelled = carried_out(submit(), as_json)
    day = vesting.isoformat()
    if as_json:
        print(json.dumps({"vesting": day, "cancelled": cancelled.as_json() if cancelled else None}))
    elif cancelled is None:
        out.print(f"no plan is scheduled for {day}; nothing to cancel", highlight=False)
    else:
        out.print(
            f"cancelled: the plan scheduled for {day} by {cancelled.arranged_by} (hosts"
            f" {moves.hosts_text(cancelled.hosts)}) will not be carried out by the worker",
            highlight=False,
        )


@reorganise_app.command("moves")
def moves_command(on: On, as_json: JsonFlag = False) -> None:
    """Where each move of an applied plan is: requested, target-provisioning, moving, moved
    (with each table's row counts and checksums) or failed (with the step and the reason)."""
    vesting = inputs(on)[0]
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
    vesting = inputs(on)[0]
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

    retired = carried_out(submit(), as_json)
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
            "\n".join(
                ([change.host.label] if change.host else [])
                + [f"{service}: {party.label}" for service, party in change.service_hosts]
            ),
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
        out.print(
            "name a split's host with --host PREDECESSOR=SUCCESSOR (or PREDECESSOR/SERVICE="
            "SUCCESSOR for one service); before vesting day `apply` schedules it with them",
            highlight=False,
        )


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
