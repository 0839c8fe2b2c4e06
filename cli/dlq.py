"""`tenancy dlq list` and `tenancy dlq replay`: see the events workers could not process, fix the
cause, then send them back to the topic they came from.

Replaying is safe to repeat: workers recognise an event they have already handled by its id
(their inbox, or the usage ledger for usage events), so a replayed event that had in fact been
processed changes nothing. A replay is recorded in ``<worker>.dead_letter_replays`` and in the
audit log, in the transaction that claims it.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli.common import JsonFlag, fail, out, run, settings
from cli.context import Unreachable, database
from cli.settings import CliSettings
from shared import audit, db
from shared.cloudevents import CONTENT_TYPE, STRUCTURED_CONTENT_TYPE, is_binary
from shared.dead_letter_headers import DeadLetterHeaders
from shared.identifiers import quote_ident

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

WORKERS = ("onboarding", "isolation", "branding", "metering")
# Headers DeadLetters.record_raw adds on the dlq.<worker> topic. The table keeps the record's own
# headers, but a record copied back from that topic carries them too; a replayed event must look
# like the original, or a second failure would carry the first one's reason.
DEAD_LETTER_HEADERS = DeadLetterHeaders.names()

dlq_app = typer.Typer(help="Dead letters: events a worker could not process, and their replay.")

WorkerOption = Annotated[
    str | None, typer.Option("--worker", help=f"Only this worker's: {', '.join(WORKERS)}.")
]
TopicOption = Annotated[
    str | None,
    typer.Option("--topic", help="Only those consumed from this topic, e.g. usage.recorded."),
]
TenancyOption = Annotated[
    str | None, typer.Option("--tenancy", help="Only those keyed by this tenancy id.")
]


def register(app: typer.Typer) -> None:
    """Add this feature's commands to the ``tenancy`` application."""
    app.add_typer(dlq_app, name="dlq")


@dataclass
class Letter:
    id: str
    worker: str
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: bytes
    headers: dict[str, str]
    error_type: str
    error: str
    dead_lettered_at: datetime
    replayed_at: datetime | None
    replayed_by: str | None

    def as_json(self) -> dict[str, Any]:
        try:
            payload, encoding = self.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(self.payload).decode("ascii"), "base64"
        return {
            "id": self.id,
            "worker": self.worker,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "payload": payload,
            "payload_encoding": encoding,
            "headers": self.headers,
            "error_type": self.error_type,
            "error": self.error,
            "dead_lettered_at": self.dead_lettered_at.isoformat(),
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
            "replayed_by": self.replayed_by,
        }


@dataclass(frozen=True)
class Filters:
    workers: tuple[str, ...]
    topics: list[str] | None  # as given and with the topic prefix: either may be typed
    key: str | None


def filters(
    config: CliSettings, worker: str | None, topic: str | None, tenancy: str | None
) -> Filters:
    if worker is not None and worker not in WORKERS:
        raise fail(f"worker: {worker!r} is not one of {', '.join(WORKERS)}")
    key = None
    if tenancy is not None:
        try:
            key = str(uuid.UUID(tenancy))
        except ValueError:
            raise fail(f"tenancy id: {tenancy!r} is not a tenancy id (a UUID)") from None
    topics = None if topic is None else sorted({topic, config.topic(topic)})
    return Filters((worker,) if worker else WORKERS, topics, key)


def replays_ddl(worker: str) -> str:
    # Kept beside the plumbing's dead_letters rather than in it: the plumbing is shared by every
    # worker and versioned with them, and only this command writes replays.
    schema = quote_ident(worker)
    return (
        f"CREATE TABLE IF NOT EXISTS {schema}.dead_letter_replays ("
        " dead_letter_id uuid PRIMARY KEY,"
        " replayed_at timestamptz NOT NULL DEFAULT now(),"
        " replayed_by text NOT NULL)"
    )


async def existing(conn: db.Connection, workers: Iterable[str], table: str) -> list[str]:
    """The workers whose schema has ``table``: a worker that never ran has no schema yet."""
    found = []
    for worker in workers:
        name = f"{quote_ident(worker)}.{quote_ident(table)}"
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            found.append(worker)
    return found


async def fetch_letters(
    conn: db.Connection, chosen: Filters, ids: list[uuid.UUID] | None = None
) -> list[Letter]:
    letters: list[Letter] = []
    with_replays = set(await existing(conn, chosen.workers, "dead_letter_replays"))
    for worker in await existing(conn, chosen.workers, "dead_letters"):
        schema = quote_ident(worker)
        replays = (
            f"LEFT JOIN {schema}.dead_letter_replays r ON r.dead_letter_id = d.id"
            if worker in with_replays
            else "LEFT JOIN (SELECT NULL::uuid AS dead_letter_id, NULL::timestamptz AS"
            " replayed_at, NULL::text AS replayed_by) r ON false"
        )
        rows = await conn.fetch(
            'SELECT d.id::text AS id, d.topic, d.partition, d."offset", d.key, d.payload,'
            " d.headers, d.error_type, d.error, d.dead_lettered_at, r.replayed_at,"
            f" r.replayed_by FROM {schema}.dead_letters d {replays}"
            " WHERE ($1::text[] IS NULL OR d.topic = ANY($1))"
            " AND ($2::text IS NULL OR d.key = $2)"
            " AND ($3::uuid[] IS NULL OR d.id = ANY($3))",
            chosen.topics,
            chosen.key,
            ids,
        )
        letters += [Letter(worker=worker, **dict(row)) for row in rows]
    letters.sort(key=lambda letter: letter.dead_lettered_at, reverse=True)
    return letters


@dlq_app.command("list")
def list_letters(
    worker: WorkerOption = None,
    topic: TopicOption = None,
    tenancy: TenancyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters of every worker, newest first, with their error and whether replayed."""
    config = settings()
    chosen = filters(config, worker, topic, tenancy)

    async def fetch() -> list[Letter]:
        async with database(config) as pool, pool.acquire() as conn:
            return await fetch_letters(conn, chosen)

    letters: list[Letter] = run(fetch())
    if as_json:
        print(json.dumps([letter.as_json() for letter in letters], indent=2))
        return
    table = Table(title="Dead letters")
    # Ids whole on one line: they are what `dlq replay` is given.
    table.add_column("id", no_wrap=True)
    for column in ("worker", "topic", "key", "error type", "error", "when", "replayed"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            letter.id,
            letter.worker,
            letter.topic.removeprefix(config.topic_prefix),
            letter.key or "",
            letter.error_type,
            shorten(letter.error, 80),
            # asyncpg gives timestamptz in UTC.
            f"{letter.dead_lettered_at:%Y-%m-%d %H:%M:%SZ}",
            f"{letter.replayed_at:%Y-%m-%d %H:%M:%SZ}" if letter.replayed_at else "no",
        )
    out.print(table)
    if not letters:
        out.print("no dead letters")


def shorten(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@dataclass
class Outcome:
    id: str
    topic: str
    key: str | None
    workers: list[str]
    replayed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "key": self.key,
            "workers": self.workers,
            "replayed": self.replayed,
        }


def replay_headers(headers: dict[str, str]) -> dict[str, str]:
    """The original record's headers, in structured mode as the platform publishes (it may have
    been sent as application/json) unless it was a binary-mode event, whose content type is its
    data's."""
    kept = {k: v for k, v in headers.items() if k.lower() not in DEAD_LETTER_HEADERS}
    if not is_binary((k, v.encode()) for k, v in kept.items()):
        kept[CONTENT_TYPE] = STRUCTURED_CONTENT_TYPE
    return kept


def trace_id_of(headers: dict[str, str]) -> str | None:
    """The original event's trace, so the audit entry of the replay points at it."""
    parts = headers.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def tenancy_of(key: str | None) -> str | None:
    try:
        return str(uuid.UUID(key)) if key else None
    except ValueError:
        return None


@dlq_app.command("replay")
def replay(
    letter_id: Annotated[
        str | None,
        typer.Argument(
            metavar="DEAD_LETTER_ID", help="The dead letter's id, as `tenancy dlq list` shows it."
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead letter not replayed yet (within filters).")
    ] = False,
    worker: WorkerOption = None,
    topic: TopicOption = None,
    tenancy: TenancyOption = None,
    again: Annotated[
        bool, typer.Option("--again", help="Replay letters that were replayed before, too.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Publish dead letters back to their original topic, with their key and headers, once the
    cause is fixed. Workers skip events they have already processed."""
    if (letter_id is None) == (not all_):
        raise fail("give one dead letter's id, or --all (not both)")
    ids = None
    if letter_id is not None:
        try:
            ids = [uuid.UUID(letter_id)]
        except ValueError:
            raise fail(f"dead letter id: {letter_id!r} is not a UUID") from None
    config = settings()
    chosen = filters(config, worker, topic, tenancy)
    actor = f"cli:{getpass.getuser()}"

    async def submit() -> list[Outcome] | None:
        async with database(config) as pool:
            async with pool.acquire() as conn:
                for name in await existing(conn, chosen.workers, "dead_letters"):
                    await conn.execute(replays_ddl(name))
            from shared.messaging import create_broker  # only to replay (see cli.context)

            broker = create_broker(config, client_id="tenancy-cli")
            try:
                await asyncio.wait_for(broker.start(), config.broker_connect_timeout_seconds)
            except Exception as error:
                raise Unreachable(
                    f"cannot reach the broker at {config.kafka_bootstrap_servers}: {error}"
                ) from error
            try:
                async with pool.acquire() as conn:
                    letters = await fetch_letters(conn, chosen, ids)
                    if ids is not None and not letters:
                        return None
                    if ids is None and not again:
                        letters = [letter for letter in letters if letter.replayed_at is None]
                    return await replay_letters(conn, broker, letters, actor, again=again)
            finally:
                await broker.stop()

    outcomes: list[Outcome] | None = run(submit())
    if outcomes is None:
        raise fail(f"no dead letter {letter_id}")
    if as_json:
        print(json.dumps([outcome.as_json() for outcome in outcomes], indent=2))
        return
    for outcome in outcomes:
        where = outcome.topic.removeprefix(config.topic_prefix)
        if outcome.replayed:
            out.print(f"replayed [bold]{outcome.id}[/] to {where} (key {outcome.key})")
        else:
            out.print(
                f"skipped {outcome.id}: already replayed; --again to replay it once more",
                highlight=False,
            )
    if not outcomes:
        out.print("nothing to replay")


async def replay_letters(
    conn: db.Connection, broker: KafkaBroker, letters: list[Letter], actor: str, *, again: bool
) -> list[Outcome]:
    """Publish each letter once: one Kafka record dead-lettered by several workers has the same
    id in each of their tables. Oldest first, so one tenancy's events go back in their order."""
    by_id: dict[str, list[Letter]] = {}
    for letter in sorted(letters, key=lambda letter: letter.dead_lettered_at):
        by_id.setdefault(letter.id, []).append(letter)
    outcomes = []
    for letter_id, copies in by_id.items():
        # A transaction per letter: the audit lock it takes is held only for one publish, and
        # letters replayed before a failure stay replayed.
        async with conn.transaction():
            outcomes.append(await replay_one(conn, broker, letter_id, copies, actor, again=again))
    return outcomes


async def replay_one(
    conn: db.Connection,
    broker: KafkaBroker,
    letter_id: str,
    copies: list[Letter],
    actor: str,
    *,
    again: bool,
) -> Outcome:
    """Publishing comes before the commit: if the commit then fails, the letter is published
    again next time, which workers ignore; recording it first could mark as replayed an event
    that never reached the broker."""
    first = copies[0]
    workers = [copy.worker for copy in copies]
    # Claiming the row is what makes a concurrent replay of the same letter wait, then skip.
    claimed = [
        await conn.fetchval(
            f"INSERT INTO {quote_ident(copy.worker)}.dead_letter_replays"
            " (dead_letter_id, replayed_by) VALUES ($1, $2) ON CONFLICT (dead_letter_id) "
            + (
                "DO UPDATE SET replayed_at = now(), replayed_by = EXCLUDED.replayed_by"
                if again
                else "DO NOTHING"
            )
            + " RETURNING true",
            uuid.UUID(letter_id),
            actor,
        )
        for copy in copies
    ]
    if not any(claimed):
        return Outcome(letter_id, first.topic, first.key, workers, replayed=False)
    await broker.publish(
        first.payload,
        topic=first.topic,
        key=first.key.encode() if first.key is not None else None,
        headers=replay_headers(first.headers),
    )
    await audit.append(
        conn,
        actor=actor,
        action="dlq.replay",
        tenancy_id=tenancy_of(first.key),
        detail={"dead_letter": letter_id, "topic": first.topic, "workers": workers},
        trace_id=trace_id_of(first.headers),
    )
    return Outcome(letter_id, first.topic, first.key, workers, replayed=True)
