"""Counting usage one batch behind the consumer: a batch is read (parsed and checked in Python)
while PostgreSQL counts the batch before it, so neither waits for the other.

Batches are still counted one at a time, in the order they were fetched, each in one
transaction: a batch's transaction begins once the one before it has committed, so a repeat of
an event in the batch before is always seen as a repeat, never raced. A batch's offsets are
recorded for commit only once its transaction has committed (see
:class:`shared.messaging.Deferred`). When a batch cannot be counted (an outage, a bug), the
consumer is rewound to it, and to the batch read meanwhile, which is read again afterwards
rather than counted: nothing is committed past an event that was not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from opentelemetry.trace import SpanKind

from services.metering import service
from services.metering.usage import Rejection, Usage
from shared.logging import get_logger
from shared.messaging import Deferred, is_outage
from shared.tracing import tracer

log = get_logger(__name__)

Records = Sequence[Any]  # aiokafka's ConsumerRecords of one fetch
CountBatch = Callable[[Records, Sequence[Usage | Rejection]], Awaitable[None]]
# How long a failed batch waits before it is read again, as the middleware waits for a batch
# handler that failed.
RETRY_SECONDS = 1.0


def earliest(records: Records) -> dict[TopicPartition, int]:
    """Each partition's first offset among ``records``: where reading them again starts."""
    found: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if record.offset < found.get(tp, record.offset + 1):
            found[tp] = record.offset
    return found


@dataclass
class _Counting:
    consumer: Any
    records: Records
    outcome: asyncio.Task[None]


class Pipeline:
    """One per consumer: the batch being counted, if any."""

    def __init__(self, count_batch: CountBatch, topic: str) -> None:
        self.count_batch = count_batch
        self.topic = topic
        self._counting: dict[Any, _Counting] = {}

    async def take(self, consumer: Any, records: Records) -> Deferred:
        """Read ``records`` while the batch before is counted, then count them in the
        background; or leave them to be read again, after the batch before that failed."""
        parsed = await service.read(records)
        before = self._counting.pop(consumer, None)
        if before is not None and not await _succeeded(before.outcome):
            failed, taken = earliest(before.records), earliest(records)
            # Fetched before the failed batch rewound the consumer, this one is past it in a
            # partition they share: counted, it would commit that partition past the failure.
            if any(offset > failed[tp] for tp, offset in taken.items() if tp in failed):
                _seek(
                    consumer,
                    {**taken, **{tp: min(o, taken.get(tp, o)) for tp, o in failed.items()}},
                )
                return Deferred.not_taken()
        outcome = asyncio.create_task(self._count(consumer, records, parsed))
        self._counting[consumer] = _Counting(consumer, records, outcome)
        return Deferred(outcome)

    async def _count(
        self, consumer: Any, records: Records, parsed: Sequence[Usage | Rejection]
    ) -> None:
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.destination.name": self.topic,
            "tenancy.usage.counted": len(records),
        }
        with tracer().start_as_current_span(
            "metering count usage", kind=SpanKind.INTERNAL, attributes=attributes
        ):
            try:
                await self.count_batch(records, parsed)
            except Exception as error:
                if is_outage(error):
                    log.warning("outage; batch will be read again", error=str(error))
                else:
                    log.exception("batch failed; it will be read again")
                # At once, so no later batch is committed past it, whatever comes next.
                _seek(consumer, earliest(records))
                await asyncio.sleep(RETRY_SECONDS)
                raise

    async def drain(self) -> None:
        """Wait for the batches being counted, so their offsets are recorded before the last
        commit and their connections are back in the pool before it closes."""
        counting, self._counting = list(self._counting.values()), {}
        for batch in counting:
            await _succeeded(batch.outcome)


async def _succeeded(outcome: asyncio.Task[None]) -> bool:
    try:
        await outcome
    except Exception:
        return False  # logged where it failed
    return True


def _seek(consumer: Any, offsets: dict[TopicPartition, int]) -> None:
    for tp, offset in offsets.items():
        # A partition no longer assigned here is read again by its new owner from the last
        # commit, which is before it.
        with contextlib.suppress(Exception):
            consumer.seek(tp, offset)
