"""The unit of work every handler runs in: inbox claim, effects and outgoing events commit together.

- *Inbox*: the consumed event's id is inserted into ``processed_events`` in the same transaction
  as its effects, so a duplicate or redelivered event is recognised and changes nothing.
- *Outbox*: events a handler emits are written to ``outbox`` in that transaction too, then
  published once it has committed. If the process dies in between, the relay publishes them later;
  a consumer may therefore see an event twice, which its own inbox absorbs.
- *Replay*: a duplicate changes nothing, but re-sends the events its first delivery caused. A
  re-driven event therefore carries a stalled tenancy forward even when the broker lost the
  results the first time (the embedded broker keeps nothing across a restart).
- *Marks*: a worker marks published rows together every ``mark_interval`` seconds
  (``run_marks``), not with an UPDATE per event. A row whose mark is lost with the process is
  published again by the relay, and its consumers' inboxes drop the repeat.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from shared.db import Connection, Pool
from shared.events import CloudEvent
from shared.failpoints import failpoint
from shared.identifiers import quote_ident
from shared.logging import get_logger
from shared.periodic import flush_every
from shared.tracing import continued_from, current_headers, tracer

log = get_logger(__name__)


class Publish(Protocol):
    async def __call__(
        self, payload: dict[str, Any], *, topic: str, key: str, headers: dict[str, str]
    ) -> None: ...


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    topic: str
    key: str
    payload: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Transaction:
    conn: Connection
    topic_prefix: str = ""
    duplicate: bool = False
    emitted: list[OutboxRow] = field(default_factory=list)
    replayed: list[OutboxRow] = field(default_factory=list)

    def emit(self, event: CloudEvent) -> None:
        self.emitted.append(
            OutboxRow(
                id=event.id,
                topic=self.topic_prefix + event.topic.value,
                key=event.subject,
                payload=event.model_dump(mode="json"),
                # The content type is the publisher's to set (see shared.messaging.publish_json).
                headers=current_headers(),
            )
        )


class UnitOfWork:
    def __init__(
        self,
        pool: Pool,
        schema: str,
        publish: Publish,
        topic_prefix: str = "",
        *,
        ordered: bool = True,
    ) -> None:
        self._pool = pool
        self._schema = quote_ident(schema)
        self._publish = publish
        self._topic_prefix = topic_prefix
        # Emitted events are published in order, one after another. Events that need no order
        # among themselves (usage reports, each counted on its own) may go all at once: the
        # producer then sends them in a few requests rather than one round trip each.
        self._ordered = ordered
        self.failpoint_prefix = schema
        # Published rows not yet marked; marked at once unless ``run_marks`` is running.
        self._unmarked: list[uuid.UUID] = []
        self._marking_later = False

    @property
    def pool(self) -> Pool:
        return self._pool

    @asynccontextmanager
    async def transaction(self, consuming: CloudEvent | None = None) -> AsyncIterator[Transaction]:
        async with self._pool.acquire() as conn, conn.transaction():
            tx = Transaction(conn, self._topic_prefix)
            if consuming is not None:
                claimed = await conn.fetchval(
                    f"INSERT INTO {self._schema}.processed_events (event_id, event_type)"
                    " VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                    consuming.id,
                    consuming.type,
                )
                tx.duplicate = not claimed
                if tx.duplicate:
                    tx.replayed = [
                        OutboxRow(r["id"], r["topic"], r["key"], r["payload"], r["headers"])
                        for r in await conn.fetch(
                            f"SELECT id, topic, key, payload, headers FROM {self._schema}.outbox"
                            " WHERE caused_by = $1 ORDER BY created_at",
                            consuming.id,
                        )
                    ]
            yield tx
            if tx.emitted:
                caused_by = consuming.id if consuming is not None else None
                await conn.executemany(
                    f"INSERT INTO {self._schema}.outbox"
                    " (id, topic, key, payload, headers, caused_by)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    [(r.id, r.topic, r.key, r.payload, r.headers, caused_by) for r in tx.emitted],
                )
        if consuming is not None:
            # After handling an event, before its results are published or its offset
            # committed; not in a background loop's own transaction (the re-drive's), which
            # would fire before the worker has consumed anything.
            failpoint(f"{self.failpoint_prefix}.after-commit")
        await self.publish(tx.emitted + tx.replayed)

    async def publish(self, rows: list[OutboxRow]) -> None:
        """Best effort: what cannot be published now stays in the outbox for the relay."""
        sent: list[uuid.UUID] = []
        if not self._ordered and len(rows) > 1:
            sent = await self._publish_all(rows)
        else:
            try:
                for row in rows:
                    await self._send(row)
                    sent.append(row.id)
            except Exception as error:  # the relay retries; the effects are already durable
                log.warning(
                    "outbox publish deferred", error=str(error), pending=len(rows) - len(sent)
                )
        self._unmarked += sent
        if not self._marking_later:
            await self.mark_published()

    async def _send(self, row: OutboxRow) -> None:
        await self._publish(row.payload, topic=row.topic, key=row.key, headers=row.headers)

    async def _publish_all(self, rows: list[OutboxRow]) -> list[uuid.UUID]:
        outcomes = await asyncio.gather(*map(self._send, rows), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            log.warning("outbox publish deferred", error=str(failed[0]), pending=len(failed))
        return [row.id for row, o in zip(rows, outcomes, strict=True) if o is None]

    async def mark_published(self) -> None:
        """Mark the rows published so far; if that fails, the relay publishes them again."""
        unmarked, self._unmarked = self._unmarked, []
        if not unmarked:
            return
        try:
            await self._pool.execute(
                f"UPDATE {self._schema}.outbox SET published_at = now() WHERE id = ANY($1)",
                unmarked,
            )
        except Exception as error:  # an outage: the rows go out again, and inboxes drop them
            log.warning("outbox rows not marked published", error=str(error), rows=len(unmarked))

    async def run_marks(self, interval_seconds: float) -> None:
        """Mark published rows together every ``interval_seconds`` while the worker runs."""
        self._marking_later = True
        try:
            await flush_every(interval_seconds, self.mark_published)
        finally:
            self._marking_later = False

    async def relay_once(self, older_than_seconds: float, limit: int = 500) -> int:
        """Publish outbox rows that no handler published (a crash, or the broker was down)."""
        async with self._pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(
                f"SELECT id, topic, key, payload, headers FROM {self._schema}.outbox"
                " WHERE published_at IS NULL"
                " AND created_at < clock_timestamp() - make_interval(secs => $1)"
                " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                older_than_seconds,
                limit,
            )
            for record in records:
                # Continue the trace the event was emitted in, so a late publish shows up there.
                with (
                    continued_from(record["headers"]),
                    tracer().start_as_current_span(
                        f"outbox relay publish {record['topic']}",
                        kind=SpanKind.PRODUCER,
                        attributes={"tenancy.id": record["key"]},
                    ),
                ):
                    await self._publish(
                        record["payload"],
                        topic=record["topic"],
                        key=record["key"],
                        headers=record["headers"],
                    )
            if records:
                await conn.execute(
                    f"UPDATE {self._schema}.outbox SET published_at = now() WHERE id = ANY($1)",
                    [r["id"] for r in records],
                )
        return len(records)

    async def run_relay(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                sent = await self.relay_once(older_than_seconds=interval_seconds)
                if sent:
                    log.info("outbox relay published", count=sent)
            except Exception as error:  # an outage: try again next round
                log.warning("outbox relay failed", error=str(error))
