"""``tenancy``: the operator's command line. It only records requests, publishes events and
reads state; the workers do the work."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from opentelemetry import trace
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from api.reorganised import reorganisation_of
from cli import audit as audit_commands
from cli import branding, credentials, dlq, metering, migrations, offboarding, reorganise, tokens
from cli import trace as trace_command
from cli.common import (
    TERMINAL_STATES,
    JsonFlag,
    err,
    fail,
    out,
    parse_tenancy_id,
    poll,
    run,
    settings,
)
from cli.context import database, request
from services.branding.brand_file import BrandFileError, load_brand_file
from services.onboarding.councils import CouncilRegister, ReferenceDataMissing
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from services.onboarding.service import Person, RequestRefused, accept_request
from services.onboarding.service import retry as retry_tenancy
from shared import audit
from shared.assets import AssetStore
from shared.catalogue import ManifestError, load_catalogue
from shared.events import Contact, PurchaseOrder

app = typer.Typer(help="Provision UK councils into shared digital services.", no_args_is_help=True)
services_app = typer.Typer(help="The catalogue of shared services.", invoke_without_command=True)
app.add_typer(services_app, name="services")
FEATURES = (
    offboarding,
    migrations,
    credentials,
    branding,
    metering,
    audit_commands,
    tokens,
    dlq,
    trace_command,
    reorganise,
)
for feature in FEATURES:
    feature.register(app)


@services_app.callback()
def services(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the shared services councils can join."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings()

    async def fetch() -> list[dict[str, Any]]:
        async with database(config) as pool, pool.acquire() as conn:
            return [m.model_dump(mode="json") for m in await CatalogueRepository(conn).list()]

    manifests = run(fetch())
    if as_json:
        print(json.dumps(manifests, indent=2))
        return
    councils = CouncilRegister.from_csv(config.councils_csv)
    table = Table(
        "id", "name", "owner", "governance", "isolation", "agreement", "meters", title="Services"
    )
    for m in manifests:
        meters = ", ".join(meter["key"] for meter in m["meters"])
        owner = councils.name_of(m["owner_council"])
        agreement = f"v{m['agreement']['version']}: {m['agreement']['title']}"
        row = (m["id"], m["name"], owner, m["governance"], m["isolation"], agreement, meters)
        table.add_row(*row)
    out.print(table)


@services_app.command("load")
def services_load(
    path: Annotated[Path, typer.Argument(help="A manifest YAML file or a folder of them.")],
) -> None:
    """Add or update services in the catalogue from their manifests."""
    config = settings()
    try:
        manifests = load_catalogue(path)
    except ManifestError as error:
        err.print(f"[bold red]invalid manifest[/] {error.path}:")
        for problem in error.problems:
            err.print(f"  - {problem}", highlight=False)
        raise typer.Exit(1) from None

    async def store() -> None:
        async with database(config) as pool, pool.acquire() as conn, conn.transaction():
            for manifest in manifests:
                await CatalogueRepository(conn).upsert(manifest)
                await audit.append(
                    conn,
                    actor=f"cli:{getpass.getuser()}",
                    action="service.register",
                    detail={"service": manifest.id, "agreement": manifest.agreement.version},
                )

    run(store())
    for manifest in manifests:
        out.print(f"loaded [bold]{manifest.id}[/] ({manifest.name})")


@app.command()
def onboard(
    council: Annotated[str, typer.Option(help="The council's GSS code, e.g. E09000012.")],
    service: Annotated[str, typer.Option(help="The id of a service in the catalogue.")],
    brand_file: Annotated[
        Path | None, typer.Option("--brand-file", help="The council's brand as YAML.")
    ] = None,
    contact_name: Annotated[str | None, typer.Option(help="Who to contact.")] = None,
    contact_email: Annotated[str | None, typer.Option(help="Their email address.")] = None,
    purchase_order: Annotated[
        str | None, typer.Option(help="The council's purchase order reference for its invoices.")
    ] = None,
    accepted_by: Annotated[
        str | None,
        typer.Option(help="Who accepts the service's agreement for the council (default: you)."),
    ] = None,
    accepted_role: Annotated[
        str | None, typer.Option(help="Their role, e.g. 'Head of Digital'.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask for a council to join a shared service; prints the new tenancy id."""
    config = settings()
    try:
        register = CouncilRegister.from_csv(config.councils_csv)
    except ReferenceDataMissing as missing:
        raise fail(str(missing)) from None
    contact = None
    if contact_name or contact_email:
        try:
            contact = Contact(name=contact_name or contact_email or "", email=contact_email or "")
        except ValidationError as error:
            raise fail(f"contact: {error.errors()[0]['msg']}") from None
    if purchase_order is not None:
        try:
            TypeAdapter(PurchaseOrder).validate_python(purchase_order)
        except ValidationError as error:
            raise fail(f"purchase order: {error.errors()[0]['msg']}") from None
    brand = None
    if brand_file is not None:
        try:
            brand = load_brand_file(brand_file, AssetStore(config.assets_dir))
        except BrandFileError as error:
            err.print(f"[bold red]brand file refused[/] {error.path}:")
            for problem in error.problems:
                err.print(f"  - {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    async def submit() -> str:
        attributes = {"council": council, "service": service}
        async with (
            database(config) as pool,
            request(config, pool, "onboarding", "tenancy onboard", attributes) as tx,
        ):
            tenancy_id = await accept_request(
                tx,
                register,
                council_code=council,
                service_id=service,
                contact=contact,
                brand=brand,
                source="tenancy/cli",
                purchase_order=purchase_order,
                accepted_by=acceptor(accepted_by, accepted_role),
            )
            trace.get_current_span().set_attribute("tenancy.id", tenancy_id)
        return tenancy_id

    try:
        tenancy_id = run(submit())
    except RequestRefused as refusal:
        if as_json:
            print(json.dumps({"error": str(refusal)}))
        raise fail(f"request refused: {refusal}") from None
    if as_json:
        print(json.dumps({"id": tenancy_id, "state": "requested"}))
    else:
        out.print(f"accepted: tenancy [bold]{tenancy_id}[/]")
        out.print(f"follow it with: tenancy status {tenancy_id} --wait 30")


def acceptor(name: str | None, role: str | None) -> Person:
    """Whoever runs the command accepts the current agreement on the council's behalf, unless
    the person who accepted is named."""
    if name is None:
        return Person(name=getpass.getuser(), role=role or "operator, on the council's behalf")
    return Person(name=name, role=role or "council representative")


@app.command()
def retry(
    tenancy_id: Annotated[str, typer.Argument(help="The id of a failed tenancy.")],
) -> None:
    """Provision a failed tenancy again: failed steps run again, finished ones stay finished."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()
    register = CouncilRegister.from_csv(config.councils_csv)

    async def submit() -> None:
        async with (
            database(config) as pool,
            request(config, pool, "onboarding", "tenancy retry", {"tenancy.id": tenancy_id}) as tx,
        ):
            await retry_tenancy(tx, register, tenancy_id)

    try:
        run(submit())
    except RequestRefused as refusal:
        raise fail(f"request refused: {refusal}") from None
    out.print(f"retrying: tenancy [bold]{tenancy_id}[/]")
    out.print(f"follow it with: tenancy status {tenancy_id} --wait 30")


@app.command()
def status(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the tenancy to finish provisioning.")
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Show a tenancy's state and each provisioning step with its time."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()

    async def fetch() -> dict[str, Any] | None:
        async with database(config) as pool:

            async def ask() -> dict[str, Any] | None:
                async with pool.acquire() as conn:
                    found = await TenancyRepository(conn).status(tenancy_id)
                    if found is not None:
                        found.update(await reorganisation_of(conn, tenancy_id))
                    return found

            return await poll(
                ask, lambda found: found is None or found["state"] in TERMINAL_STATES, wait
            )

    found = run(fetch())
    if found is None:
        raise fail(f"no tenancy {tenancy_id}")
    if found["branding"]:
        # The worker records paths relative to the themes folder; show where they are here.
        for key in ("css", "tokens", "logo"):
            if found["branding"][key]:
                found["branding"][key] = str(config.themes_dir / found["branding"][key])
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        print_status(found)
    if found["state"] == "failed":
        raise typer.Exit(3)


def print_status(found: dict[str, Any]) -> None:
    colour = {"active": "green", "failed": "red", "reorganised": "magenta"}.get(
        found["state"], "yellow"
    )
    out.print(
        f"tenancy [bold]{found['id']}[/]: {found['council_name']} ({found['council']}) in "
        f"[bold]{found['service']}[/] is [bold {colour}]{found['state']}[/]"
    )
    if found["reason"]:
        out.print(f"  failed at {found['failed_step']}: {found['reason']}", highlight=False)
    table = Table("step", "status", "at")
    table.add_row("requested", "done", found["requested_at"])
    if found["registered_at"]:
        table.add_row("registered", "done", found["registered_at"])
    for step in found["steps"]:
        table.add_row(step["step"], step["status"], step["at"])
    if found["active_at"]:
        table.add_row("active", "done", found["active_at"])
    if found.get("reorganised_at"):
        table.add_row("reorganised", "done", found["reorganised_at"])
    out.print(table)
    if into := found.get("reorganised_into"):
        vesting = f", {into['vesting']}" if into.get("vesting") else ""
        out.print(
            f"reorganised into tenancy {into['id']}: {into['council_name']} ({into['council']}),"
            f" which holds its data and is billed from vesting day{vesting}",
            highlight=False,
        )
        if found.get("archive"):  # retired: its frozen copy was exported, then dropped
            out.print(
                f"retired: its frozen data were exported to {found['archive']}"
                f" (sha256 {found['archive_sha256']}), then dropped with its role",
                highlight=False,
                soft_wrap=True,
            )
    if theme := found["branding"]:
        out.print(f"theme version {theme['version']}: {theme['css']}", highlight=False)
        if domain := theme["domain"]:
            out.print(
                f"domain {domain['name']} is {domain['status']}: publish a TXT record "
                f"{domain['txt_record']} with the value {domain['txt_value']}",
                highlight=False,
            )


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option(help="Write to this file (.json or .yaml).")
    ] = None,
) -> None:
    """Write the AsyncAPI document generated from the four workers."""
    from shared.asyncapi import document, to_json, to_yaml

    doc = document()
    text = to_yaml(doc) if output and output.suffix in {".yaml", ".yml"} else to_json(doc)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")


if __name__ == "__main__":
    app()
