"""`tenancy credentials`: a tenancy's connection string, and rotation (issue 3, item 2).

The connection string holds the tenancy's password: it is printed for the operator who asked
(on stdout only, so ``psql "$(tenancy credentials ID)"`` works) and never logged. A rotation is
a request to the isolation worker, which holds the only write access to the secret; this
command waits until the ledger says it is done, then prints the new connection string.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.common import JsonFlag, err, fail, parse_tenancy_id, poll, run, settings
from cli.context import database, request, tenant_databases
from cli.migrations import NotFound
from cli.settings import CliSettings
from services.isolation import MIGRATIONS
from services.isolation.credentials import NoCredentials, connection_string
from services.isolation.rotation import last_rotated
from shared import db
from shared.events import CredentialsRotationRequested, CredentialsRotationRequestedData

SOURCE = "tenancy/cli"


class NotRotated(RuntimeError):
    pass


async def service_of(pool: db.Pool, tenancy_id: str) -> str:
    service_id: str | None = await pool.fetchval(
        "SELECT service_id FROM onboarding.tenancies WHERE id = $1", tenancy_id
    )
    if service_id is None:
        raise NotFound(f"no tenancy {tenancy_id}")
    return service_id


async def fetch(config: CliSettings, tenancy_id: str) -> str:
    async with database(config) as pool:
        service_id = await service_of(pool, tenancy_id)
    return await connection_string(
        config.tenant_server_url, config.database_url, service_id, tenancy_id
    )


async def rotate(config: CliSettings, tenancy_id: str, wait: float) -> str:
    databases = tenant_databases(config)
    async with database(config) as pool:
        service_id = await service_of(pool, tenancy_id)
        # Refuses a tenancy with no live login before asking anything of the worker.
        before = await last_rotated(databases, service_id, tenancy_id)
        attributes = {"tenancy.id": tenancy_id}
        async with request(
            config, pool, "isolation", "tenancy credentials rotate", attributes, MIGRATIONS
        ) as tx:
            data = CredentialsRotationRequestedData(service_id=service_id)
            tx.emit(CredentialsRotationRequested.new(source=SOURCE, subject=tenancy_id, data=data))
    rotated = await poll(
        lambda: last_rotated(databases, service_id, tenancy_id), lambda at: at != before, wait
    )
    if rotated == before:
        raise NotRotated(
            f"rotation requested but not done within {wait:g} s (is the isolation worker"
            " running?); it stays queued, and the current password works until it is done"
        )
    return await connection_string(
        config.tenant_server_url, config.database_url, service_id, tenancy_id
    )


def credentials(
    tenancy_id: Annotated[str, typer.Argument(help="The tenancy id printed by onboard.")],
    rotate_: Annotated[
        bool,
        typer.Option("--rotate", help="Issue a new password; the old one stops working."),
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a rotation.")] = 30.0,
    as_json: JsonFlag = False,
) -> None:
    """Print the connection string of a tenancy's own login (it contains the password)."""
    tenancy_id = parse_tenancy_id(tenancy_id)
    config = settings()
    try:
        dsn: str = run(rotate(config, tenancy_id, wait) if rotate_ else fetch(config, tenancy_id))
    except (NotFound, NoCredentials, NotRotated) as error:
        raise fail(str(error)) from None
    if rotate_:
        err.print("rotated: the previous password no longer opens a session")
    # Plain print: a console would wrap a long connection string across lines.
    print(json.dumps({"dsn": dsn}) if as_json else dsn)


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.command("credentials")(credentials)
