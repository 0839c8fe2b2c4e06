"""`tenancy audit`: check the audit trail's hash chain and list its entries."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import JsonFlag, err, fail, out, parse_tenancy_id, run, settings
from cli.context import database
from cli.settings import CliSettings
from shared import audit, db

audit_app = typer.Typer(help="The tamper-evident audit trail: verify it, list its entries.")


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.add_typer(audit_app, name="audit")


def parse_anchor(value: str) -> tuple[int, str]:
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or len(digest) != 64 or digest.strip("0123456789abcdefABCDEF"):
        raise fail(f"anchor: {value!r} is not SEQ:HASH (a head printed by verify --json)")
    return int(seq), digest.lower()


async def _verify(config: CliSettings, anchor: tuple[int, str] | None) -> audit.Verification:
    async with database(config) as pool:
        # The audit schema may not exist yet if nothing has been recorded.
        await db.migrate(pool, "audit", audit.MIGRATIONS)
        async with pool.acquire() as conn:
            return await audit.verify(conn, anchor=anchor)


@audit_app.command("verify")
def verify(
    anchor: Annotated[
        str | None,
        typer.Option(help="A head published earlier, as SEQ:HASH: catches cut-off entries."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every entry's hash and check the chain; name the first broken entry."""
    anchored = parse_anchor(anchor) if anchor is not None else None
    config = settings()
    result: audit.Verification = run(_verify(config, anchored))
    seq, digest = result.head
    if as_json:
        summary = {
            "ok": result.ok,
            "checked": result.checked,
            "broken_seq": result.broken_seq,
            "reason": result.reason,
            "head": {"seq": seq, "hash": digest},
        }
        print(json.dumps(summary, indent=2))
    elif result.ok:
        out.print(
            f"audit trail intact: {result.checked} entries, head {seq} {digest[:16]}",
            highlight=False,
        )
    else:
        err.print(
            f"[bold red]audit trail broken[/] at entry {result.broken_seq}: {result.reason}",
            highlight=False,
            soft_wrap=True,
        )
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("list")
def list_entries(
    tenancy: Annotated[
        str | None, typer.Option("--tenancy", help="Only this tenancy's entries.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.", min=1)] = 50,
    since: Annotated[
        int | None,
        typer.Option(help="Entries after this seq, oldest first (default: the latest ones)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List audit entries: who did what to which tenancy, when, in which trace."""
    tenancy_id = parse_tenancy_id(tenancy) if tenancy is not None else None
    config = settings()

    async def fetch() -> list[audit.Entry]:
        async with database(config) as pool:
            await db.migrate(pool, "audit", audit.MIGRATIONS)
            async with pool.acquire() as conn:
                return await audit.entries(
                    conn,
                    since_seq=since or 0,
                    limit=limit,
                    tenancy_id=tenancy_id,
                    latest=since is None,
                )

    found: list[audit.Entry] = run(fetch())
    if as_json:
        rows = [e.as_json() for e in found]
        print(json.dumps(rows, indent=2))
        return
    table = Table("seq", "at", "actor", "action", "tenancy", "trace", title="Audit trail")
    for e in found:
        at = e.at.isoformat(sep=" ", timespec="seconds")
        table.add_row(str(e.seq), at, e.actor, e.action, e.tenancy_id or "", e.trace_id or "")
    out.print(table)
