"""`tenancy migrate`: roll a service's migrations out to every live tenancy, and report drift.

A rollout is one ``MigrationRequested`` per tenancy, recorded in isolation's outbox under one
run id; the isolation worker migrates each tenancy on its own and records the result, which
this command follows until every tenancy has one.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import JsonFlag, err, fail, out, run, settings
from cli.context import database, request, tenant_databases
from cli.settings import CliSettings
from services.isolation import MIGRATIONS as ISOLATION_MIGRATIONS
from services.isolation.rollout import versions
from services.onboarding.repository import CatalogueRepository
from shared import db
from shared.catalogue import ServiceManifest
from shared.events import MigrationRequested, MigrationRequestedData
from shared.logging import get_logger

log = get_logger(__name__)
SOURCE = "tenancy/cli"
FAILED_EXIT = 3  # as ``tenancy status`` for a failed tenancy: the command ran, a tenancy did not


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class LiveTenancy:
    id: str
    council: str
    council_name: str


async def live_tenancies(conn: db.Connection, service_id: str) -> list[LiveTenancy]:
    """Tenancies that finished onboarding: one still provisioning gets the manifest its
    registration carried, and a failed or offboarded one has nothing to migrate."""
    rows = await conn.fetch(
        "SELECT id::text, council_gss, council_name FROM onboarding.tenancies"
        " WHERE service_id = $1 AND state = 'active' ORDER BY council_name, id",
        service_id,
    )
    return [LiveTenancy(r["id"], r["council_gss"], r["council_name"]) for r in rows]


async def manifest_of(conn: db.Connection, service_id: str) -> ServiceManifest:
    manifest = await CatalogueRepository(conn).get(service_id)
    if manifest is None:
        raise NotFound(
            f"no service {service_id!r} in the catalogue (see `tenancy services`;"
            " load a manifest with `tenancy services load`)"
        )
    return manifest


# -- the rollout ---------------------------------------------------------------------------


async def rollout(config: CliSettings, service_id: str, wait: float) -> list[dict[str, Any]]:
    async with database(config) as pool:
        async with pool.acquire() as conn:
            manifest = await manifest_of(conn, service_id)
            tenancies = await live_tenancies(conn, service_id)
        if not tenancies:
            return []
        run_id = uuid.uuid4()
        # One trace for the whole rollout: every tenancy's migration continues it.
        attributes = {"service": service_id, "run_id": str(run_id)}
        async with request(
            config, pool, "isolation", "tenancy migrate", attributes, ISOLATION_MIGRATIONS
        ) as tx:
            data = MigrationRequestedData(run_id=run_id, service=manifest)
            for tenancy in tenancies:
                tx.emit(MigrationRequested.new(source=SOURCE, subject=tenancy.id, data=data))
        found = await follow(pool, service_id, run_id, len(tenancies), wait)
    return [result_of(tenancy, found.get(tenancy.id), wait) for tenancy in tenancies]


async def follow(
    pool: db.Pool, service_id: str, run_id: uuid.UUID, expected: int, wait: float
) -> dict[str, dict[str, Any]]:
    """Poll the run's results until every tenancy has one or ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # On stderr, so that stdout holds only the results (and stays valid JSON with --json).
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(f"migrating {service_id}", total=expected)
        while True:
            rows = await pool.fetch(
                "SELECT tenancy_id::text, ok, version, error FROM isolation.migration_results"
                " WHERE run_id = $1",
                run_id,
            )
            progress.update(task, completed=len(rows))
            if len(rows) >= expected or time.monotonic() >= deadline:
                return {r["tenancy_id"]: dict(r) for r in rows}
            await asyncio.sleep(0.2)


def result_of(tenancy: LiveTenancy, row: dict[str, Any] | None, wait: float) -> dict[str, Any]:
    if row is None:
        # Not lost: the request is recorded and will still be carried out.
        row = {
            "ok": False,
            "version": None,
            "error": f"no result within {wait:g} s; see `tenancy migrate --status` later",
        }
    return {
        "tenancy": tenancy.id,
        "council": tenancy.council,
        "council_name": tenancy.council_name,
        "ok": row["ok"],
        "version": row["version"],
        "error": row["error"],
    }


def print_results(service_id: str, results: list[dict[str, Any]]) -> None:
    table = Table("tenancy", "council", "result", "version", "error", title=service_id)
    for r in results:
        outcome = "[green]ok[/]" if r["ok"] else "[bold red]failed[/]"
        version = "" if r["version"] is None else str(r["version"])
        table.add_row(r["tenancy"], r["council_name"], outcome, version, r["error"] or "")
    out.print(table)
    failed = sum(not r["ok"] for r in results)
    out.print(f"{len(results) - failed} migrated, {failed} failed")


# -- the drift report ----------------------------------------------------------------------


async def drift(config: CliSettings, service_id: str) -> list[dict[str, Any]]:
    async with database(config) as pool, pool.acquire() as conn:
        manifest = await manifest_of(conn, service_id)
        tenancies = await live_tenancies(conn, service_id)
    found = await versions(tenant_databases(config), service_id)
    latest = max((m.version for m in manifest.migrations), default=0)
    return [
        {
            "tenancy": tenancy.id,
            "council": tenancy.council,
            "council_name": tenancy.council_name,
            "version": found.get(tenancy.id),
            "latest": latest,
            "status": drift_of(found.get(tenancy.id), latest),
        }
        for tenancy in tenancies
    ]


def drift_of(version: int | None, latest: int) -> str:
    if version is None:
        return "not isolated"
    if version < latest:
        return "behind"
    # Ahead: the catalogue's manifest lost migrations a tenancy already has.
    return "current" if version == latest else "ahead"


def print_drift(service_id: str, report: list[dict[str, Any]]) -> None:
    table = Table("tenancy", "council", "version", "latest", "status", title=service_id)
    colours = {"current": "green", "behind": "yellow"}
    for r in report:
        version = "" if r["version"] is None else str(r["version"])
        status = f"[{colours.get(r['status'], 'red')}]{r['status']}[/]"
        table.add_row(r["tenancy"], r["council_name"], version, str(r["latest"]), status)
    out.print(table)
    current = sum(r["status"] == "current" for r in report)
    out.print(f"{current} of {len(report)} tenancies current")


# -- the command ---------------------------------------------------------------------------


def migrate(
    service: Annotated[str, typer.Argument(help="The id of a service in the catalogue.")],
    status: Annotated[
        bool,
        typer.Option("--status", help="Only report which tenancy is on which version."),
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for every tenancy's result.")
    ] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Bring every live tenancy of a service up to its manifest's latest migration.

    Load the new manifest first (`tenancy services load`). Each tenancy is migrated on its own:
    one failing leaves the others migrated. Exits 3 if any tenancy failed or gave no result.
    """
    config = settings()
    try:
        if status:
            report = run(drift(config, service))
        else:
            results = run(rollout(config, service, wait))
    except NotFound as missing:
        raise fail(str(missing)) from None
    if status:
        if as_json:
            print(json.dumps(report, indent=2))
        elif not report:
            out.print(f"{service} has no live tenancies")
        else:
            print_drift(service, report)
        return
    if as_json:
        print(json.dumps(results, indent=2))
    elif not results:
        out.print(f"{service} has no live tenancies: nothing to migrate")
    else:
        print_results(service, results)
    if any(not r["ok"] for r in results):
        raise typer.Exit(FAILED_EXIT)


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.command("migrate")(migrate)
