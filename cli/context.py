"""What a CLI command needs to reach the running system: the platform database and the broker."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from cli.settings import CliSettings
from services.isolation.databases import ServiceDatabases
from services.onboarding import MIGRATIONS as ONBOARDING_MIGRATIONS
from shared import audit, db
from shared.logging import get_logger, redact_dsn
from shared.outbox import Transaction, UnitOfWork
from shared.tracing import configure_tracing, shutdown_tracing, tracer

# FastStream, a third of the CLI's start-up time, is imported only where a command publishes:
# one that only reads starts without it.
if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

log = get_logger(__name__)


class Unreachable(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def database(settings: CliSettings) -> AsyncIterator[db.Pool]:
    try:
        await db.ensure_database(settings.database_url)
        pool = await db.create_pool(settings.database_url, max_size=2)
    except (OSError, asyncpg.PostgresError) as error:
        raise Unreachable(
            f"cannot reach PostgreSQL at {redact_dsn(settings.database_url)}: {error}. "
            "Is the stack running (make run)? Or set DATABASE_URL."
        ) from error
    try:
        await db.migrate(pool, "onboarding", ONBOARDING_MIGRATIONS)
        await db.migrate(pool, "audit", audit.MIGRATIONS)
        yield pool
    finally:
        await pool.close()


@dataclass
class Publisher:
    broker: KafkaBroker | None

    async def __call__(
        self, payload: dict[str, Any], *, topic: str, key: str, headers: dict[str, str]
    ) -> None:
        if self.broker is None:
            raise Unreachable("broker not connected")
        from shared.messaging import publish_json

        await publish_json(self.broker, payload, topic=topic, key=key, headers=headers)


@contextlib.asynccontextmanager
async def request(
    settings: CliSettings,
    pool: db.Pool,
    worker: str,
    span: str,
    attributes: dict[str, str],
    migrations: Path | None = None,
) -> AsyncIterator[Transaction]:
    """Record a request durably in ``worker``'s outbox, in a trace of its own that every worker
    continues. If the broker is down the request is still recorded, and that worker's relay
    publishes it once the broker is back."""
    if migrations is not None:
        # The worker's tables may not exist yet if it has never started.
        await db.migrate(pool, worker, migrations)
    from shared.messaging import create_broker

    broker = create_broker(settings, client_id="tenancy-cli")
    connected = False
    try:
        await asyncio.wait_for(broker.start(), settings.broker_connect_timeout_seconds)
        connected = True
    except Exception as error:
        log.warning("broker unreachable; the request stays queued", error=str(error))
    configure_tracing("cli", settings.otel_exporter_otlp_endpoint, settings.spans_file)
    try:
        with tracer().start_as_current_span(span, attributes=attributes):
            uow = UnitOfWork(
                pool, worker, Publisher(broker if connected else None), settings.topic_prefix
            )
            async with uow.transaction() as tx:
                yield tx
                await audit.append(
                    tx.conn,
                    actor=f"cli:{getpass.getuser()}",
                    action=span.removeprefix("tenancy ").replace(" ", "."),
                    tenancy_id=attributes.get("tenancy.id") or _tenancy_of(tx),
                    detail=attributes,
                )
    finally:
        shutdown_tracing()
        with contextlib.suppress(Exception):
            await broker.stop()


def _tenancy_of(tx: Transaction) -> str | None:
    """The tenancy a request is about: the key of the first event it emits, if a tenancy id."""
    for row in tx.emitted:
        try:
            return str(uuid.UUID(row.key))
        except ValueError:
            continue
    return None


def tenant_databases(settings: CliSettings) -> ServiceDatabases:
    """The shared services' databases, where the isolation worker keeps them."""
    return ServiceDatabases(settings.tenant_server_url, db.database_name(settings.database_url))
