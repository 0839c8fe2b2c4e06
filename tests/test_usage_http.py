"""Usage over HTTP (``POST /usage``), through the real API process, broker and metering worker:
a service's software posts the usage.recorded events it would publish, one or a batch; they
are checked as metering checks them, taken whole or not at all, stored before the 202, and
counted once however often, and by whichever path, they arrive."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from api.app import create_app
from api.platform import Platform
from api.settings import ApiSettings
from api.throttle import FailedTokens
from shared import db
from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.messaging import create_broker
from shared.topics import Topic
from tests.conftest import Api
from tests.harness import Client, drained, offboard, records_on

SERVICE = "metering-drill"  # pooled; count, sum, max and unique_count meters
BATCH = "application/cloudevents-batch+json"
# Councils no other test module uses.
MAIN, CLOSED, BINS = "E08000008", "E07000076", "E07000114"  # Tameside, Tendring, Thanet


def event(
    tenancy_id: str,
    meter: str = "api_calls",
    quantity: Any = 1,
    *,
    month: str = "2026-07",
    source: str = SERVICE,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {"meter": meter, "quantity": quantity}
    if "value" in extra:
        data["value"] = extra.pop("value")
    return {
        "specversion": "1.0",
        "id": f"http-{uuid.uuid4().hex}",
        "source": source,
        "type": "uk.gov.tenancy.usage.recorded.v1",
        "subject": tenancy_id,
        "time": f"{month}-15T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
        **extra,
    }


@dataclass
class World:
    tenancy: str  # an active metering-drill tenancy
    closed: str  # an offboarded one
    other: str  # an active bin-collections tenancy
    service: dict[str, str]  # metering-drill's service token
    bins: dict[str, str]  # bin-collections' service token
    operator: dict[str, str]


async def joined(
    platform: Client, service: str, staying: str, leaving: str, of_bins: str
) -> tuple[str, str, str]:
    """Three councils' tenancies: one active in ``service``, one that left it, and one active
    in bin-collections."""
    tenancy = await platform.onboard(staying, service=service)
    left = await platform.onboard(leaving, service=service)
    other = await platform.onboard(of_bins, service="bin-collections")
    ends = await asyncio.gather(*(platform.wait_for(t) for t in (tenancy, left, other)))
    assert [e["state"] for e in ends] == ["active"] * 3, ends
    await offboard(platform, left)
    gone = await platform.wait_for(left, frozenset({"offboarded", "failed"}), timeout=60)
    assert gone["state"] == "offboarded", gone
    return tenancy, left, other


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(platform: Client, api: Api) -> World:
    tenancy, closed, other = await joined(platform, SERVICE, MAIN, CLOSED, BINS)
    return World(
        tenancy,
        closed,
        other,
        await api.token("service", service=SERVICE),
        await api.token("service", service="bin-collections"),
        await api.token("operator"),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


async def post(
    http: httpx.AsyncClient,
    body: Any,
    headers: dict[str, str],
    content_type: str = STRUCTURED_CONTENT_TYPE,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(
        "/usage", content=content, headers={**headers, "content-type": content_type}
    )


async def counted(pool: db.Pool, ids: list[str]) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM metering.usage_events WHERE source = $1 AND id = ANY($2)",
        SERVICE,
        ids,
    )
    return found


async def wait_counted(pool: db.Pool, ids: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := await counted(pool, ids)) < len(ids):
        assert time.monotonic() < deadline, f"{found} of {len(ids)} usage events counted"
        await asyncio.sleep(0.05)


async def recorded(pool: db.Pool, ids: list[str]) -> dict[str, int]:
    """What the API stored of these events: received rows and queued outbox rows."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM api.usage_received WHERE id = ANY($1)) AS received,"
        " (SELECT count(*) FROM metering.outbox WHERE payload->>'id' = ANY($1)) AS queued",
        ids,
    )
    assert row is not None
    return dict(row)


async def usage(http: httpx.AsyncClient, world: World, month: str) -> dict[str, str]:
    answer = await http.get(
        f"/tenancies/{world.tenancy}/usage", params={"period": month}, headers=world.operator
    )
    assert answer.status_code == 200, answer.text
    shown: dict[str, str] = answer.json()["usage"]
    return shown


def ids(*events: dict[str, Any]) -> list[str]:
    return [e["id"] for e in events]


async def test_one_event_and_a_batch_are_counted_and_published_unchanged(
    world: World, http: httpx.AsyncClient, platform: Client
) -> None:
    one = event(world.tenancy, partitionkey="ward-7", sequence=3)  # extensions are kept
    answer = await post(http, one, world.service)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "accepted": 1,
        "duplicates": 0,
        "events": [{"id": one["id"], "status": "accepted"}],
    }
    plain = event(world.tenancy, quantity=2)
    answer = await post(http, plain, world.service, "application/json")
    assert answer.status_code == 202, answer.text

    batch = [
        event(world.tenancy, quantity=3),
        event(world.tenancy, "storage_gb", 1.25),
        event(world.tenancy, "seats", 9),
        event(world.tenancy, "active_users", value="alice"),
        event(world.tenancy, "active_users", value="bob"),
        event(world.tenancy, "active_users", value="alice"),
    ]
    answer = await post(http, batch, world.service, BATCH)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["duplicates"]) == (6, 0)
    assert [e["id"] for e in body["events"]] == ids(*batch)

    await wait_counted(platform.pool, ids(one, plain, *batch))
    assert await usage(http, world, "2026-07") == {
        "active_users": "2",
        "api_calls": "6",
        "seats": "9",
        "storage_gb": "1.25",
    }
    # On the topic as sent: structured mode, keyed by the tenancy, every attribute kept.
    records = await records_on(platform.slice, Topic.USAGE_RECORDED, world.tenancy)
    sent = {json.loads(value or b"")["id"]: (value, headers) for value, headers in records}
    value, headers = sent[one["id"]]
    assert json.loads(value or b"") == one
    assert headers["content-type"] == STRUCTURED_CONTENT_TYPE.encode()
    assert "traceparent" in headers


async def test_an_event_sent_again_or_by_both_paths_counts_once(
    world: World, http: httpx.AsyncClient, platform: Client
) -> None:
    month = "2026-06"
    twice = event(world.tenancy, month=month)
    for status in ("accepted", "duplicate"):
        answer = await post(http, twice, world.service)
        assert answer.status_code == 202, answer.text
        assert answer.json()["events"] == [{"id": twice["id"], "status": status}]
    again = event(world.tenancy, month=month)
    answer = await post(http, [again, again, twice], world.service, BATCH)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "accepted": 1,
        "duplicates": 2,
        "events": [
            {"id": again["id"], "status": "accepted"},
            {"id": again["id"], "status": "duplicate"},
            {"id": twice["id"], "status": "duplicate"},
        ],
    }

    # On the topic first, then over HTTP; over HTTP first, then on the topic.
    kafka_first = event(world.tenancy, month=month)
    await publish(platform, [kafka_first])
    await wait_counted(platform.pool, ids(kafka_first))
    answer = await post(http, kafka_first, world.service)
    assert answer.status_code == 202, answer.text
    assert answer.json()["events"] == [{"id": kafka_first["id"], "status": "duplicate"}]
    http_first = event(world.tenancy, month=month)
    assert (await post(http, http_first, world.service)).status_code == 202
    await publish(platform, [http_first, kafka_first])

    await wait_counted(platform.pool, ids(twice, again, kafka_first, http_first))
    await drained(platform.slice)
    assert (await usage(http, world, month))["api_calls"] == "4"
    assert await counted(platform.pool, ids(twice, again, kafka_first, http_first)) == 4
    # Not even queued twice: a duplicate is answered, not published again.
    assert await recorded(platform.pool, ids(twice, again)) == {"received": 2, "queued": 2}


async def publish(platform: Client, events: list[dict[str, Any]]) -> None:
    """As a shared service that speaks Kafka would, in structured mode."""
    producer = AIOKafkaProducer(bootstrap_servers=platform.slice.bootstrap, acks="all")
    await producer.start()
    try:
        for item in events:
            await producer.send_and_wait(
                platform.slice.topic(Topic.USAGE_RECORDED),
                json.dumps(item).encode(),
                key=item["subject"].encode(),
                headers=[("content-type", STRUCTURED_CONTENT_TYPE.encode())],
            )
    finally:
        await producer.stop()


async def test_the_same_id_with_other_content_is_refused(
    world: World, http: httpx.AsyncClient, platform: Client
) -> None:
    first = event(world.tenancy, month="2026-05")
    assert (await post(http, first, world.service)).status_code == 202
    other = {**first, "data": {"meter": "api_calls", "quantity": 5}}

    answer = await post(http, other, world.service)
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert problem["errors"][0].startswith(f"id: {first['id']!r} from 'metering-drill'")
    assert problem["rejected"] == [
        {
            "index": None,
            "id": first["id"],
            "reason": "conflicting_duplicate",
            "errors": problem["errors"],
        }
    ]

    fresh = event(world.tenancy, month="2026-05")
    answer = await post(http, [fresh, other], world.service, BATCH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0].startswith(f"[1].id: {first['id']!r}")
    within = event(world.tenancy, month="2026-05")
    changed = {**within, "data": {"meter": "api_calls", "quantity": 2}}
    answer = await post(http, [within, changed], world.service, BATCH)
    assert answer.status_code == 422, answer.text
    assert [r["index"] for r in answer.json()["rejected"]] == [1]
    assert await recorded(platform.pool, ids(fresh, within)) == {"received": 0, "queued": 0}

    await wait_counted(platform.pool, ids(first))
    await drained(platform.slice)
    assert (await usage(http, world, "2026-05"))["api_calls"] == "1"


FUTURE = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
# (what is wrong with the second event of a batch, its reason code, the field named)
REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    ("no type", {"type": None}, "malformed", "type"),
    ("not a uuid", {"subject": "not-a-tenancy"}, "malformed", "subject"),
    ("bad extension", {"Ward": "7"}, "malformed", "Ward"),
    ("no time zone", {"time": "2026-07-15T10:00:00"}, "malformed", "time"),
    ("negative", {"data": {"meter": "api_calls", "quantity": -1}}, "negative_quantity",
     "data.quantity"),
    ("half a call", {"data": {"meter": "api_calls", "quantity": 1.5}}, "not_a_whole_number",
     "data.quantity"),
    ("no value", {"data": {"meter": "active_users"}}, "missing_value", "data.value"),
    ("future", {"time": FUTURE}, "future_time", "time"),
    ("unknown meter", {"data": {"meter": "printer_pages"}}, "unknown_meter", "data.meter"),
    ("nobody's tenancy", {"subject": str(uuid.uuid4())}, "unknown_tenancy", "subject"),
    ("another service's", {"subject": "<other>"}, "unknown_tenancy", "subject"),
    ("offboarded", {"subject": "<closed>"}, "tenancy_closed", "subject"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [pytest.param(change, reason, field, id=name) for name, change, reason, field in REFUSALS],
)
async def test_each_refusal_names_the_field_and_records_nothing(
    world: World,
    http: httpx.AsyncClient,
    platform: Client,
    change: dict[str, Any],
    reason: str,
    field: str,
) -> None:
    subjects = {"<other>": world.other, "<closed>": world.closed}
    good = event(world.tenancy)
    bad = event(world.tenancy)
    for key, value in change.items():
        if value is None:
            del bad[key]
        else:
            bad[key] = subjects.get(value, value) if isinstance(value, str) else value

    answer = await post(http, [good, bad, event(world.tenancy)], world.service, BATCH)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert [(r["index"], r["reason"]) for r in problem["rejected"]] == [(1, reason)]
    assert problem["errors"], problem
    assert all(e.startswith(f"[1].{field}: ") for e in problem["errors"]), problem
    assert problem["detail"].startswith(f"[1].{field}: ")

    alone = await post(http, bad, world.service)
    assert alone.status_code == 422, alone.text
    assert alone.json()["errors"][0].startswith(f"{field}: ")
    assert alone.json()["rejected"][0]["reason"] == reason
    assert await recorded(platform.pool, ids(good, bad)) == {"received": 0, "queued": 0}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"{not json", STRUCTURED_CONTENT_TYPE, 422, "body: not JSON"),
        (b"[]", BATCH, 422, "at least one event"),
        (b"[1, 2]", BATCH, 422, "[0]: must be a JSON object"),
        (b"{}", BATCH, 422, "a batch is a JSON array"),
        (b"[{}]", STRUCTURED_CONTENT_TYPE, 422, "body: must be a JSON object"),
        (b'{"quantity": NaN}', STRUCTURED_CONTENT_TYPE, 422, "NaN is not a JSON value"),
        (b"[" + b"{}," * 1000 + b"{}]", BATCH, 422, "at most 1000 events, not 1001"),
        (b"{}", "text/plain", 415, "content-type"),
        (b"{}", "", 415, "content-type"),
        (b" " * (4 * 1024 * 1024 + 1), STRUCTURED_CONTENT_TYPE, 413, "at most 4 MiB"),
    ],
)
async def test_a_body_that_is_no_event_is_refused_clearly(
    world: World, http: httpx.AsyncClient, body: bytes, content_type: str, status: int, words: str
) -> None:
    answer = await post(http, body, world.service, content_type)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert words in answer.json()["detail"], answer.json()


async def test_only_the_services_own_token_may_report_its_usage(
    world: World, http: httpx.AsyncClient, api: Api, platform: Client
) -> None:
    mine = event(world.tenancy)
    assert (await post(http, mine, {})).status_code == 401
    for role, council in (("operator", None), ("council-admin", MAIN), ("finance", None)):
        answer = await post(http, mine, await api.token(role, council=council))
        assert answer.status_code == 403, (role, answer.text)

    # Another service's token: the events' source is not its service.
    answer = await post(http, [event(world.tenancy), mine], world.bins, BATCH)
    assert answer.status_code == 403, answer.text
    assert answer.json()["errors"] == [
        "[0].source: 'metering-drill' is not this token's service; send usage of"
        " bin-collections only, with source 'bin-collections'",
        "[1].source: 'metering-drill' is not this token's service; send usage of"
        " bin-collections only, with source 'bin-collections'",
    ]
    # ...and naming itself as the source does not reach a tenancy of another service.
    disguised = event(world.tenancy, "missed_bin_reports", source="bin-collections")
    answer = await post(http, disguised, world.bins)
    assert answer.status_code == 422, answer.text
    assert answer.json()["rejected"][0]["reason"] == "unknown_tenancy"
    answer = await post(http, event(world.other, source="bin-collections"), world.service)
    assert answer.status_code == 403, answer.text
    assert await recorded(platform.pool, ids(mine, disguised)) == {"received": 0, "queued": 0}


async def test_a_request_is_stored_before_the_202_and_delivered_when_the_broker_is_back(
    world: World, platform: Client
) -> None:
    """The API's publish fails (the broker is away): the request is answered 202 all the
    same, as it is in PostgreSQL, and metering's relay delivers it later."""
    settings: ApiSettings = platform.slice.settings(ApiSettings)
    app = create_app(settings)
    pool = await db.create_pool(settings.database_url, max_size=2)
    deps = Platform(
        settings,
        pool,
        create_broker(settings, client_id="tests-unconnected"),
        platform.councils,
        FailedTokens(1000, 60),
    )
    attempts: list[str] = []

    async def broker_away(payload: dict[str, Any], **_: Any) -> None:
        attempts.append(str(payload["id"]))
        raise KafkaConnectionError("the broker is away")

    deps.publish = broker_away  # type: ignore[method-assign]
    app.state.platform = deps
    events = [event(world.tenancy, month="2026-04") for _ in range(3)]
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            answer = await post(http, events, world.service, BATCH)
    finally:
        await pool.close()
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 3
    assert sorted(attempts) == sorted(ids(*events))  # each publish tried once, and failed
    rows = await platform.pool.fetch(
        "SELECT payload FROM metering.outbox WHERE payload->>'id' = ANY($1)", ids(*events)
    )
    assert sorted((r["payload"] for r in rows), key=lambda p: p["id"]) == sorted(
        events, key=lambda e: e["id"]
    )
    await wait_counted(platform.pool, ids(*events))  # published by metering's relay
    published = await platform.pool.fetchval(
        "SELECT count(*) FROM metering.outbox WHERE payload->>'id' = ANY($1)"
        " AND published_at IS NOT NULL",
        ids(*events),
    )
    assert published == 3
