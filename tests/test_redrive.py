"""The re-drive: a tenancy that stops moving has its triggering event sent again, waiting longer
each time, and after its last attempt it is failed with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.onboarding.app import MIGRATIONS
from services.onboarding.redrive import redrive_once
from services.onboarding.repository import TenancyRepository
from shared import audit, db
from shared.events import OnboardingRequestedData
from shared.outbox import UnitOfWork
from tests.harness import Slice


@pytest.fixture
async def pool(crash_slice: Slice) -> AsyncIterator[db.Pool]:
    """The onboarding worker's tables with no worker running: only this test re-drives."""
    pool = await db.create_pool(crash_slice.database_url, max_size=2)
    await db.migrate(pool, "onboarding", MIGRATIONS)
    await db.migrate(pool, "audit", audit.MIGRATIONS)
    yield pool
    await pool.close()


async def nowhere(payload: dict[str, Any], **kw: Any) -> None:
    raise AssertionError("nothing to publish: the lost request's event was never stored")


async def test_a_stalled_tenancy_is_redriven_with_backoff_then_failed(pool: db.Pool) -> None:
    uow = UnitOfWork(pool, "onboarding", nowhere)
    tenancy_id = "0b7a1b8e-5f2c-4c1e-9d3a-7e6f5a4b3c2d"
    async with pool.acquire() as conn:
        # A request whose event the broker lost before anyone read it, an hour ago.
        await TenancyRepository(conn).add_request(
            tenancy_id,
            "E07000079",
            "Cotswold District Council",
            "bin-collections",
            OnboardingRequestedData(council="E07000079", service_id="bin-collections"),
        )
        await conn.execute(
            "UPDATE onboarding.tenancies SET updated_at = now() - interval '1 hour' WHERE id = $1",
            tenancy_id,
        )

    async def attempts() -> int:
        value: int = await pool.fetchval(
            "SELECT redrive_attempts FROM onboarding.tenancies WHERE id = $1", tenancy_id
        )
        return value

    await redrive_once(uow, after_seconds=60, max_attempts=2)
    assert await attempts() == 1
    await redrive_once(uow, after_seconds=60, max_attempts=2)  # too soon: it waits longer now
    assert await attempts() == 1
    await pool.execute(
        "UPDATE onboarding.tenancies SET updated_at = now() - interval '90 seconds' WHERE id = $1",
        tenancy_id,
    )
    await redrive_once(uow, after_seconds=60, max_attempts=2)  # 90 s < 2 x 60 s
    assert await attempts() == 1
    await pool.execute(
        "UPDATE onboarding.tenancies SET updated_at = now() - interval '121 seconds' WHERE id = $1",
        tenancy_id,
    )
    await redrive_once(uow, after_seconds=60, max_attempts=2)
    assert await attempts() == 2
    await pool.execute(
        "UPDATE onboarding.tenancies SET updated_at = now() - interval '1 hour' WHERE id = $1",
        tenancy_id,
    )
    await redrive_once(uow, after_seconds=60, max_attempts=2)
    async with pool.acquire() as conn:
        found = await TenancyRepository(conn).status(tenancy_id)
    assert found is not None
    assert found["state"] == "failed"
    assert found["reason"] == (
        "stalled in requested after 2 re-drives; see the dead letters and the trace"
    )


async def test_a_tenancy_queued_behind_others_that_move_is_not_redriven(pool: db.Pool) -> None:
    """A burst bigger than the workers clear before the re-drive's wait is a queue: while
    tenancies still leave the state one waits in, it is neither re-driven nor failed."""
    uow = UnitOfWork(pool, "onboarding", nowhere)
    queued, moving = "5d0c7e1a-3b2f-4a6d-8c9e-1f2a3b4c5d6e", "6e1d8f2b-4c3a-4b7e-9d0f-2a3b4c5d6e7f"
    async with pool.acquire() as conn:
        for tenancy_id, gss, name in (
            (queued, "E07000080", "Forest of Dean District Council"),
            (moving, "E07000081", "Gloucester City Council"),
        ):
            await TenancyRepository(conn).add_request(
                tenancy_id,
                gss,
                name,
                "bin-collections",
                OnboardingRequestedData(council=gss, service_id="bin-collections"),
            )
        # Both registered an hour ago; the other tenancy became active a moment ago.
        await conn.execute(
            "UPDATE onboarding.tenancies SET state = 'registered',"
            " registered_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'"
            " WHERE id = $1",
            queued,
        )
        await conn.execute(
            "UPDATE onboarding.tenancies SET state = 'active',"
            " registered_at = now() - interval '1 hour', active_at = now() - interval '5 seconds'"
            " WHERE id = $1",
            moving,
        )

    async def attempts() -> int:
        value: int = await pool.fetchval(
            "SELECT redrive_attempts FROM onboarding.tenancies WHERE id = $1", queued
        )
        return value

    for _ in range(3):
        await redrive_once(uow, after_seconds=60, max_attempts=1)
    assert await attempts() == 0
    assert await pool.fetchval("SELECT state FROM onboarding.tenancies WHERE id = $1", queued) == (
        "registered"
    )

    # Nothing has left 'registered' for longer than the wait: now it is stalled.
    await pool.execute(
        "UPDATE onboarding.tenancies SET active_at = now() - interval '2 minutes' WHERE id = $1",
        moving,
    )
    await redrive_once(uow, after_seconds=60, max_attempts=1)
    assert await attempts() == 1
