"""`tenancy tokens`: API tokens with a role and a scope; `tenancy api`: call the API with one."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from api.tokens import MIGRATIONS, Role, check_scope, create, revoke
from cli.common import JsonFlag, fail, out, run, settings
from cli.context import database
from shared import audit, db
from shared.identifiers import GssCode, ServiceId

tokens_app = typer.Typer(help="API tokens: made here, shown once, kept only as a hash.")


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.add_typer(tokens_app, name="tokens")
    app.command("api")(call_api)


@tokens_app.command("create")
def tokens_create(
    role: Annotated[
        Role,
        typer.Option(
            help="operator, council-admin, finance, auditor, or service (a shared service's"
            " software: its tenancies' credentials and usage, nothing else)."
        ),
    ],
    council: Annotated[
        str | None,
        typer.Option(help="GSS code: the council a council-admin acts for, or whose services."),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="Only this service (a service token needs it).")
    ] = None,
    label: Annotated[str, typer.Option(help="What the token is for, for the list.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Make a token; it is printed once and cannot be shown again."""
    config = settings()
    from pydantic import TypeAdapter, ValidationError

    if council is not None:
        try:
            TypeAdapter(GssCode).validate_python(council)
        except ValidationError:
            raise fail(f"council: {council!r} is not a GSS code (e.g. E09000012)") from None
    if service is not None:
        try:
            TypeAdapter(ServiceId).validate_python(service)
        except ValidationError:
            raise fail(f"service: {service!r} is not a service id (e.g. bin-collections)") from None
    try:
        check_scope(role, council, service)
    except ValueError as error:
        raise fail(str(error)) from None

    async def make() -> tuple[str, str]:
        async with database(config) as pool:
            await db.migrate(pool, "api", MIGRATIONS)
            await db.migrate(pool, "audit", audit.MIGRATIONS)
            async with pool.acquire() as conn, conn.transaction():
                token, who = await create(conn, role, council, service, label)
                await audit.append(
                    conn,
                    actor=f"cli:{getpass.getuser()}",
                    action="token.create",
                    detail={
                        "token": who.token_id,
                        "role": role.value,
                        "council": council,
                        "service": service,
                    },
                )
                return token, who.token_id

    try:
        token, token_id = run(make())
    except ValueError as error:
        raise fail(str(error)) from None
    if as_json:
        print(json.dumps({"token": token, "id": token_id, "role": role.value}))
        return
    out.print(f"token [bold]{token_id}[/] ({role.value}); it will not be shown again:")
    print(token)


@tokens_app.command("list")
def tokens_list(as_json: JsonFlag = False) -> None:
    """Every token, never the secret: id, role, scope, when made and revoked."""
    config = settings()

    async def fetch() -> list[dict[str, Any]]:
        async with database(config) as pool:
            await db.migrate(pool, "api", MIGRATIONS)
            rows = await pool.fetch(
                "SELECT id::text, role, council, service, label, created_at, revoked_at"
                " FROM api.tokens ORDER BY created_at"
            )
        return [
            {
                **dict(r),
                "created_at": r["created_at"].isoformat(),
                "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
            }
            for r in rows
        ]

    rows = run(fetch())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "role", "council", "service", "label", "created", "revoked")
    for r in rows:
        table.add_row(
            r["id"],
            r["role"],
            r["council"] or "",
            r["service"] or "",
            r["label"],
            r["created_at"][:19],
            (r["revoked_at"] or "")[:19],
        )
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Stop a token working at once."""
    config = settings()

    async def drop() -> bool:
        async with database(config) as pool:
            await db.migrate(pool, "api", MIGRATIONS)
            await db.migrate(pool, "audit", audit.MIGRATIONS)
            async with pool.acquire() as conn, conn.transaction():
                done = await revoke(conn, token_id)
                if done:
                    await audit.append(
                        conn,
                        actor=f"cli:{getpass.getuser()}",
                        action="token.revoke",
                        detail={"token": token_id},
                    )
                return done

    try:
        revoked = run(drop())
    except Exception as error:  # a malformed id is PostgreSQL's to refuse
        raise fail(f"token: {error}") from None
    if not revoked:
        raise fail(f"no live token {token_id}")
    out.print(f"revoked {token_id}")


def call_api(
    method: Annotated[str, typer.Argument(help="GET, POST, ...")],
    path: Annotated[str, typer.Argument(help="e.g. /tenancies or /services")],
    data: Annotated[str | None, typer.Option(help="A JSON body.")] = None,
) -> None:
    """Call the operator API with the token in TENANCY_TOKEN; prints the JSON answer."""
    config = settings()
    if not config.api_url:
        raise fail("no API address: start the stack (make run) or set API_URL")
    if config.tenancy_token is None:
        raise fail("set TENANCY_TOKEN to a token from `tenancy tokens create`")
    headers = {"Authorization": f"Bearer {config.tenancy_token.get_secret_value()}"}
    try:
        body = json.loads(data) if data else None
    except json.JSONDecodeError as error:
        raise fail(f"--data: not JSON ({error})") from None
    try:
        answer = httpx.request(
            method.upper(),
            config.api_url.rstrip("/") + path,
            json=body,
            headers=headers,
            timeout=30,
        )
    except httpx.HTTPError as error:
        raise fail(f"cannot reach the API at {config.api_url}: {error}") from None
    try:
        print(json.dumps(answer.json(), indent=2))
    except ValueError:
        print(answer.text)
    if answer.status_code >= 400:
        raise typer.Exit(1)
