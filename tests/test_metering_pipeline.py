"""Counting one batch behind the consumer (services.metering.counting), with fakes for the
consumer and the counting: a batch's offsets are recorded only once it is counted, a failed
batch rewinds the consumer to it, and a batch read meanwhile is never committed past it. The
same pipeline runs under every metering test on the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.metering import counting
from services.metering.counting import Pipeline, earliest
from services.metering.usage import Rejection, Usage
from shared.commits import OffsetCommits
from shared.messaging import EventMiddleware

TOPIC = "usage.recorded"


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    topic: str = TOPIC
    value: bytes = b"not an event"
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(eq=False)  # as an aiokafka consumer: one per identity
class FakeConsumer:
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in range(6)}


def batch(partition: int, first: int, size: int = 3) -> tuple[Record, ...]:
    return tuple(Record(partition, offset) for offset in range(first, first + size))


class Counter:
    """Counts batches once released, failing once each batch it is told to."""

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.counted: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, records: Sequence[Any], parsed: Sequence[Usage | Rejection]) -> None:
        assert len(parsed) == len(records)  # read before it is counted
        await self.release.wait()
        first = records[0].offset
        if first in self.failing:
            self.failing.discard(first)  # once: an outage that passes
            raise ConnectionRefusedError("database went away")
        self.counted.append(first)


def recorder(commits: OffsetCommits) -> Any:
    """What the middleware does with a Deferred: offsets recorded once its outcome succeeds."""
    middleware = EventMiddleware.__new__(EventMiddleware)
    middleware.commits = commits
    return middleware._handled


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counting, "RETRY_SECONDS", 0)


def pending(commits: OffsetCommits, consumer: FakeConsumer) -> dict[TopicPartition, int]:
    return dict(commits._pending.get(consumer, {}))


async def take(
    pipeline: Pipeline, consumer: FakeConsumer, commits: OffsetCommits, records: tuple[Any, ...]
) -> asyncio.Future[Any]:
    deferred = await pipeline.take(consumer, records)
    deferred.outcome.add_done_callback(lambda f: recorder(commits)(consumer, records, f))
    return deferred.outcome


async def test_offsets_are_recorded_only_once_the_batch_is_counted() -> None:
    counter, consumer, commits = Counter(set()), FakeConsumer(), OffsetCommits(60)
    pipeline = Pipeline(counter, TOPIC)
    first = await take(pipeline, consumer, commits, batch(0, 0))
    await asyncio.sleep(0)
    assert pending(commits, consumer) == {}  # taken, not yet counted
    counter.release.set()
    await first
    await asyncio.sleep(0)
    assert pending(commits, consumer) == {TopicPartition(TOPIC, 0): 3}
    second = await take(pipeline, consumer, commits, batch(0, 3))
    await pipeline.drain()  # as the worker stops: the batch under way finishes
    assert second.done()
    assert counter.counted == [0, 3]
    assert pending(commits, consumer) == {TopicPartition(TOPIC, 0): 6}
    assert consumer.seeks == []


async def test_a_failed_batch_is_read_again_and_the_one_read_meanwhile_is_not_counted() -> None:
    counter, consumer, commits = Counter({0}), FakeConsumer(), OffsetCommits(60)
    pipeline = Pipeline(counter, TOPIC)
    failing = await take(pipeline, consumer, commits, batch(0, 0))
    # The next fetch holds partition 0 past the failing batch, and partition 1 as well.
    meanwhile = (*batch(0, 3), *batch(1, 10))
    reading = asyncio.create_task(take(pipeline, consumer, commits, meanwhile))
    await asyncio.sleep(0)
    counter.release.set()
    later = await reading
    with pytest.raises(ConnectionRefusedError):
        await failing
    assert later.cancelled()  # not taken: read again
    await asyncio.sleep(0)
    assert pending(commits, consumer) == {}  # nothing committed past the failure
    # Rewound at once by the failure, then again for all that the batch read meanwhile held.
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    assert consumer.seeks[0] == (p0, 0)
    assert dict(consumer.seeks[1:]) == {p0: 0, p1: 10}
    # Read again from there, the batches count.
    again = await take(pipeline, consumer, commits, (*batch(0, 0, 6), *batch(1, 10)))
    await again
    await asyncio.sleep(0)
    assert counter.counted == [0]  # the batch read again
    assert pending(commits, consumer) == {p0: 6, p1: 13}


async def test_after_a_failure_a_batch_of_other_partitions_is_counted() -> None:
    """Only a partition the failed batch held can be skipped past: a batch of others counts."""
    counter, consumer, commits = Counter({0}), FakeConsumer(), OffsetCommits(60)
    pipeline = Pipeline(counter, TOPIC)
    failing = await take(pipeline, consumer, commits, batch(0, 0))
    reading = asyncio.create_task(take(pipeline, consumer, commits, batch(2, 7)))
    await asyncio.sleep(0)
    counter.release.set()
    other = await reading
    with pytest.raises(ConnectionRefusedError):
        await failing
    await other
    await asyncio.sleep(0)
    assert counter.counted == [7]
    assert pending(commits, consumer) == {TopicPartition(TOPIC, 2): 10}
    assert consumer.seeks == [(TopicPartition(TOPIC, 0), 0)]


def test_earliest_is_each_partitions_first_offset() -> None:
    records = (Record(1, 5), Record(0, 9), Record(1, 4), Record(0, 12))
    assert earliest(records) == {TopicPartition(TOPIC, 0): 9, TopicPartition(TOPIC, 1): 4}
