"""Metering on the real broker and database: usage is counted exactly once, whatever repeats,
and closing a period turns it into invoices that are right to the penny."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.metering.repository import Meters
from shared import db
from shared.catalogue import PeriodKind
from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.events import Council
from shared.settings import REPO_ROOT
from shared.topics import Topic
from tests.harness import Client, Slice, WorkerProcess, drained, offboard, records_on
from tests.harness import cli as tenancy

SEPTEMBER = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)


def usage_event(
    tenancy_id: str,
    meter: str = "api_calls",
    quantity: Any = 1,
    *,
    value: str | None = None,
    time: datetime = SEPTEMBER,
    id: str | None = None,
    source: str = "metering-drill",
) -> dict[str, Any]:
    data: dict[str, Any] = {"meter": meter, "quantity": quantity}
    if value is not None:
        data["value"] = value
    return {
        "specversion": "1.0",
        "id": id or uuid.uuid4().hex,
        "source": source,
        "type": "uk.gov.tenancy.usage.recorded.v1",
        "subject": tenancy_id,
        "time": time.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


Headers = list[tuple[str, bytes]]
# One Kafka record: key, value, headers.
Record = tuple[bytes, bytes | None, Headers]


def structured(event: dict[str, Any], content_type: str = STRUCTURED_CONTENT_TYPE) -> Record:
    """A usage event in structured mode: the whole event is the value; key = the tenancy id."""
    key = str(event.get("subject", "x")).encode()
    return key, json.dumps(event).encode(), [("content-type", content_type.encode())]


def binary(event: dict[str, Any], extra_headers: Headers = ()) -> Record:  # type: ignore[assignment]
    """A usage event in binary mode: its attributes are ce_ headers, its data is the value."""
    attributes = {k: v for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers = [(f"ce_{name}", str(value).encode()) for name, value in attributes.items()]
    headers.append(("content-type", event.get("datacontenttype", "application/json").encode()))
    key = str(event.get("subject", "x")).encode()
    return key, json.dumps(event["data"]).encode(), headers + list(extra_headers)


async def send(slice_: Slice, records: list[Record]) -> None:
    """As a shared service would, to the slice's usage.recorded."""
    producer = AIOKafkaProducer(bootstrap_servers=slice_.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        topic = slice_.topic(Topic.USAGE_RECORDED)
        sent = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def publish(slice_: Slice, events: list[dict[str, Any]], raw: list[bytes] = ()) -> None:  # type: ignore[assignment]
    """Structured-mode events, then records that are not events at all."""
    await send(slice_, [structured(event) for event in events] + [(b"poison", v, []) for v in raw])


async def counted(pool: db.Pool, tenancy_id: str) -> int:
    value: int = await pool.fetchval(
        "SELECT count(*) FROM metering.usage_events WHERE tenancy_id = $1", tenancy_id
    )
    return value


async def wait_counted(pool: db.Pool, tenancy_id: str, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (found := await counted(pool, tenancy_id)) < expected:
        assert time.monotonic() < deadline, f"{found} of {expected} usage events counted"
        await asyncio.sleep(0.1)


async def usage_json(client: Client, tenancy_id: str, period: str = "2026-09") -> dict[str, Any]:
    shown = await tenancy(client.slice, "usage", tenancy_id, "--period", period, "--json")
    assert shown.returncode == 0, shown.stderr
    values: dict[str, Any] = json.loads(shown.stdout)
    return values


async def drill_tenancy(client: Client, council: str, service: str = "metering-drill") -> str:
    tenancy_id = await client.onboard(council, service=service)
    found = await client.wait_for(tenancy_id)
    assert found["state"] == "active", found
    # As if it had joined at the start of the year, so this year's periods are its own.
    await client.pool.execute(
        "UPDATE metering.tenancies SET opened_at = '2026-01-01T00:00Z' WHERE tenancy_id = $1",
        tenancy_id,
    )
    return tenancy_id


async def test_every_aggregation_counts_each_event_once(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000008")
    repeat = usage_event(tenancy_id, id="call-1")
    events = [
        repeat,
        repeat,  # a duplicate inside one batch
        usage_event(tenancy_id),
        usage_event(tenancy_id, "storage_gb", "1.25"),
        usage_event(tenancy_id, "storage_gb", "0.5"),
        usage_event(tenancy_id, "seats", 7),
        usage_event(tenancy_id, "seats", 12),
        usage_event(tenancy_id, "seats", 9),
        usage_event(tenancy_id, "active_users", value="alice"),
        usage_event(tenancy_id, "active_users", value="bob"),
        usage_event(tenancy_id, "active_users", value="alice"),
    ]
    await publish(platform.slice, events)
    await wait_counted(platform.pool, tenancy_id, 10)
    await publish(platform.slice, [repeat, events[3]])  # duplicates across batches
    await drained(platform.slice)
    assert await usage_json(platform, tenancy_id) == {
        "active_users": 2,
        "api_calls": 2,
        "seats": 12,
        "storage_gb": 1.75,
    }


async def test_bad_usage_goes_to_the_dead_letter_topic_with_its_reason_counted(
    platform: Client,
) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000009")
    first = usage_event(tenancy_id, id="reused")
    reused = {**first, "data": {"meter": "api_calls", "quantity": 5}}
    await publish(platform.slice, [first])
    await wait_counted(platform.pool, tenancy_id, 1)
    before = await rejections(platform)
    await publish(
        platform.slice,
        [
            reused,  # the same id with a different payload
            usage_event(str(uuid.uuid4())),  # nobody's tenancy
            usage_event(tenancy_id, "printer_pages"),  # not a meter of the service
            usage_event(tenancy_id, quantity=-3),
            usage_event(tenancy_id, quantity="1.5"),  # a count is whole
            usage_event(tenancy_id, "active_users"),  # unique_count without a value
            usage_event(tenancy_id),  # one good event among them
        ],
        raw=[b"{not json", b'{"specversion": "1.0"}'],
    )
    await wait_counted(platform.pool, tenancy_id, 2)
    await drained(platform.slice)
    after = await rejections(platform)
    grew = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in after}
    assert {k: v for k, v in grew.items() if v} == {
        "conflicting_duplicate": 1,
        "unknown_tenancy": 1,
        "unknown_meter": 1,
        "negative_quantity": 1,
        "not_a_whole_number": 1,
        "missing_value": 1,
        "malformed": 2,
    }
    assert (await usage_json(platform, tenancy_id))["api_calls"] == 2
    async with platform.pool.acquire() as conn:
        reason = await conn.fetchval(
            "SELECT error FROM metering.dead_letters WHERE error_type = 'unknown_meter'"
            " AND key = $1",
            tenancy_id,
        )
    assert "'printer_pages' is not a meter of metering-drill" in reason


async def rejections(client: Client) -> dict[str, int]:
    shown = await tenancy(client.slice, "billing", "rejections", "--json")
    assert shown.returncode == 0, shown.stderr
    counts: dict[str, int] = json.loads(shown.stdout)
    return counts


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    grew = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in after}
    return {reason: n for reason, n in grew.items() if n}


async def dead_letter_errors(client: Client, key: str) -> list[str]:
    rows = await client.pool.fetch("SELECT error FROM metering.dead_letters WHERE key = $1", key)
    return [row["error"] for row in rows]


async def test_extension_attributes_are_accepted_but_not_counted(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000041")
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    first = usage_event(tenancy_id, id="ext-1") | {
        "partitionkey": tenancy_id,
        "traceparent": trace,
        "sequence": 7,
        "sampled": True,
    }
    before = await rejections(platform)
    await publish(platform.slice, [first])
    await wait_counted(platform.pool, tenancy_id, 1)
    await publish(
        platform.slice,
        [
            first | {"traceparent": trace[:-1] + "0", "sequence": 8},  # the same event again
            usage_event(tenancy_id) | {"Partition_Key": "x"},
            usage_event(tenancy_id) | {"averyveryverylongname1": "x"},  # 22 characters
            usage_event(tenancy_id) | {"nested": {"a": 1}},
            usage_event(tenancy_id) | {"ID": "another"},  # no way around a known attribute
            usage_event(tenancy_id, quantity=-3) | {"partitionkey": "p"},
            usage_event(tenancy_id, quantity="1.5") | {"partitionkey": "p"},
        ],
    )
    await drained(platform.slice)
    assert grown(before, await rejections(platform)) == {
        "malformed": 4,
        "negative_quantity": 1,
        "not_a_whole_number": 1,
    }
    assert await counted(platform.pool, tenancy_id) == 1
    assert (await usage_json(platform, tenancy_id))["api_calls"] == 1
    errors = "\n".join(await dead_letter_errors(platform, tenancy_id))
    assert "Partition_Key: not a CloudEvents attribute name" in errors
    assert "averyveryverylongname1: not a CloudEvents attribute name" in errors
    assert "ID: not a CloudEvents attribute name" in errors
    assert "nested: an extension attribute's value is a string" in errors


async def test_binary_mode_usage_is_counted_and_refused_like_structured(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000042")
    first = usage_event(tenancy_id, id="bin-1")
    storage = usage_event(tenancy_id, "storage_gb", "0.5")
    before = await rejections(platform)
    await send(platform.slice, [binary(first), binary(storage, [("ce_partitionkey", b"p")])])
    await wait_counted(platform.pool, tenancy_id, 2)

    key, value, headers = binary(usage_event(tenancy_id))

    def changed(name: str, to: bytes) -> Headers:
        return [(n, to if n == name else v) for n, v in headers]

    await send(
        platform.slice,
        [
            structured(first),  # the same event in the other mode: a repeat
            binary(first),
            binary(first | {"data": {"meter": "api_calls", "quantity": 5}}),
            binary(usage_event(tenancy_id, "printer_pages")),
            binary(usage_event(tenancy_id, quantity=-1)),
            (key, b"{not json", headers),
            (key, value, [(n, v) for n, v in headers if n != "ce_subject"]),
            (key, value, [*headers, ("ce_id", b"another")]),
            (key, value, [*headers, ("ce_Bad", b"x")]),
            (key, value, changed("ce_id", b"nul\x00id")),
            # Says structured mode, so the value must be the whole event.
            (key, value, changed("content-type", STRUCTURED_CONTENT_TYPE.encode())),
            binary(usage_event(tenancy_id)),  # the worker carries on
        ],
    )
    await wait_counted(platform.pool, tenancy_id, 3)
    await drained(platform.slice)
    assert grown(before, await rejections(platform)) == {
        "conflicting_duplicate": 1,
        "unknown_meter": 1,
        "negative_quantity": 1,
        "malformed": 6,
    }
    usage = await usage_json(platform, tenancy_id)
    assert (usage["api_calls"], usage["storage_gb"]) == (2, 0.5)
    errors = "\n".join(await dead_letter_errors(platform, tenancy_id))
    assert "'printer_pages' is not a meter of metering-drill" in errors
    assert "data: Invalid JSON" in errors
    assert "subject: Field required" in errors
    assert "ce_id: the attribute id is given more than once" in errors
    assert "Bad: not a CloudEvents attribute name" in errors
    assert "id: must not contain the NUL character" in errors

    # On the dead-letter topic: the original record, its attributes still in its headers.
    letters = await records_on(platform.slice, Topic.DLQ_METERING, tenancy_id)
    [(data, unknown)] = [(v, h) for v, h in letters if h.get("x-error-type") == b"unknown_meter"]
    assert unknown["ce_specversion"] == b"1.0"
    assert unknown["content-type"] == b"application/json"
    assert b"printer_pages" in unknown["x-error"]
    assert json.loads(data or b"")["meter"] == "printer_pages"


async def test_the_example_publisher_reports_usage_in_either_mode(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000043")

    async def example(*args: str) -> None:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "examples/usage/publish.py", tenancy_id, "api_calls", *args],
            env={**os.environ, **platform.slice.env()},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    when = ("--time", SEPTEMBER.isoformat())
    before = await rejections(platform)
    await example("--id", "example", "--count", "2", *when)
    await example("--id", "example", "--count", "2", *when, "--binary")  # the same two again
    await example("--binary", *when)
    await wait_counted(platform.pool, tenancy_id, 3)
    await drained(platform.slice)
    assert await counted(platform.pool, tenancy_id) == 3
    assert grown(before, await rejections(platform)) == {}
    sent = await records_on(platform.slice, Topic.USAGE_RECORDED, tenancy_id)
    modes = [(h["content-type"], "ce_specversion" in h) for _, h in sent]
    assert (
        modes == [(b"application/cloudevents+json", False)] * 2 + [(b"application/json", True)] * 3
    )


async def test_ten_thousand_events_with_a_fifth_repeated_count_exactly(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000010")
    unique = [usage_event(tenancy_id, "storage_gb", "0.001") for _ in range(8_000)]
    repeats = unique[::4]  # 2,000 repeats: 20% of 10,000
    await publish(platform.slice, unique[:5_000] + repeats + unique[5_000:])
    await wait_counted(platform.pool, tenancy_id, 8_000)
    await drained(platform.slice)
    assert await counted(platform.pool, tenancy_id) == 8_000
    assert (await usage_json(platform, tenancy_id))["storage_gb"] == 8.0


async def invoices_of(client: Client, service: str, period: str) -> list[dict[str, Any]]:
    shown = await tenancy(client.slice, "invoices", service, "--period", period, "--json")
    assert shown.returncode == 0, shown.stderr
    found: list[dict[str, Any]] = json.loads(shown.stdout)
    return found


async def close(client: Client, service: str, period: str) -> list[dict[str, Any]]:
    closed = await tenancy(client.slice, "billing", "close", service, period, "--json")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    found: list[dict[str, Any]] = json.loads(closed.stdout)
    return found


async def test_closing_a_period_prices_every_charge_and_writes_the_csv(
    platform: Client, tmp_path: Path
) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000011")
    quiet = await drill_tenancy(platform, "E07000012")
    events = [usage_event(tenancy_id) for _ in range(105)]  # the allowance is crossed in a batch
    events += [usage_event(tenancy_id, "storage_gb", "2.5"), usage_event(tenancy_id, "seats", 11)]
    events += [usage_event(tenancy_id, "active_users", value=f"user-{n}") for n in range(5)]
    await publish(platform.slice, events)
    await wait_counted(platform.pool, tenancy_id, len(events))

    issued = {i["council_gss"]: i for i in await close(platform, "metering-drill", "2026-09")}
    lines = {line["meter"] or line["kind"]: line for line in issued["E07000011"]["lines"]}
    assert lines["flat_fee"]["amount_pence"] == 1000
    assert lines["api_calls"]["amount_pence"] == 125  # 105 - 100 free, at 25p
    assert lines["storage_gb"]["amount_pence"] == 31  # 2.5 GB at 12.5p = 31.25p
    assert lines["seats"]["amount_pence"] == 1000  # 11 seats: two packs of 10 at £5
    assert lines["active_users"]["amount_pence"] == 350  # 2 at £1, 3 at 50p
    assert issued["E07000011"]["total_pence"] == 1000 + 125 + 31 + 1000 + 350
    assert issued["E07000012"]["total_pence"] == 1000  # no usage: the flat fee
    assert quiet == issued["E07000012"]["tenancy_id"]

    again = await close(platform, "metering-drill", "2026-09")  # closing twice issues nothing new
    assert sorted(i["id"] for i in again) == sorted(i["id"] for i in issued.values())

    path = tmp_path / "invoices.csv"
    written = await tenancy(
        platform.slice, "invoices", "metering-drill", "--period", "2026-09", "--csv", str(path)
    )
    assert written.returncode == 0, written.stderr
    rows = list(csv.DictReader(path.open()))
    ours = [r for r in rows if r["gss_code"] == "E07000011"]
    assert len(ours) == 5
    assert ours[0]["council_name"]
    assert sum(Decimal(r["amount_gbp"]) for r in ours) == Decimal("25.06")
    assert {r["invoice_total_gbp"] for r in ours} == {"25.06"}


async def test_usage_after_a_close_becomes_an_adjustment_on_the_next_invoice(
    platform: Client,
) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000033")
    july = datetime(2026, 7, 10, tzinfo=UTC)
    await publish(platform.slice, [usage_event(tenancy_id, time=july) for _ in range(110)])
    await wait_counted(platform.pool, tenancy_id, 110)
    first = [
        i
        for i in await close(platform, "metering-drill", "2026-07")
        if i["tenancy_id"] == tenancy_id
    ]
    assert first[0]["total_pence"] == 1000 + 250

    late = [usage_event(tenancy_id, time=july) for _ in range(4)]
    await publish(platform.slice, late)
    await wait_counted(platform.pool, tenancy_id, 114)
    assert (await usage_json(platform, tenancy_id, "2026-07"))["api_calls"] == 114

    august = [
        i
        for i in await close(platform, "metering-drill", "2026-08")
        if i["tenancy_id"] == tenancy_id
    ]
    adjustment = [line for line in august[0]["lines"] if line["kind"] == "adjustment"]
    assert len(adjustment) == 1
    assert adjustment[0]["amount_pence"] == 100  # 4 more reports at 25p
    assert "2026-07" in adjustment[0]["description"]
    assert august[0]["total_pence"] == 1000 + 100


async def test_a_joint_service_shares_its_cost_to_the_penny(platform: Client) -> None:
    councils = ("E07000136", "E07000067", "E07000143")
    tenancies = [await drill_tenancy(platform, c, "planning-comments") for c in councils]
    august = datetime(2026, 8, 3, tzinfo=UTC)
    events = [
        usage_event(t, "comments", 3, time=august, source="planning-comments") for t in tenancies
    ]
    await publish(platform.slice, events)
    for t in tenancies:
        await wait_counted(platform.pool, t, 1)
    issued = [
        i
        for i in await close(platform, "planning-comments", "2026-08")
        if i["tenancy_id"] in tenancies
    ]
    shares = [i["total_pence"] for i in sorted(issued, key=lambda i: i["council_gss"])]
    assert shares == [33334, 33333, 33333]  # the leftover penny: the lowest GSS code
    assert sum(shares) == 100000


async def test_offboarding_closes_the_meters_and_issues_a_final_invoice(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000234")
    now = datetime.now(UTC)
    await publish(platform.slice, [usage_event(tenancy_id, time=now) for _ in range(3)])
    await wait_counted(platform.pool, tenancy_id, 3)
    await offboard(platform, tenancy_id)
    found = await platform.wait_for(tenancy_id, frozenset({"offboarded", "failed"}), timeout=60)
    assert found["state"] == "offboarded", found
    await drained(platform.slice)
    async with platform.pool.acquire() as conn:
        final = await conn.fetchrow(
            "SELECT total_pence, final FROM metering.invoices WHERE tenancy_id = $1", tenancy_id
        )
    assert final is not None
    assert final["final"]
    assert final["total_pence"] == 1000  # the flat fee; 3 calls are inside the allowance
    before = await rejections(platform)
    await publish(platform.slice, [usage_event(tenancy_id, time=now)])
    await drained(platform.slice)
    assert (await rejections(platform)).get("tenancy_closed", 0) == before.get(
        "tenancy_closed", 0
    ) + 1
    assert await counted(platform.pool, tenancy_id) == 3


# -- a metering worker killed between its commit and its offset commit ----------------------------


@pytest.fixture
def metering_process(crash_slice: Slice) -> Iterator[WorkerProcess]:
    proc = WorkerProcess("metering", crash_slice)
    yield proc
    proc.stop()


@pytest.fixture
async def crash_pool(crash_slice: Slice) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(crash_slice.database_url, max_size=2)
    yield pool
    await pool.close()


async def test_usage_hit_by_an_outage_is_read_again_and_counted_once(
    platform: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is counted while the next is read, and its offsets recorded only once counted:
    one that meets an outage is read again, with whatever was read meanwhile, and counts once."""
    from services.metering.repository import UsageLedger

    tenancy_id = await drill_tenancy(platform, "E07000034")  # Bolsover
    real_count = UsageLedger.count
    outages: list[int] = []

    async def count_after_an_outage(self: UsageLedger, batch: Any) -> Any:
        if not outages and any(u.subject == tenancy_id for u in batch):
            outages.append(len(batch))
            raise ConnectionRefusedError("database went away")
        return await real_count(self, batch)

    monkeypatch.setattr(UsageLedger, "count", count_after_an_outage)
    await publish(platform.slice, [usage_event(tenancy_id) for _ in range(30)])
    await publish(platform.slice, [usage_event(tenancy_id) for _ in range(30)])
    await wait_counted(platform.pool, tenancy_id, 60)
    await drained(platform.slice)  # and every offset committed

    assert outages
    assert await counted(platform.pool, tenancy_id) == 60
    assert (
        await platform.pool.fetchval(
            "SELECT sum(total) FROM metering.usage_totals WHERE tenancy_id = $1", tenancy_id
        )
        == 60
    )
    assert (
        await platform.pool.fetchval(
            "SELECT count(*) FROM metering.dead_letters WHERE key = $1", tenancy_id
        )
        == 0
    )


@pytest.mark.slow
async def test_usage_redelivered_after_a_crash_counts_once(
    crash_slice: Slice, metering_process: WorkerProcess, crash_pool: db.Pool
) -> None:
    metering_process.start(TENANCY_FAILPOINTS="metering.after-commit", USAGE_BATCH_SIZE="50")
    await asyncio.to_thread(metering_process.wait_ready)
    tenancy_id = str(uuid.uuid4())
    from shared.catalogue import load_manifest

    manifest = load_manifest(Path(__file__).parent / "manifests" / "metering-drill.yaml")
    async with crash_pool.acquire() as conn:
        await Meters(conn).open(
            tenancy_id,
            manifest.id,
            manifest.meters,
            Council(gss="E07000144", name="Test council", nation="England"),
            PeriodKind.MONTH,
            None,
        )
    events = [usage_event(tenancy_id) for _ in range(200)]
    await publish(crash_slice, events)
    exit_code = await asyncio.to_thread(metering_process.wait_exit, 60)
    assert exit_code == 137, metering_process.output()
    committed = await counted(crash_pool, tenancy_id)
    assert 0 < committed < 200  # it died after committing a batch, before the offsets

    metering_process.start(USAGE_BATCH_SIZE="50")
    await asyncio.to_thread(metering_process.wait_ready)
    await wait_counted(crash_pool, tenancy_id, 200)
    total = await crash_pool.fetchval(
        "SELECT sum(total) FROM metering.usage_totals WHERE tenancy_id = $1", tenancy_id
    )
    assert total == 200
    assert await counted(crash_pool, tenancy_id) == 200


async def test_periods_close_on_a_schedule_once(platform: Client) -> None:
    """The schedule asks to close each priced service's latest finished period, once."""
    from datetime import timedelta

    from services.metering.schedule import schedule_closes

    await drill_tenancy(platform, "E07000095")
    worker = platform.workers["metering"]  # type: ignore[attr-defined]
    later = datetime(2027, 6, 15, 9, 0, tzinfo=UTC)
    asked = await schedule_closes(worker.uow, later, timedelta(hours=24))
    assert "metering-drill 2027-05" in asked
    assert await schedule_closes(worker.uow, later, timedelta(hours=24)) == []
    await drained(platform.slice)
    async with platform.pool.acquire() as conn:
        closed = await conn.fetchval(
            "SELECT count(*) FROM metering.closed_periods"
            " WHERE service_id = 'metering-drill' AND period = '2027-05'"
        )
    assert closed == 1
    assert await schedule_closes(worker.uow, later, timedelta(hours=24)) == []

    # The same request delivered again (two replicas raced, or a redelivery) changes nothing.
    async with platform.pool.acquire() as conn:
        request = await conn.fetchrow(
            "SELECT topic, key, payload FROM metering.outbox WHERE payload->>'subject' = $1"
            " AND payload->'data'->>'period' = '2027-05'",
            "metering-drill",
        )
        dead_before = await conn.fetchval("SELECT count(*) FROM metering.dead_letters")
    await platform.broker.publish(
        request["payload"], topic=request["topic"], key=request["key"].encode()
    )
    await drained(platform.slice)
    assert await platform.pool.fetchval("SELECT count(*) FROM metering.dead_letters") == dead_before


def test_the_period_due_follows_the_plan_and_the_delay() -> None:
    from datetime import timedelta

    from services.metering.schedule import due
    from shared.catalogue import load_catalogue

    services = {m.id: m for m in load_catalogue(Path(__file__).parent.parent / "catalogue")}
    day = timedelta(hours=24)
    just_after = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # 13:00 in London, 1 April
    assert str(due(services["bin-collections"], just_after, timedelta(0))) == "2026-03"
    assert str(due(services["bin-collections"], just_after, day)) == "2026-02"
    assert str(due(services["parking-permits"], just_after, timedelta(0))) == "FY2025-26"
    assert str(due(services["parking-permits"], just_after, day)) == "FY2024-25"


async def test_periods_are_cut_at_midnight_in_london(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000106")
    before = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # 23:30 BST on 31 March
    after = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)  # 00:30 BST on 1 April
    autumn = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)  # 23:30 GMT on 31 October
    await publish(
        platform.slice,
        [usage_event(tenancy_id, time=t) for t in (before, after, after, autumn)],
    )
    await wait_counted(platform.pool, tenancy_id, 4)
    assert (await usage_json(platform, tenancy_id, "2026-03"))["api_calls"] == 1
    assert (await usage_json(platform, tenancy_id, "2026-04"))["api_calls"] == 2
    assert (await usage_json(platform, tenancy_id, "FY2025-26"))["api_calls"] == 1
    assert (await usage_json(platform, tenancy_id, "FY2026-27"))["api_calls"] == 3
    assert (await usage_json(platform, tenancy_id, "2026-10"))["api_calls"] == 1
