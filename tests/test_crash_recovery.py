"""Promise 1 and 2 with real processes: a worker killed mid-flight and started again still
brings the tenancy to ``active``, with exactly one schema and one role, in one trace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from shared import db
from shared.identifiers import service_database_name, tenant_object_name
from tests.harness import (
    WORKERS,
    Client,
    Slice,
    WorkerProcess,
    drained,
    load_example_catalogue,
    stop_all,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(crash_slice: Slice) -> Iterator[dict[str, WorkerProcess]]:
    procs = {name: WorkerProcess(name, crash_slice) for name in WORKERS}
    yield procs
    stop_all(procs.values())


async def start_all(
    processes: dict[str, WorkerProcess], client: Client, **env: dict[str, str]
) -> None:
    for name, proc in processes.items():
        proc.start(**env.get(name, {}))
    for proc in processes.values():
        await asyncio.to_thread(proc.wait_ready)
    await load_example_catalogue(client.pool)


async def tenant_objects(slice_: Slice, tenancy_id: str) -> tuple[int, int, int]:
    database = service_database_name(slice_.name, "bin-collections")
    conn = await db.connect(db.with_database(slice_.server_dsn, database))
    name = tenant_object_name(tenancy_id)
    try:
        schemas = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", name)
        roles = await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", name)
        ledger = await conn.fetchval(
            "SELECT count(*) FROM tenancy_platform.tenants WHERE tenancy_id = $1", tenancy_id
        )
    finally:
        await conn.close()
    return schemas, roles, ledger


@pytest.mark.parametrize("victim", WORKERS)
async def test_worker_killed_after_commit_still_ends_active_once(
    victim: str, processes: dict[str, WorkerProcess], client: Client, crash_slice: Slice
) -> None:
    await start_all(processes, client, **{victim: {"TENANCY_FAILPOINTS": f"{victim}.after-commit"}})
    tenancy_id = await client.onboard("E09000012")

    # The worker commits its effects, then dies before publishing or committing its offset.
    assert await asyncio.to_thread(processes[victim].wait_exit, 30) == 137
    processes[victim].start()

    found = await client.wait_for(tenancy_id)
    assert found["state"] == "active", found
    assert await tenant_objects(crash_slice, tenancy_id) == (1, 1, 1)
    pool = client.pool
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM branding.brand_versions WHERE tenancy_id = $1", tenancy_id
        )
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM metering.meters WHERE tenancy_id = $1", tenancy_id
        )
        == 2
    )
    for schema, topic in [
        ("onboarding", "onboarding.registered"),
        ("isolation", "isolation.ready"),
        ("branding", "branding.applied"),
        ("metering", "metering.enabled"),
        ("onboarding", "onboarding.provisioned"),
    ]:
        emitted = await pool.fetchval(
            f"SELECT count(*) FROM {schema}.outbox WHERE key = $1 AND topic = $2",
            tenancy_id,
            crash_slice.prefix + topic,
        )
        assert emitted == 1, (schema, topic, emitted)

    # One onboarding is one trace, across all four workers.
    await drained(crash_slice)
    spans = [
        json.loads(line) for line in (crash_slice.root / "spans.jsonl").read_text().splitlines()
    ]
    mine = [s for s in spans if s["attributes"].get("tenancy.id") == tenancy_id]
    trace_ids = {s["trace_id"] for s in mine}
    assert len(trace_ids) == 1, trace_ids
    services = {s["service"] for s in spans if s["trace_id"] in trace_ids}
    assert services >= {f"tenancy-{w}" for w in WORKERS}, services


async def test_tenant_password_appears_in_no_event_log_or_span(
    processes: dict[str, WorkerProcess], client: Client, crash_slice: Slice
) -> None:
    await start_all(processes, client)
    tenancy_id = await client.onboard("E08000035")  # Leeds
    assert (await client.wait_for(tenancy_id))["state"] == "active"
    await drained(crash_slice)
    database = service_database_name(crash_slice.name, "bin-collections")
    admin = await db.connect(db.with_database(crash_slice.server_dsn, database))
    try:
        password = await admin.fetchval(
            "SELECT password FROM tenancy_platform.tenants WHERE tenancy_id = $1", tenancy_id
        )
    finally:
        await admin.close()
    role = tenant_object_name(tenancy_id)
    tenant = await db.connect(
        db.with_database(crash_slice.server_dsn, database).replace(
            "postgres@", f"{role}:{password}@"
        )
    )
    await tenant.close()  # the secret is real: it opens the tenant's database

    written = [proc.output() for proc in processes.values()]
    written.append((crash_slice.root / "spans.jsonl").read_text())
    for schema in WORKERS:
        rows = await client.pool.fetch(f"SELECT payload, headers FROM {schema}.outbox")
        written += [json.dumps(r["payload"]) + json.dumps(r["headers"]) for r in rows]
    assert all(password not in text for text in written)
    assert any(tenancy_id in text for text in written)


async def test_onboarding_worker_killed_while_busy_loses_nothing(
    processes: dict[str, WorkerProcess], client: Client, crash_slice: Slice
) -> None:
    await start_all(processes, client)
    councils = ["E06000001", "E06000002", "E06000003", "E06000004", "E06000005", "E06000006"]
    tenancies = [await client.onboard(code) for code in councils]
    processes["onboarding"].kill()
    await asyncio.sleep(0.5)
    processes["onboarding"].start()

    for tenancy_id in tenancies:
        assert (await client.wait_for(tenancy_id, timeout=60))["state"] == "active"
        assert await tenant_objects(crash_slice, tenancy_id) == (1, 1, 1)
