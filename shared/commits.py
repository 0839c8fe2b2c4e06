"""Committing consumed offsets a moment after the events are handled, a few at a time.

Committing after every event costs a request to the broker per event, on both sides. Here a
handled event only records its offset, and a loop commits the latest offset of each partition
every ``interval`` seconds. Only handled events are ever committed, so delivery stays at least
once: a worker that dies loses at most the last interval's commits, and those events come
again, to be recognised by the inbox.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from operator import attrgetter
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from shared.logging import get_logger
from shared.periodic import flush_every

log = get_logger(__name__)

_PARTITION = attrgetter("topic", "partition")
_OFFSET = attrgetter("offset")


class OffsetCommits:
    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        # consumer -> partition -> the next offset to read (the last handled one plus one)
        self._pending: dict[Any, dict[TopicPartition, int]] = {}

    def handled(self, consumer: Any, records: Iterable[Any]) -> None:
        """Records of one consumer have been handled (or dead-lettered): commit past them."""
        offsets = self._pending.setdefault(consumer, {})
        # A batch holds each partition's records one after another: the work is per run of a
        # partition, not per record (a batch of thousands is handled every few milliseconds).
        for (topic, partition), run in groupby(records, _PARTITION):
            tp = TopicPartition(topic, partition)
            offsets[tp] = max(offsets.get(tp, 0), max(map(_OFFSET, run)) + 1)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for consumer, offsets in pending.items():
            # A partition handed to another member since is no longer ours to commit; that
            # member reads it again from the last commit, and its inbox drops the repeats.
            owned = {tp: offset for tp, offset in offsets.items() if tp in consumer.assignment()}
            if not owned:
                continue
            try:
                await consumer.commit(owned)
            except KafkaError as error:
                log.info(
                    "offsets not committed; those events will be redelivered", error=str(error)
                )

    async def run(self) -> None:
        await flush_every(self.interval_seconds, self.flush)
