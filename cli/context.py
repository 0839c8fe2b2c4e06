"""What a CLI command needs to reach the running system: the platform database and the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker

from cli.settings import CliSettings
from services.onboarding.app import MIGRATIONS as ONBOARDING_MIGRATIONS
from shared import db
from shared.logging import get_logger
from shared.messaging import create_broker, publish_json
from shared.outbox import UnitOfWork

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
            f"cannot reach PostgreSQL at {redact(settings.database_url)}: {error}. "
            "Is the stack running (make run)? Or set DATABASE_URL."
        ) from error
    try:
        await db.migrate(pool, "onboarding", ONBOARDING_MIGRATIONS)
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
        await publish_json(self.broker, payload, topic=topic, key=key, headers=headers)


@contextlib.asynccontextmanager
async def onboarding_unit_of_work(
    settings: CliSettings, pool: db.Pool
) -> AsyncIterator[UnitOfWork]:
    """A unit of work on onboarding's outbox. If the broker is down the request is still
    recorded, and the onboarding worker's relay publishes it once the broker is back."""
    broker = create_broker(settings, client_id="tenancy-cli")
    connected = False
    try:
        await asyncio.wait_for(broker.start(), settings.broker_connect_timeout_seconds)
        connected = True
    except Exception as error:
        log.warning("broker unreachable; the request stays queued", error=str(error))
    try:
        publisher = Publisher(broker if connected else None)
        yield UnitOfWork(pool, "onboarding", publisher, settings.topic_prefix)
    finally:
        with contextlib.suppress(Exception):
            await broker.stop()


def redact(dsn: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(f":{parts.password}@", ":***@")
    return dsn
