"""Handled offsets are committed together, later; never an offset that was not handled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from shared.commits import OffsetCommits


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int


@dataclass(eq=False)  # hashed by identity, like a real consumer
class FakeConsumer:
    assigned: set[TopicPartition]
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    fail: bool = False

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise CommitFailedError("the group rebalanced")
        self.commits.append(offsets)


def records(*spec: tuple[str, int, int]) -> list[Any]:
    return [Record(*s) for s in spec]


async def test_one_commit_per_flush_with_the_next_offset_of_each_partition() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = FakeConsumer({a, b})
    commits = OffsetCommits(0.2)
    for record in records(("t", 0, 5), ("t", 0, 6), ("t", 1, 0), ("t", 0, 7)):
        commits.handled(consumer, [record])
    await commits.flush()
    assert consumer.commits == [{a: 8, b: 1}]

    await commits.flush()  # nothing handled since: nothing sent
    assert len(consumer.commits) == 1


async def test_a_batch_commits_past_its_last_record() -> None:
    a = TopicPartition("t", 0)
    consumer = FakeConsumer({a})
    commits = OffsetCommits(0.2)
    commits.handled(consumer, records(("t", 0, 10), ("t", 0, 12), ("t", 0, 11)))
    await commits.flush()
    assert consumer.commits == [{a: 13}]


async def test_partitions_given_away_are_left_to_their_new_owner() -> None:
    a = TopicPartition("t", 0)
    consumer = FakeConsumer({a})
    commits = OffsetCommits(0.2)
    commits.handled(consumer, records(("t", 0, 1), ("t", 1, 1)))
    await commits.flush()
    assert consumer.commits == [{a: 2}]

    consumer.assigned = set()
    commits.handled(consumer, records(("t", 0, 2)))
    await commits.flush()
    assert consumer.commits == [{a: 2}]


async def test_a_failed_commit_is_not_fatal_and_not_retried() -> None:
    a = TopicPartition("t", 0)
    consumer = FakeConsumer({a}, fail=True)
    commits = OffsetCommits(0.2)
    commits.handled(consumer, records(("t", 0, 1)))
    await commits.flush()  # those events are read again and the inbox recognises them
    consumer.fail = False
    await commits.flush()
    assert consumer.commits == []
