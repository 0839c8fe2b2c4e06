"""The outbox's published marks: written together while a worker runs, at once otherwise, and
never in a way that loses an event (an unmarked row is only published again)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.onboarding.app import MIGRATIONS
from shared import db
from shared.events import StepFailed, StepFailedData
from shared.outbox import UnitOfWork
from tests.harness import Slice


@pytest.fixture
async def pool(crash_slice: Slice) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(crash_slice.database_url, max_size=2)
    await db.migrate(pool, "onboarding", MIGRATIONS)
    yield pool
    await pool.close()


class Sent:
    """A broker that keeps what it is given."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    async def __call__(self, payload: dict[str, Any], **kw: Any) -> None:
        self.payloads.append(payload)


def an_event() -> StepFailed:
    return StepFailed.new(
        source="tests", subject=str(uuid.uuid4()), data=StepFailedData(step="branding", reason="x")
    )


async def emit(uow: UnitOfWork) -> uuid.UUID:
    event = an_event()
    async with uow.transaction() as tx:
        tx.emit(event)
    return event.id


async def marked(pool: db.Pool, *ids: uuid.UUID) -> list[bool]:
    rows = await pool.fetch(
        "SELECT id, published_at IS NOT NULL AS marked FROM onboarding.outbox"
        " WHERE id = ANY($1::uuid[])",
        list(ids),
    )
    found = {row["id"]: row["marked"] for row in rows}
    return [found[i] for i in ids]


async def test_without_the_marking_loop_a_row_is_marked_as_it_is_published(pool: db.Pool) -> None:
    sent = Sent()
    event_id = await emit(UnitOfWork(pool, "onboarding", sent))
    assert [p["id"] for p in sent.payloads] == [str(event_id)]
    assert await marked(pool, event_id) == [True]


async def test_a_running_worker_marks_rows_together_and_on_stopping(pool: db.Pool) -> None:
    sent = Sent()
    uow = UnitOfWork(pool, "onboarding", sent)
    loop = asyncio.create_task(uow.run_marks(0.2))
    await asyncio.sleep(0)  # the loop has started: marks now wait for it
    first, second = await emit(uow), await emit(uow)
    # Published, not yet marked: a crash now would only have the relay publish them again.
    assert len(sent.payloads) == 2
    assert await marked(pool, first, second) == [False, False]
    for _ in range(50):
        if await marked(pool, first, second) == [True, True]:
            break
        await asyncio.sleep(0.05)
    assert await marked(pool, first, second) == [True, True]

    third = await emit(uow)
    loop.cancel()  # stopping marks what was published
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert await marked(pool, third) == [True]
    # Stopped, the unit of work marks at once again.
    fourth = await emit(uow)
    assert await marked(pool, fourth) == [True]


async def test_a_row_whose_mark_was_lost_is_published_again_by_the_relay(pool: db.Pool) -> None:
    sent = Sent()
    uow = UnitOfWork(pool, "onboarding", sent)
    loop = asyncio.create_task(uow.run_marks(3600))
    await asyncio.sleep(0)
    event_id = await emit(uow)
    uow._unmarked.clear()  # the process died before its marks were written
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert await marked(pool, event_id) == [False]

    relayed = await UnitOfWork(pool, "onboarding", sent).relay_once(older_than_seconds=0)

    assert relayed >= 1
    assert [p["id"] for p in sent.payloads].count(str(event_id)) == 2
    assert await marked(pool, event_id) == [True]
