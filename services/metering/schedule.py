"""Closing billing periods on a schedule: once a period has been over for the configured delay,
the metering worker asks itself, through an event, to close it for every priced service.

The request's id is derived from (service, period), so restarts and several replicas ask once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from services.metering.periods import Period
from services.metering.service import period_kind
from shared.catalogue import ServiceManifest
from shared.events import BillingCloseRequested, BillingCloseRequestedData
from shared.logging import get_logger
from shared.messaging import is_outage
from shared.outbox import UnitOfWork

log = get_logger(__name__)
SOURCE = "tenancy/metering/schedule"


def due(service: ServiceManifest, now: datetime, delay: timedelta) -> Period:
    """The latest period of the service that ended at least ``delay`` ago."""
    return Period.containing(period_kind(service), now - delay).previous()


async def schedule_closes(uow: UnitOfWork, now: datetime, delay: timedelta) -> list[str]:
    asked: list[str] = []
    async with uow.transaction() as tx:
        rows = await tx.conn.fetch(
            "SELECT p.manifest FROM metering.plans p WHERE p.manifest->'pricing' IS NOT NULL"
            " AND p.manifest->>'pricing' <> 'null' ORDER BY p.service_id"
        )
        for row in rows:
            service = ServiceManifest.model_validate(row["manifest"])
            period = str(due(service, now, delay))
            closed = await tx.conn.fetchval(
                "SELECT true FROM metering.closed_periods WHERE service_id = $1 AND period = $2",
                service.id,
                period,
            )
            if closed:
                continue
            request_id = uuid.uuid5(uuid.NAMESPACE_URL, f"billing-close:{service.id}:{period}")
            seen = await tx.conn.fetchval(
                "SELECT true FROM metering.outbox WHERE id = $1", request_id
            )
            if seen:
                continue
            data = BillingCloseRequestedData(service=service, period=period)
            tx.emit(
                BillingCloseRequested.new(
                    source=SOURCE, subject=service.id, data=data, id=request_id
                )
            )
            asked.append(f"{service.id} {period}")
    for item in asked:
        log.info("scheduled a billing close", close=item)
    return asked


async def run_schedule(uow: UnitOfWork, every_seconds: float, delay: timedelta) -> None:
    while True:
        try:
            await schedule_closes(uow, datetime.now(UTC), delay)
        except Exception as error:
            if not is_outage(error):
                log.exception("billing schedule failed; it will try again")
        await asyncio.sleep(every_seconds)
