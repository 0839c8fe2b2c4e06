"""Metering's subscribers: parse the event, run the use case in a transaction, emit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import asyncpg
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from services.metering import service
from services.metering.counting import Pipeline
from services.metering.settings import MeteringSettings
from services.metering.usage import Rejection, Usage
from shared.events import (
    BillingCloseRequested,
    InvoiceIssued,
    MeteringEnabled,
    OffboardingRequested,
    TenancyRegistered,
    TenancyReorganised,
)
from shared.failpoints import failpoint
from shared.logging import get_logger
from shared.messaging import PermanentError, is_outage
from shared.topics import Topic
from shared.worker import Worker

log = get_logger(__name__)


Records = tuple[Any, ...]  # aiokafka's ConsumerRecords of one fetch


async def whole_batch(
    records: Records, default: Callable[[Records], Awaitable[StreamMessage[Records]]]
) -> StreamMessage[Records]:
    """The batch as one message around its records. faststream's own parser makes a dict of
    headers per record, which nothing here reads: its parse of the first record alone gives the
    message its class and consumer."""
    message = await default(records[:1])
    message.raw_message = records
    message.body = [record.value or b"" for record in records]
    return message


async def undecoded(msg: Any) -> Any:
    """Usage records are parsed one by one in the handler, so one bad record cannot fail the
    decoding of its whole batch."""
    return msg.body


def register(worker: Worker, settings: MeteringSettings) -> None:
    worker.publishes(MeteringEnabled, InvoiceIssued)
    counting = Pipeline(partial(count_batch, worker), worker.topic(Topic.USAGE_RECORDED))
    worker.drains.append(counting.drain)

    @worker.subscriber(Topic.TENANCY_REGISTERED)
    async def on_tenancy_registered(event: TenancyRegistered) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                data = event.data
                await service.open_meters(
                    tx, event.subject, data.service, data.council, data.purchase_order
                )

    @worker.subscriber(
        Topic.USAGE_RECORDED,
        batch=True,
        max_records=settings.usage_batch_size,
        parser=whole_batch,
        decoder=undecoded,
        description=(
            "Usage the shared services report: UsageRecorded CloudEvents in structured or"
            " binary mode (see the README), counted in batches, exactly once."
        ),
    )
    # Any, not Deferred: faststream would make a pydantic model of the type it returns.
    async def on_usage_recorded(records: list[bytes], message: KafkaMessage) -> Any:
        return await counting.take(message.consumer, message.raw_message)

    @worker.subscriber(Topic.BILLING_CLOSE_REQUESTED)
    async def on_billing_close_requested(event: BillingCloseRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            try:
                issued = await service.close_period(tx, event.data.service, event.data.period)
            except service.CloseRefused as refused:
                raise PermanentError(str(refused)) from refused
        log.info("billing period closed", period=event.data.period, invoices=issued)

    @worker.subscriber(Topic.OFFBOARDING_REQUESTED)
    async def on_offboarding_requested(event: OffboardingRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await service.final_invoice(tx, event.data.service, event.subject)

    @worker.subscriber(Topic.TENANCY_REORGANISED)
    async def on_tenancy_reorganised(event: TenancyReorganised) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await service.close_for_reorganisation(tx, event.subject, event.data)


async def count_batch(
    worker: Worker, records: Sequence[Any], parsed: Sequence[Usage | Rejection] | None = None
) -> None:
    """Count a batch in one transaction. If the batch as a whole cannot be written (not an
    outage: say a quantity too large for the database), it is halved and each half counted on
    its own, again and again, so only the records that still fail alone are dead-lettered,
    after a few transactions rather than one per record. ``parsed``: the batch read already."""
    if parsed is None:
        parsed = await service.read(records)
    try:
        rejected = await _count(worker, records, parsed)
    except Exception as error:
        if is_outage(error) or len(records) == 1:
            raise
        log.warning("batch failed; counting it in halves", error=str(error))
        rejected = await _count_in_halves(worker, records, parsed)
    for record, rejection in rejected:
        await worker.dead_letters.record_raw(record, rejection.reason, rejection.message)


async def _count_in_halves(
    worker: Worker, records: Sequence[Any], parsed: Sequence[Usage | Rejection]
) -> list[tuple[Any, Rejection]]:
    rejected: list[tuple[Any, Rejection]] = []
    middle = len(records) // 2
    for half in (slice(None, middle), slice(middle, None)):
        try:
            rejected += await _count(worker, records[half], parsed[half])
        except Exception as error:
            if is_outage(error):
                raise
            if len(records[half]) > 1:
                rejected += await _count_in_halves(worker, records[half], parsed[half])
            else:
                problem = Rejection("unprocessable", f"{type(error).__name__}: {error}")
                rejected.append((records[half][0], problem))
    return rejected


# Counting a batch again after a race with another consumer (see _count), at most this often.
RACES = 5


async def _count(
    worker: Worker, records: Sequence[Any], parsed: Sequence[Usage | Rejection]
) -> list[tuple[Any, Rejection]]:
    for attempt in range(1, RACES + 1):
        try:
            async with worker.pool.acquire() as conn, conn.transaction():
                counted = await service.count(conn, records, parsed=parsed)
            break
        except (asyncpg.UniqueViolationError, asyncpg.TransactionRollbackError):
            # Another consumer counted some of these events while this batch was counted (a
            # partition changed hands); nothing of the batch was written. Counted again, it
            # sees them as repeats.
            if attempt == RACES:
                raise
            log.info("usage counted meanwhile by another consumer; counting the batch again")
    failpoint("metering.after-commit")
    log.debug("usage counted", counted=counted.counted, duplicates=counted.duplicates)
    return [(records[index], rejection) for index, rejection in counted.rejected]
