"""`tenancy brand`: change a live tenancy's brand, list its versions, roll back, preview."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import JsonFlag, err, fail, out, parse_tenancy_id, poll, run, settings
from cli.context import database, request
from cli.settings import CliSettings
from services.branding import MIGRATIONS as BRANDING_MIGRATIONS
from services.branding.brand_file import BrandFileError, load_brand_file
from services.branding.preview import render_preview
from services.branding.repository import BrandVersions, Request, Requests, Version
from services.branding.theme_folder import ThemeFolder
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from shared import db
from shared.assets import AssetStore
from shared.events import (
    Brand,
    BrandChangeRequested,
    BrandChangeRequestedData,
    BrandRollbackRequested,
    BrandRollbackRequestedData,
    CloudEvent,
)

brand_app = typer.Typer(help="A tenancy's brand: change it, list its versions, roll back, preview.")
WaitOption = Annotated[float, typer.Option(help="Seconds to wait for the branding worker.")]
SOURCE = "tenancy/cli"


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.add_typer(brand_app, name="brand")


def read_brand(path: Path, config: CliSettings) -> Brand:
    try:
        return load_brand_file(path, AssetStore(config.assets_dir))
    except BrandFileError as error:
        err.print(f"[bold red]brand file refused[/] {error.path}:")
        for problem in error.problems:
            err.print(f"  - {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


async def live_tenancy(pool: db.Pool, tenancy_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        found = await TenancyRepository(conn).status(tenancy_id)
    if found is None:
        raise fail(f"no tenancy {tenancy_id}")
    if found["state"] != "active":
        raise fail(
            f"tenancy {tenancy_id} is {found['state']}; only an active tenancy's brand changes"
        )
    return found


async def send_and_follow(
    config: CliSettings, event: CloudEvent, kind: str, span: str, wait: float
) -> Request | None:
    """Record the request, queue its event, then follow it until the worker answers."""
    async with database(config) as pool:
        await live_tenancy(pool, event.subject)
        attributes = {"tenancy.id": event.subject}
        async with request(config, pool, "branding", span, attributes, BRANDING_MIGRATIONS) as tx:
            await Requests(tx.conn).record(str(event.id), event.subject, kind)
            tx.emit(event)

        async def ask() -> Request | None:
            async with pool.acquire() as conn:
                return await Requests(conn).get(str(event.id), event.subject)

        return await poll(ask, lambda found: found is None or found.status != "requested", wait)


def report(config: CliSettings, tenancy_id: str, found: Request | None, as_json: bool) -> None:
    if found is None or found.status == "requested":
        if as_json:
            print(json.dumps({"id": found.id if found else None, "status": "requested"}))
        else:
            out.print("accepted: the branding worker has not answered yet")
            out.print(f"see it later with: tenancy brand history {tenancy_id}")
        return
    if as_json:
        print(
            json.dumps(
                {
                    "id": found.id,
                    "status": found.status,
                    "version": found.version,
                    "problems": found.problems,
                },
                indent=2,
            )
        )
    elif found.status == "refused":
        err.print("[bold red]refused[/] by the branding worker:")
        for problem in found.problems:
            err.print(f"  - {problem}", highlight=False, soft_wrap=True)
    elif found.status == "unchanged":
        out.print(f"unchanged: version {found.version} is current")
    else:
        css = ThemeFolder(config.themes_dir).root / tenancy_id / f"v{found.version}" / "theme.css"
        out.print(f"applied: version [bold]{found.version}[/] is current")
        out.print(f"  css: {css}", highlight=False, soft_wrap=True)
    if found.status == "refused":
        raise typer.Exit(1)


@brand_app.command("set")
def brand_set(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    file: Annotated[Path, typer.Option("--file", help="The council's brand as YAML.")],
    wait: WaitOption = 30.0,
    as_json: JsonFlag = False,
) -> None:
    """Make a new theme version from a brand file and make it current."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()
    brand = read_brand(file, config)
    data = BrandChangeRequestedData(brand=brand)
    event = BrandChangeRequested.new(source=SOURCE, subject=tenancy_id, data=data)
    found = run(send_and_follow(config, event, "change", "tenancy brand set", wait))
    report(config, tenancy_id, found, as_json)


@brand_app.command("rollback")
def brand_rollback(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    version: Annotated[int, typer.Argument(help="The earlier version to make current again.")],
    wait: WaitOption = 30.0,
    as_json: JsonFlag = False,
) -> None:
    """Make an earlier theme version current again."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    if version < 1:
        raise fail("version: must be 1 or more")
    config = settings()
    versions = run(history_of(config, tenancy_id))
    if version not in {v.version for v in versions}:
        have = f"versions 1 to {versions[-1].version}" if versions else "no versions yet"
        raise fail(f"version: tenancy {tenancy_id} has no version {version} ({have})")
    data = BrandRollbackRequestedData(version=version)
    event = BrandRollbackRequested.new(source=SOURCE, subject=tenancy_id, data=data)
    found = run(send_and_follow(config, event, "rollback", "tenancy brand rollback", wait))
    report(config, tenancy_id, found, as_json)


async def history_of(config: CliSettings, tenancy_id: str) -> list[Version]:
    async with database(config) as pool:
        await db.migrate(pool, "branding", BRANDING_MIGRATIONS)
        async with pool.acquire() as conn:
            return await BrandVersions(conn).history(tenancy_id)


@brand_app.command("history")
def brand_history(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    as_json: JsonFlag = False,
) -> None:
    """List a tenancy's theme versions, the current one marked."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()
    versions = run(history_of(config, tenancy_id))
    themes = ThemeFolder(config.themes_dir)
    rows = [
        {
            "version": v.version,
            "current": v.current,
            "created_at": v.created_at.isoformat(),
            "content_hash": v.content_hash,
            "colours": v.brand["colours"],
            "domain": v.brand.get("domain"),
            "css": str(themes.resolve(v.paths.css)),
        }
        for v in versions
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        raise fail(f"tenancy {tenancy_id} has no theme versions")
    table = Table(
        "version",
        "current",
        "created",
        "primary",
        "secondary",
        "link",
        "domain",
        title=f"Theme versions of {tenancy_id}",
    )
    for row in rows:
        colours = row["colours"]
        table.add_row(
            str(row["version"]),
            "✓" if row["current"] else "",
            row["created_at"][:19],
            colours["primary"],
            colours["secondary"],
            colours["link"],
            row["domain"] or "",
        )
    out.print(table)


@brand_app.command("preview")
def brand_preview(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    version: Annotated[
        int | None, typer.Option(help="The version to show; the current one if not given.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Where to write the page; beside the theme if not given.")
    ] = None,
) -> None:
    """Write an HTML page showing the theme as a resident would see it; prints its path."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()

    async def fetch() -> tuple[Version | None, str]:
        async with database(config) as pool:
            await db.migrate(pool, "branding", BRANDING_MIGRATIONS)
            async with pool.acquire() as conn:
                versions = BrandVersions(conn)
                chosen = await (
                    versions.current(tenancy_id)
                    if version is None
                    else versions.get(tenancy_id, version)
                )
                found = await TenancyRepository(conn).status(tenancy_id)
                manifest = await CatalogueRepository(conn).get(found["service"]) if found else None
        return chosen, manifest.name if manifest else "Your council service"

    chosen, service_name = run(fetch())
    if chosen is None:
        which = f"version {version}" if version is not None else "a current theme"
        raise fail(f"tenancy {tenancy_id} has no {which}")
    themes = ThemeFolder(config.themes_dir)
    css = themes.resolve(chosen.paths.css)
    tokens_file = themes.resolve(chosen.paths.tokens)
    if not tokens_file.is_file():
        raise fail(f"the theme's files are missing from {tokens_file.parent}")
    tokens = json.loads(tokens_file.read_text(encoding="utf-8"))
    logo = themes.resolve(chosen.paths.logo) if chosen.paths.logo else None
    page = output or css.parent / "preview.html"
    if output is None:  # beside the theme: relative links keep the folder movable
        css_href, logo_href = css.name, logo.name if logo else None
    else:
        css_href, logo_href = css.resolve().as_uri(), logo.resolve().as_uri() if logo else None
    html = render_preview(tokens, css_href=css_href, logo_href=logo_href, service_name=service_name)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(html, encoding="utf-8")
    out.print(f"preview of version {chosen.version}: {page}", highlight=False, soft_wrap=True)
