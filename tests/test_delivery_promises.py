"""Promises 2 and 3 on the real broker: duplicates change nothing; poison events are
dead-lettered with their error while the worker carries on."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from shared.identifiers import tenant_object_name
from shared.topics import Topic
from tests.harness import WORKERS, Client, drained

SCHEMAS = WORKERS


async def effects_of(platform: Client, tenancy_id: str) -> dict[str, object]:
    pool = platform.pool
    counts: dict[str, object] = {}
    for schema in SCHEMAS:
        counts[f"{schema}.outbox"] = await pool.fetchval(
            f"SELECT count(*) FROM {schema}.outbox WHERE key = $1", tenancy_id
        )
    counts["tenancy"] = dict(
        await pool.fetchrow(
            "SELECT state, registered_at, active_at, updated_at FROM onboarding.tenancies"
            " WHERE id = $1",
            tenancy_id,
        )
    )
    counts["steps"] = [
        dict(r)
        for r in await pool.fetch(
            "SELECT step, status, updated_at FROM onboarding.tenancy_steps WHERE tenancy_id = $1"
            " ORDER BY step",
            tenancy_id,
        )
    ]
    counts["brand_versions"] = await pool.fetchval(
        "SELECT count(*) FROM branding.brand_versions WHERE tenancy_id = $1", tenancy_id
    )
    counts["meters"] = await pool.fetchval(
        "SELECT count(*) FROM metering.meters WHERE tenancy_id = $1", tenancy_id
    )
    counts["roles"] = await pool.fetchval(
        "SELECT count(*) FROM pg_roles WHERE rolname = $1", tenant_object_name(tenancy_id)
    )
    return counts


async def test_every_event_delivered_twice_changes_nothing(platform: Client) -> None:
    tenancy_id = await platform.onboard("E09000007")  # Camden
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    await drained(platform.slice)
    before = await effects_of(platform, tenancy_id)

    events = []
    for schema in SCHEMAS:
        events += await platform.pool.fetch(
            f"SELECT topic, key, payload, headers FROM {schema}.outbox WHERE key = $1",
            tenancy_id,
        )
    published_types = {e["payload"]["type"].split(".")[-2] for e in events}
    assert published_types >= {
        "requested",
        "registered",
        "ready",
        "applied",
        "enabled",
        "provisioned",
    }
    for _ in range(2):
        for event in events:
            await platform.broker.publish(
                event["payload"],
                topic=event["topic"],
                key=event["key"].encode(),
                headers=event["headers"],
            )
    await drained(platform.slice)

    assert await effects_of(platform, tenancy_id) == before
    assert before["brand_versions"] == 1
    assert before["roles"] == 1


async def dead_letters(platform: Client, schema: str, key: str) -> list[dict[str, object]]:
    rows = await platform.pool.fetch(
        f"SELECT topic, error_type, error, payload FROM {schema}.dead_letters WHERE key = $1",
        key,
    )
    return [dict(r) for r in rows]


async def test_malformed_and_invalid_events_are_dead_lettered_and_workers_go_on(
    platform: Client,
) -> None:
    key = f"poison-{uuid.uuid4()}"
    await platform.publish_raw(Topic.TENANCY_REGISTERED, b"{not json", key=key)
    await platform.publish_raw(
        Topic.TENANCY_REGISTERED,
        json.dumps({"specversion": "1.0", "type": "wrong", "data": {}}).encode(),
        key=key,
    )
    await platform.publish_raw(Topic.ONBOARDING_REQUESTED, b"\xff\xfe binary", key=key)
    await drained(platform.slice)

    for schema in ("isolation", "branding", "metering"):
        letters = await dead_letters(platform, schema, key)
        assert len(letters) == 2, (schema, letters)
        assert {letter["error_type"] for letter in letters} == {
            "JSONDecodeError",
            "ValidationError",
        }
        invalid = next(x for x in letters if x["error_type"] == "ValidationError")
        assert "event.data.service: Field required" in str(invalid["error"])
    assert len(await dead_letters(platform, "onboarding", key)) == 1

    # The Kafka dead-letter topic carries the original bytes and the error.
    consumer = AIOKafkaConsumer(
        platform.slice.topic(Topic.DLQ_ISOLATION),
        bootstrap_servers=platform.slice.bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        records = [r for rs in batches.values() for r in rs if r.key == key.encode()]
    finally:
        await consumer.stop()
    assert b"{not json" in [r.value for r in records]
    headers = dict(next(r for r in records if r.value == b"{not json").headers)
    assert headers["x-error-type"] == b"JSONDecodeError"
    assert headers["x-original-topic"] == platform.slice.topic(Topic.TENANCY_REGISTERED).encode()

    # ...and the workers carry on.
    tenancy_id = await platform.onboard("E09000019")  # Islington
    assert (await platform.wait_for(tenancy_id))["state"] == "active"


async def test_dead_lettered_event_of_a_tenancy_fails_it_visibly(platform: Client) -> None:
    tenancy_id = await platform.onboard("E09000020")  # Kensington and Chelsea
    await platform.wait_for(tenancy_id)
    # A well-formed envelope for another (made-up) tenancy whose data breaks the contract.
    stranger = str(uuid.uuid4())
    async with platform.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO onboarding.tenancies (id, council_gss, council_name, service_id, state,"
            " contact) VALUES ($1, 'E09000021', 'Kingston', 'bin-collections', 'registered', '{}')",
            stranger,
        )
    bad = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests",
        "type": Topic.TENANCY_REGISTERED.event_type,
        "subject": stranger,
        "time": "2026-11-22T12:00:00Z",
        "data": {"council": "nope"},
    }
    await platform.publish_raw(Topic.TENANCY_REGISTERED, json.dumps(bad).encode(), key=stranger)

    found = await platform.wait_for(stranger, frozenset({"failed"}))

    assert found["reason"].startswith("dead-lettered: ValidationError")
    assert found["failed_step"] in {"isolation", "branding", "metering"}


async def test_request_the_broker_lost_is_redriven_to_active(platform: Client) -> None:
    async def broker_that_loses_everything(payload: object, **_: object) -> None:
        return None  # acknowledged, then gone: what an in-memory broker restart does

    lossy = platform.uow()
    lossy._publish = broker_that_loses_everything  # type: ignore[assignment]
    async with lossy.transaction() as tx:
        from services.onboarding.service import Person, accept_request

        tenancy_id = await accept_request(
            tx,
            platform.councils,
            council_code="E09000030",
            service_id="bin-collections",
            contact=None,
            brand=None,
            source="tests",
            accepted_by=Person("Test operator", "operator"),
        )

    found = await platform.wait_for(tenancy_id, timeout=30)

    assert found["state"] == "active"
    attempts = await platform.pool.fetchval(
        "SELECT redrive_attempts FROM onboarding.tenancies WHERE id = $1", tenancy_id
    )
    assert attempts >= 1


async def test_step_result_the_broker_lost_is_replayed_by_the_redrive(platform: Client) -> None:
    isolation = platform.workers["isolation"].uow  # type: ignore[attr-defined]
    real_publish = isolation._publish
    lost: list[str] = []
    target: dict[str, str] = {}

    async def loses_first_result(payload: dict[str, object], **kw: object) -> None:
        if kw.get("key") == target.get("id") and not lost:
            lost.append(str(payload["type"]))  # acknowledged, then gone with the broker
            return
        await real_publish(payload, **kw)

    isolation._publish = loses_first_result
    try:
        async with platform.uow().transaction() as tx:
            from services.onboarding.service import Person, accept_request

            target["id"] = tenancy_id = await accept_request(
                tx,
                platform.councils,
                council_code="E09000031",
                service_id="bin-collections",
                contact=None,
                brand=None,
                source="tests",
                accepted_by=Person("Test operator", "operator"),
            )
        found = await platform.wait_for(tenancy_id, timeout=30)
    finally:
        isolation._publish = real_publish

    assert lost == ["uk.gov.tenancy.isolation.ready.v1"]
    assert found["state"] == "active"
    assert (
        await platform.pool.fetchval(
            "SELECT count(*) FROM isolation.outbox WHERE key = $1", tenancy_id
        )
        == 1
    )


async def test_event_hit_by_an_outage_is_redelivered_not_lost(
    platform: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offset is committed only after the effects: an event whose handler met an outage
    comes back by itself, without waiting for the re-drive that would otherwise hide a loss."""
    from services.metering.repository import Meters

    real_open = Meters.open
    outages: list[str] = []

    async def open_after_an_outage(self: Meters, tenancy_id: str, *args: object) -> None:
        if not outages:
            outages.append(tenancy_id)
            raise ConnectionRefusedError("database went away")
        await real_open(self, tenancy_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Meters, "open", open_after_an_outage)
    tenancy_id = await platform.onboard("E09000032")  # Wandsworth

    found = await platform.wait_for(tenancy_id)

    assert outages == [tenancy_id]
    assert found["state"] == "active"
    assert (
        await platform.pool.fetchval(
            "SELECT redrive_attempts FROM onboarding.tenancies WHERE id = $1", tenancy_id
        )
        == 0
    )
    assert (
        await platform.pool.fetchval(
            "SELECT count(*) FROM metering.meters WHERE tenancy_id = $1", tenancy_id
        )
        == 2
    )
