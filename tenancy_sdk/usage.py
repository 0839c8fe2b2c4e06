"""Usage reported exactly once: an outbox in the tenancy's own tables, and ids that make a resend
harmless.

A service records usage in the same transaction as what it is charged for (a report, a permit),
in the table ``tenancy_usage_outbox`` that its manifest creates for every tenancy
(:data:`OUTBOX_MIGRATION`). The relay publishes each row to ``usage.recorded`` as a structured
CloudEvent, then deletes it. The report and its usage commit together or not at all; a crash
between publishing and deleting sends the row again with the same id and time, and metering
counts an id once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.cloudevents import CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from shared.db import Connection
from shared.events import UsageRecorded
from shared.logging import get_logger
from tenancy_sdk.connections import TenantPools
from tenancy_sdk.directory import Tenancy

log = get_logger(__name__)

OUTBOX_TABLE = "tenancy_usage_outbox"
OUTBOX_MIGRATION = f"""CREATE TABLE {OUTBOX_TABLE} (
    id text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    meter text NOT NULL,
    quantity numeric NOT NULL DEFAULT 1 CHECK (quantity >= 0),
    value text,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
"""
BATCH = 500
USAGE_TYPE = "uk.gov.tenancy.usage.recorded.v1"


async def record_usage(
    conn: Connection,
    meter: str,
    *,
    id: str | None = None,
    quantity: int | Decimal = 1,
    value: str | None = None,
    at: datetime | None = None,
) -> str:
    """Add usage in the caller's transaction; returns the event id. An id already recorded is
    left as it was, so a retried request reports once. Ids must be unique across the service
    (metering tells events apart by source and id): the default, a UUID, is."""
    event_id = id or str(uuid.uuid4())
    await conn.execute(
        f"INSERT INTO {OUTBOX_TABLE} (id, meter, quantity, value, occurred_at)"
        " VALUES ($1, $2, $3, $4, coalesce($5, now())) ON CONFLICT (id) DO NOTHING",
        event_id,
        meter,
        Decimal(quantity),
        value,
        at,
    )
    return event_id


def usage_event(service_id: str, tenancy_id: str, row: Any) -> bytes:
    """One outbox row as the CloudEvent metering reads; the same row gives the same bytes."""
    data: dict[str, Any] = {"meter": row["meter"], "quantity": str(row["quantity"])}
    if row["value"] is not None:
        data["value"] = row["value"]
    event = UsageRecorded.model_validate(
        {
            "specversion": "1.0",
            "id": row["id"],
            "source": service_id,
            "type": USAGE_TYPE,
            "subject": tenancy_id,
            "time": row["occurred_at"].astimezone(UTC),
            "datacontenttype": "application/json",
            "data": data,
        }
    )
    return json.dumps(event.model_dump(mode="json"), separators=(",", ":")).encode()


class UsageRelay:
    """Publishes what the tenancies' outboxes hold: at once after a commit (:meth:`wake`), and
    every ``sweep_seconds`` for all tenancies, which finds rows a crash left behind."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        service_id: str,
        pools: TenantPools,
        tenancies: Callable[[], list[Tenancy]],
        sweep_seconds: float,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._service_id = service_id
        self._pools = pools
        self._tenancies = tenancies
        self._sweep_seconds = sweep_seconds
        self._due: dict[str, Tenancy] = {}
        self._woken = asyncio.Event()

    def wake(self, tenancy: Tenancy) -> None:
        self._due[tenancy.id] = tenancy
        self._woken.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()  # at once: rows a crash left behind go first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(0.0, next_sweep - loop.time()))
            self._woken.clear()
            due = list(self._due.values())
            self._due.clear()
            if loop.time() >= next_sweep:
                due = [t for t in self._tenancies() if t.serving]
                next_sweep = loop.time() + self._sweep_seconds
            for tenancy in due:
                await self.send(tenancy)

    async def send(self, tenancy: Tenancy) -> int:
        """Publish a tenancy's pending usage; the number of events sent. Failures are logged
        and left for the next sweep: the rows stay until the broker has them."""
        try:
            sent = 0
            while (count := await self._send_batch(tenancy)) > 0:
                sent += count
            return sent
        except Exception as error:  # the database or the broker away, a login being rotated
            log.warning("usage not sent yet", tenancy_id=tenancy.id, error=repr(error))
        return 0

    async def _send_batch(self, tenancy: Tenancy) -> int:
        async with self._pools.connection(tenancy) as conn, conn.transaction():
            # SKIP LOCKED: two replicas of the service never send the same rows at once.
            rows = await conn.fetch(
                f"SELECT id, meter, quantity, value, occurred_at FROM {OUTBOX_TABLE}"
                " ORDER BY occurred_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
                BATCH,
            )
            if not rows:
                return 0
            key = tenancy.id.encode()
            headers = [(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())]
            sends = [
                await self._producer.send(
                    self._topic,
                    usage_event(self._service_id, tenancy.id, row),
                    key=key,
                    headers=headers,
                )
                for row in rows
            ]
            await asyncio.gather(*sends)
            await conn.execute(
                f"DELETE FROM {OUTBOX_TABLE} WHERE id = ANY($1::text[])", [r["id"] for r in rows]
            )
            return len(rows)
