"""`tenancy offboard`: a council leaves a service and takes its data (issue 3, item 4)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.common import JsonFlag, err, fail, out, parse_tenancy_id, poll, run, settings
from cli.context import database, request
from services.onboarding.repository import TenancyRepository
from services.onboarding.service import RequestRefused, request_offboarding

# Where following an offboarding stops: done, or failed with the reason.
FINISHED = {"offboarded", "failed"}


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.command()(offboard)


def offboard(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    reason: Annotated[str, typer.Option(help="Why the council leaves (kept in the event).")] = "",
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the export and removal to finish.")
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Export a tenancy's data (CSV per table, with a manifest of row counts and checksums, in
    one zip), then remove its schema, database or rows and its role."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    if len(reason) > 500:
        raise fail("reason: at most 500 characters")
    config = settings()

    async def submit() -> None:
        attributes = {"tenancy.id": tenancy_id}
        async with (
            database(config) as pool,
            request(config, pool, "onboarding", "tenancy offboard", attributes) as tx,
        ):
            await request_offboarding(tx, tenancy_id, source="tenancy/cli", reason=reason)

    async def follow() -> dict[str, Any] | None:
        async with database(config) as pool:

            async def ask() -> dict[str, Any] | None:
                async with pool.acquire() as conn:
                    return await TenancyRepository(conn).status(tenancy_id)

            return await poll(ask, lambda found: found is None or found["state"] in FINISHED, wait)

    try:
        run(submit())
    except RequestRefused as refusal:
        if as_json:
            print(json.dumps({"error": str(refusal)}))
        raise fail(f"request refused: {refusal}") from None
    if wait <= 0:
        if as_json:
            print(json.dumps({"id": tenancy_id, "state": "offboarding"}))
        else:
            out.print(f"accepted: tenancy [bold]{tenancy_id}[/] is being offboarded")
            out.print(f"follow it with: tenancy status {tenancy_id} --wait 30")
        return

    found = run(follow())
    if found is None:  # it was there a moment ago: someone removed the record
        raise fail(f"no tenancy {tenancy_id}")
    summary = {
        key: found[key]
        for key in ("id", "state", "offboarded_at", "archive", "archive_sha256", "reason")
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    elif found["state"] == "offboarded":
        out.print(f"offboarded: tenancy [bold]{tenancy_id}[/]")
        out.print(f"  archive: {found['archive']}", highlight=False, soft_wrap=True)
        out.print(f"  sha256:  {found['archive_sha256']}", highlight=False, soft_wrap=True)
    if found["state"] == "failed":
        raise fail(f"offboarding failed at {found['failed_step']}: {found['reason']}", code=3)
    if found["state"] != "offboarded":
        err.print(
            f"still {found['state']} after {wait:g}s; follow it with: tenancy status {tenancy_id}"
        )
        raise typer.Exit(2)
