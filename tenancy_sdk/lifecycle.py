"""Keeping the directory current: every partition of the lifecycle topics, read to the end at
start, then followed.

The SDK reads with no consumer group: every replica of a service needs every event, and its
place in each partition is kept with the directory itself (:mod:`tenancy_sdk.snapshot`), so a
restart goes on from where the snapshot was taken. A partition the broker no longer has that far
(a broker that lost its topics) is read again from its beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from shared.events import CloudEvent
from shared.logging import get_logger
from tenancy_sdk.directory import LIFECYCLE_EVENTS, Change, Directory, Tenancy
from tenancy_sdk.snapshot import Snapshot, SnapshotStore

log = get_logger(__name__)

OnChange = Callable[[Tenancy, list[Change]], Awaitable[None]]
TOPICS_WAIT_SECONDS = 30.0
SAVE_EVERY_SECONDS = 1.0


class LifecycleFeed:
    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str,
        directory: Directory,
        store: SnapshotStore,
        on_change: OnChange,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        self._models: dict[str, type[CloudEvent]] = {
            topic_prefix + model.topic.value: model for model in LIFECYCLE_EVENTS
        }
        self._directory = directory
        self._store = store
        self._on_change = on_change
        self._offsets: dict[str, int] = {}
        self._saved_at = 0.0
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
        )

    async def start(self, restored: Snapshot | None) -> None:
        """Returns once every event published before it was called has been read."""
        await self._consumer.start()
        partitions = await self._partitions()
        self._consumer.assign(partitions)
        self._offsets = dict(restored.offsets) if restored else {}
        for tp in partitions:
            offset = self._offsets.get(_name(tp))
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)
        ends = await self._consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]:
            await self._read_once()
        await self._save()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._save()
        await self._consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        # The platform creates its topics; a service started first waits for them.
        deadline = time.monotonic() + TOPICS_WAIT_SECONDS
        while True:
            await self._consumer.topics()  # a fresh look at the cluster's metadata
            found = {t: self._consumer.partitions_for_topic(t) for t in self._models}
            missing = sorted(t for t, p in found.items() if not p)
            if not missing:
                return [TopicPartition(t, p) for t, ps in found.items() for p in sorted(ps or ())]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the platform's topics do not exist: {', '.join(missing)}")
            await asyncio.sleep(0.5)

    async def _follow(self) -> None:
        while True:
            try:
                await self._read_once()
                if self._dirty and time.monotonic() - self._saved_at > SAVE_EVERY_SECONDS:
                    await self._save()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker away: aiokafka reconnects by itself
                log.warning("lifecycle events not read", error=repr(error))
                await asyncio.sleep(1.0)

    async def _read_once(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=1000, max_records=1000)
        for tp, records in batches.items():
            for record in records:
                await self._apply(record)
            self._offsets[_name(tp)] = records[-1].offset + 1
            self._dirty = True

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        model = self._models[record.topic]
        try:
            event = model.model_validate_json(record.value or b"")
        except ValidationError as error:
            # The platform's workers dead-letter what they cannot read; a reader only skips it.
            log.warning(
                "lifecycle event skipped",
                topic=record.topic,
                offset=record.offset,
                error=str(error),
            )
            return
        changes = self._directory.apply(event)
        tenancy = self._directory.get(event.subject)
        if changes and tenancy is not None:
            try:
                await self._on_change(tenancy, changes)
            except Exception as error:
                log.exception("tenancy hook failed", tenancy_id=tenancy.id, error=repr(error))

    async def _save(self) -> None:
        snapshot = Snapshot(offsets=dict(self._offsets), tenancies=self._directory.snapshot())
        await asyncio.to_thread(self._store.save, snapshot)
        self._saved_at = time.monotonic()
        self._dirty = False


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"
