"""The embedded broker keeps everything in memory: restarted in the middle of twenty
onboardings, it comes back empty. Every tenancy must still end ``active``, exactly once: the
outboxes publish what was not yet sent, and the re-drive re-emits what the broker lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared import db
from shared.identifiers import service_database_name, tenant_object_name
from shared.kafka_admin import ensure_topics
from shared.topics import PARTITIONS, Topic
from stack.broker import EmbeddedBroker
from tests.conftest import Servers
from tests.harness import WORKERS, Client, Slice, WorkerProcess, load_example_catalogue, stop_all

pytestmark = pytest.mark.slow

COUNCILS = (
    "E07000223",
    "E07000032",
    "E07000224",
    "E07000105",
    "E07000170",
    "E07000200",
    "E07000171",
    "E07000066",
    "E07000084",
    "E07000129",
    "E07000033",
    "E07000136",
    "E07000067",
    "E07000143",
    "E07000234",
    "E07000144",
    "E07000172",
    "E07000068",
    "E07000095",
    "E07000117",
)


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_twenty_onboardings_survive_the_broker_restarting_empty(
    servers: Servers, own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    slice_ = Slice(servers.postgres_dsn, own_broker.bootstrap_servers, tmp_path / "slice")
    slice_.root.mkdir()
    await db.ensure_database(slice_.database_url)
    workers = [WorkerProcess(name, slice_) for name in WORKERS]
    pool = await db.create_pool(slice_.database_url, max_size=4)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            await asyncio.to_thread(worker.wait_ready)
        await load_example_catalogue(pool)
        async with Client(slice_, pool) as client:
            tenancies = [await client.onboard(council) for council in COUNCILS[:10]]
            await asyncio.sleep(0.2)  # some are part-way through their steps
            await asyncio.to_thread(own_broker.restart)
            # What the launcher does after restarting its broker: the topics again.
            await ensure_topics(
                own_broker.bootstrap_servers, [slice_.topic(t) for t in Topic], PARTITIONS
            )
            tenancies += [await client.onboard(council) for council in COUNCILS[10:]]
            for tenancy_id in tenancies:
                found = await client.wait_for(tenancy_id, timeout=120)
                assert found["state"] == "active", (found["reason"], found["steps"])
            await assert_once_each(client, slice_, tenancies)
    finally:
        stop_all(workers)
        await pool.close()


async def assert_once_each(client: Client, slice_: Slice, tenancies: list[str]) -> None:
    async with client.pool.acquire() as conn:
        themes = await conn.fetch(
            "SELECT tenancy_id::text, count(*) FROM branding.brand_versions"
            " WHERE tenancy_id = ANY($1::uuid[]) GROUP BY tenancy_id",
            tenancies,
        )
        meters = await conn.fetch(
            "SELECT tenancy_id::text, count(*) FROM metering.tenancies"
            " WHERE tenancy_id = ANY($1::uuid[]) GROUP BY tenancy_id",
            tenancies,
        )
        provisioned = await conn.fetchval(
            "SELECT count(*) FROM onboarding.outbox WHERE payload->>'type' = $1",
            Topic.TENANCY_PROVISIONED.event_type,
        )
    assert {row["count"] for row in themes} == {1}
    assert len(themes) == len(tenancies)
    assert {row["count"] for row in meters} == {1}
    assert provisioned == len(tenancies)
    database = service_database_name(slice_.name, "bin-collections")
    conn = await db.connect(db.with_database(slice_.server_dsn, database))
    try:
        names = [tenant_object_name(t) for t in tenancies]
        schemas = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1::text[])", names
        )
        roles = await conn.fetchval(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1::text[])", names
        )
    finally:
        await conn.close()
    assert schemas == len(tenancies)
    assert roles == len(tenancies)
