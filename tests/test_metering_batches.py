"""Counting usage a batch at a time, set-based: the plain reader agrees with the pydantic model,
the period cache with the time-zone arithmetic, and one statement per batch counts exactly once
whatever a batch holds: repeats inside it and across batches, conflicting repeats, poison events
among good ones, several tenancies, meters and periods. No broker: ``service.count`` runs on
records made here, in a transaction of its own, as the worker's handler runs it."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.metering import handlers, service, usage
from services.metering.app import MIGRATIONS
from services.metering.periods import Period, period_of
from services.metering.repository import Meters, UsageLedger
from shared import db
from shared.catalogue import Aggregation, Meter, PeriodKind
from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.events import Council
from tests.conftest import Servers

SERVICE = "metering-batches"
SOURCE = "tests/batches"
STRUCTURED = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
METERS = [
    Meter(key="api_calls", aggregation=Aggregation.COUNT, unit="call"),
    Meter(key="storage_gb", aggregation=Aggregation.SUM, unit="GB"),
    Meter(key="seats", aggregation=Aggregation.MAX, unit="seat"),
    Meter(key="active_users", aggregation=Aggregation.UNIQUE_COUNT, unit="user"),
]
AT = "2026-01-22T10:15:00Z"


@dataclass
class Record:
    value: bytes | None
    headers: list[tuple[str, bytes]]
    topic: str = "usage.recorded"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


def event(tenancy: str, meter: str = "api_calls", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"meter": meter}
    for name in ("quantity", "value"):
        if name in fields:
            data[name] = fields.pop(name)
    return {
        "specversion": "1.0",
        "id": fields.pop("id", None) or f"e-{uuid.uuid4().hex[:12]}",
        "source": SOURCE,
        "type": "uk.gov.tenancy.usage.recorded.v1",
        "subject": tenancy,
        "time": AT,
        "datacontenttype": "application/json",
        "data": data,
        **fields,
    }


def record(value: dict[str, Any] | bytes) -> Record:
    body = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
    return Record(body, STRUCTURED)


# -- the plain reader -----------------------------------------------------------------------------

TENANCY = "3f0c9a52-8d5e-4f7e-9b1a-2a4c6e8f0b13"
FIELDS = ("source", "id", "key", "subject", "time", "meter", "quantity", "value", "digest", "month")


def read_plainly(value: bytes) -> usage.Usage | None:
    return usage._read_plain(value, datetime.now(UTC) + usage.MAX_CLOCK_SKEW)


def plain_variants() -> list[dict[str, Any]]:
    base = event(TENANCY, id="report-1")
    variants = [base, {k: v for k, v in base.items() if k != "datacontenttype"}]
    variants.append({**base, "datacontenttype": None})
    for quantity in ("1", "1.50", "0", "0.000000", "0.000001", "100.100", "10", 0, 7):
        variants.append({**base, "data": {"meter": "storage_gb", "quantity": quantity}})
    variants.append({**base, "data": {"meter": "storage_gb", "quantity": "12345678901234.123456"}})
    variants.append({**base, "data": {"meter": "storage_gb", "quantity": 99_999_999_999_999}})
    for time in (
        "2026-11-22T10:15:00.5Z",
        "2026-11-22T10:15:00.000000Z",
        "2026-11-22T10:15:00.120Z",
        "2026-03-29T00:59:59.999999Z",
        "2026-03-31T23:30:00-00:00",
        "2026-10-25T01:00:00+01:00",
        "2026-11-22T10:15:00+05:30",
        "2026-11-22T10:15:00-09:45",
        "1900-01-01T00:00:00Z",
    ):
        variants.append({**base, "time": time})
    variants.append({**base, "data": {"meter": "active_users", "value": "ü/é 😀\u2028\x7f"}})
    variants.append({**base, "data": {"meter": "active_users", "value": None}})
    variants.append({**base, "id": "é" * 200, "source": "😀" * 200})
    variants.append({**base, "data": {"meter": "m" * 63}})
    return variants


@pytest.mark.parametrize("sent", plain_variants())
def test_the_plain_reader_reads_every_field_and_the_digest_as_pydantic_does(
    sent: dict[str, Any],
) -> None:
    value = json.dumps(sent, ensure_ascii=False).encode()
    plain = read_plainly(value)
    model = usage.parse(value, STRUCTURED)
    assert plain is not None, "the plain reader gave up on a plain event"
    assert isinstance(model, usage.Usage)
    for name in FIELDS:
        assert getattr(plain, name) == getattr(model, name), name
        assert type(getattr(plain, name)) is type(getattr(model, name)), name
    assert plain.time.utcoffset() == model.time.utcoffset()
    assert plain.event == model.event


def given_up_variants() -> list[Any]:
    base = event(TENANCY, id="report-1")
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    return [
        {**base, "subject": TENANCY.upper()},  # valid, made canonical by the model
        {**base, "time": "2026-11-22 10:15:00Z"},  # another form pydantic reads
        {**base, "time": "2026-11-22T10:15:00"},  # no time zone: refused
        {**base, "time": future},  # refused as future_time
        {**base, "time": "1899-12-31T23:59:59Z"},
        {**base, "data": {"meter": "api_calls", "quantity": "01"}},
        {**base, "data": {"meter": "api_calls", "quantity": " 1"}},
        {**base, "data": {"meter": "api_calls", "quantity": 1.5}},
        {**base, "data": {"meter": "api_calls", "quantity": "-1"}},  # negative_quantity
        {**base, "data": {"meter": "api_calls", "quantity": -1}},
        {**base, "data": {"meter": "api_calls", "quantity": 10**14}},
        {**base, "data": {"meter": "api_calls", "quantity": True}},
        {**base, "data": {"meter": "api_calls", "extra": 1}},  # refused: unknown field
        {**base, "data": {"meter": ""}},
        {**base, "partitionkey": "p-1"},  # an extension: accepted, not counted
        {**base, "id": "a\\b"},  # an escape
        {**base, "id": "nul\x00"},  # refused: NUL
        {**base, "id": ""},
        {**base, "id": 12},
        {**base, "specversion": "0.3"},
        {**base, "data": None},
        b"{not json",
        b'{"specversion": "1.0"}',
        b"[]",
        b"",
    ]


@pytest.mark.parametrize("sent", given_up_variants())
def test_the_plain_reader_leaves_every_other_event_to_the_model(sent: Any) -> None:
    value = sent if isinstance(sent, bytes) else json.dumps(sent).encode()
    assert read_plainly(value) is None
    (batched,) = usage.parse_batch([Record(value, STRUCTURED)])
    alone = usage.parse(value, STRUCTURED)
    if isinstance(alone, usage.Rejection):
        assert batched == alone  # the same reason and the same message
    else:
        assert isinstance(batched, usage.Usage)
        assert [getattr(batched, n) for n in FIELDS] == [getattr(alone, n) for n in FIELDS]


def test_a_binary_mode_event_is_read_by_the_model() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"binary-1"),
        ("ce_source", SOURCE.encode()),
        ("ce_type", b"uk.gov.tenancy.usage.recorded.v1"),
        ("ce_subject", TENANCY.encode()),
        ("ce_time", AT.encode()),
        ("content-type", b"application/json"),
    ]
    structured = json.dumps({**event(TENANCY, id="binary-1")}).encode()
    (binary,) = usage.parse_batch([Record(b'{"meter": "api_calls"}', headers)])
    assert isinstance(binary, usage.Usage)
    plain = read_plainly(structured)
    assert plain is not None
    assert binary.digest == plain.digest  # the same event in either mode is one event


# -- periods, an hour at a time -------------------------------------------------------------------


def test_the_period_of_an_hour_is_the_period_of_every_instant_in_it() -> None:
    rng = random.Random(17)
    instants: list[datetime] = []
    for year in range(1900, 2101):  # both sides of every month's start, and of the clock changes
        for month in range(1, 13):
            start = Period(PeriodKind.MONTH, year, month).start
            instants += [start, start - timedelta(microseconds=1), start + timedelta(minutes=59)]
        for day in (25, 26, 27, 28, 29, 30, 31):  # the last Sundays of March and October
            for hour in (0, 1, 2):
                for month in (3, 10):
                    moment = datetime(year, month, day, hour, tzinfo=UTC)
                    instants += [moment, moment - timedelta(microseconds=1)]
    start, span = datetime(1900, 1, 1, tzinfo=UTC), (datetime(9990, 1, 1, tzinfo=UTC))
    seconds = int((span - start).total_seconds())
    instants += [start + timedelta(seconds=rng.randrange(seconds)) for _ in range(5000)]
    instants += [i.astimezone(timezone(timedelta(hours=-5))) for i in instants[:200]]
    instants.append(datetime(1850, 6, 1, tzinfo=UTC))  # before the hourly rule: worked out
    for instant in instants:
        for kind in PeriodKind:
            assert period_of(kind, instant) == str(Period.containing(kind, instant)), instant


def test_a_month_falls_in_the_financial_year_that_contains_it() -> None:
    for year in (1999, 2026):
        for month in range(1, 13):
            period = Period(PeriodKind.MONTH, year, month)
            for kind in PeriodKind:
                assert period.of_month(kind) == Period.containing(kind, period.start)


# -- counting, against PostgreSQL -----------------------------------------------------------------


@pytest.fixture
async def pool(servers: Servers) -> AsyncIterator[db.Pool]:
    url = db.with_database(servers.postgres_dsn, "batches_" + uuid.uuid4().hex[:10])
    await db.ensure_database(url)
    pool = await db.create_pool(url, max_size=2)
    try:
        await db.migrate(pool, "metering", MIGRATIONS)
        yield pool
    finally:
        await pool.close()


async def tenancy(pool: db.Pool, kind: PeriodKind = PeriodKind.MONTH) -> str:
    tenancy_id = str(uuid.uuid4())
    council = Council(gss="E09000012", name="Hackney", nation="England")
    async with pool.acquire() as conn:
        await Meters(conn).open(tenancy_id, SERVICE, METERS, council, kind, None)
    return tenancy_id


@pytest.fixture(params=[service.CHUNK, 3], ids=["one-chunk", "chunks-of-3"])
def chunk(request: pytest.FixtureRequest) -> int:
    """A batch is counted a chunk at a time: by one statement, or by several in a row."""
    size: int = request.param
    return size


async def count(pool: db.Pool, chunk: int, records: Sequence[Record]) -> service.Counted:
    async with pool.acquire() as conn, conn.transaction():
        return await service.count(conn, records, chunk)


async def totals(pool: db.Pool, tenancy_id: str) -> dict[tuple[str, str], tuple[int, Any, Any]]:
    rows = await pool.fetch(
        "SELECT meter_key, month, events, total, peak FROM metering.usage_totals"
        " WHERE tenancy_id = $1",
        tenancy_id,
    )
    return {(r["meter_key"], r["month"]): (r["events"], r["total"], r["peak"]) for r in rows}


async def uniques(pool: db.Pool, tenancy_id: str) -> set[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT month, value FROM metering.unique_values WHERE tenancy_id = $1", tenancy_id
    )
    return {(r["month"], r["value"]) for r in rows}


async def seen(pool: db.Pool, tenancy_id: str) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM metering.usage_events WHERE tenancy_id = $1", tenancy_id
    )
    return found


def reasons(counted: service.Counted) -> dict[int, str]:
    return {index: rejection.reason for index, rejection in counted.rejected}


async def test_repeats_inside_a_batch_count_once(pool: db.Pool, chunk: int) -> None:
    tenancy_id = await tenancy(pool)
    one = event(tenancy_id, "storage_gb", quantity="0.25")
    two = event(tenancy_id, "storage_gb", quantity="1.5")
    counted = await count(pool, chunk, [record(e) for e in (one, two, one, one, two)])
    assert (counted.counted, counted.duplicates, counted.rejected) == (2, 3, [])
    assert await totals(pool, tenancy_id) == {
        ("storage_gb", "2026-01"): (2, Decimal("1.75"), Decimal("1.5"))
    }
    assert await seen(pool, tenancy_id) == 2


async def test_a_batch_counted_again_counts_nothing_twice(pool: db.Pool, chunk: int) -> None:
    """As after a crash between the commit and the offsets: the whole batch comes again, and
    again with some new events."""
    tenancy_id = await tenancy(pool)
    batch = [record(event(tenancy_id, quantity=1)) for _ in range(300)]
    first = await count(pool, chunk, batch)
    again = await count(pool, chunk, batch)
    more = [record(event(tenancy_id)) for _ in range(50)]
    mixed = await count(pool, chunk, [*batch[:100], *more, *batch[100:]])
    assert (first.counted, first.duplicates) == (300, 0)
    assert (again.counted, again.duplicates, again.rejected) == (0, 300, [])
    assert (mixed.counted, mixed.duplicates, mixed.rejected) == (50, 300, [])
    assert await totals(pool, tenancy_id) == {("api_calls", "2026-01"): (350, 350, 1)}
    assert await seen(pool, tenancy_id) == 350


async def test_an_id_repeated_with_other_content_is_refused_inside_and_across_batches(
    pool: db.Pool,
    chunk: int,
) -> None:
    tenancy_id = await tenancy(pool)
    first = event(tenancy_id, id="reused", quantity=1)
    other = {**first, "data": {"meter": "api_calls", "quantity": 5}}
    good = event(tenancy_id)
    counted = await count(pool, chunk, [record(first), record(other), record(good), record(first)])
    assert (counted.counted, counted.duplicates) == (2, 1)
    assert reasons(counted) == {1: "conflicting_duplicate"}
    message = counted.rejected[0][1].message
    assert message == (
        f"id: 'reused' from {SOURCE!r} was counted before with a different payload; an event"
        " id names one event"
    )
    # Later, the first one again, and the conflicting one twice around it. Inside a batch an
    # id's first event is the one the others are held to: the first conflicts with the counted
    # one, the second with the first; the third repeats the first, so it is a duplicate.
    later = await count(pool, chunk, [record(other), record(first), record(other)])
    assert (later.counted, later.duplicates) == (0, 1)
    assert reasons(later) == {0: "conflicting_duplicate", 1: "conflicting_duplicate"}
    again = await count(pool, chunk, [record(first), record(other)])
    assert (again.counted, again.duplicates) == (0, 1)
    assert reasons(again) == {1: "conflicting_duplicate"}
    assert await totals(pool, tenancy_id) == {("api_calls", "2026-01"): (2, 2, 1)}


async def test_poison_among_good_events_is_refused_and_the_rest_counted(
    pool: db.Pool, chunk: int
) -> None:
    tenancy_id = await tenancy(pool)
    good = [event(tenancy_id, "seats", quantity=q) for q in (3, 9, 4)]
    batch = [
        record(good[0]),
        record(b"{not json"),
        record(event(str(uuid.uuid4()))),  # nobody's tenancy
        record(event(tenancy_id, "printer_pages")),
        record(good[1]),
        record(event(tenancy_id, quantity=-3)),
        record(event(tenancy_id, quantity="1.5")),  # a count is whole
        record(event(tenancy_id, "active_users")),  # unique_count without a value
        record(event(tenancy_id, time=(datetime.now(UTC) + timedelta(days=1)).isoformat())),
        Record(None, STRUCTURED),
        record(good[2]),
    ]
    counted = await count(pool, chunk, batch)
    assert counted.counted == 3
    assert reasons(counted) == {
        1: "malformed",
        2: "unknown_tenancy",
        3: "unknown_meter",
        5: "negative_quantity",
        6: "not_a_whole_number",
        7: "missing_value",
        8: "future_time",
        9: "malformed",
    }
    by_index = dict(counted.rejected)
    assert by_index[3].message == (
        "data.meter: 'printer_pages' is not a meter of metering-batches"
        " (its meters: active_users, api_calls, seats, storage_gb)"
    )
    assert by_index[6].message == "data.quantity: a count meter counts whole units, not 1.5"
    assert await totals(pool, tenancy_id) == {("seats", "2026-01"): (3, 16, 9)}


async def test_tenancies_meters_and_periods_are_each_summed_apart(
    pool: db.Pool, chunk: int
) -> None:
    monthly = await tenancy(pool)
    yearly = await tenancy(pool, PeriodKind.FINANCIAL_YEAR)
    march, april = "2026-03-31T22:30:00Z", "2026-03-31T23:30:00Z"  # 00:30 BST is 1 April
    events = []
    for tenancy_id in (monthly, yearly):
        for at in (march, april):
            events += [
                event(tenancy_id, time=at),
                event(tenancy_id, time=at, quantity=2),
                event(tenancy_id, "storage_gb", time=at, quantity="0.125"),
                event(tenancy_id, "storage_gb", time=at, quantity="2.5"),
                event(tenancy_id, "seats", time=at, quantity=7),
                event(tenancy_id, "seats", time=at, quantity=5),
                event(tenancy_id, "active_users", time=at, value="ann"),
                event(tenancy_id, "active_users", time=at, value="bob"),
                event(tenancy_id, "active_users", time=at, value="ann"),
            ]
    random.Random(3).shuffle(events)
    # Three batches, so every total is written by more than one of them.
    for start in range(0, len(events), 12):
        assert not (
            await count(pool, chunk, [record(e) for e in events[start : start + 12]])
        ).rejected
    for tenancy_id in (monthly, yearly):
        expected: dict[tuple[str, str], tuple[int, Any, Any]] = {}
        for month in ("2026-03", "2026-04"):
            expected |= {
                ("api_calls", month): (2, 3, 2),
                ("storage_gb", month): (2, Decimal("2.625"), Decimal("2.5")),
                ("seats", month): (2, 12, 7),
                ("active_users", month): (3, 3, 1),
            }
        assert await totals(pool, tenancy_id) == expected
        assert await uniques(pool, tenancy_id) == {
            (m, v) for m in ("2026-03", "2026-04") for v in ("ann", "bob")
        }
        assert await seen(pool, tenancy_id) == 18


async def test_usage_of_a_billed_period_is_marked_for_an_adjustment(
    pool: db.Pool, chunk: int
) -> None:
    monthly = await tenancy(pool)
    yearly = await tenancy(pool, PeriodKind.FINANCIAL_YEAR)
    await pool.execute(
        "INSERT INTO metering.closed_periods (service_id, period) VALUES ($1, '2026-01'),"
        " ($1, 'FY2025-26')",
        SERVICE,
    )
    batch = [record(event(t)) for t in (monthly, yearly)]
    batch.append(record(event(monthly, time="2026-02-02T10:00:00Z")))  # an open period
    assert (await count(pool, chunk, batch)).counted == 3
    late = await pool.fetch("SELECT tenancy_id::text, period FROM metering.late_usage")
    assert {(r["tenancy_id"], r["period"]) for r in late} == {
        (monthly, "2026-01"),
        (yearly, "FY2025-26"),
    }
    # A repeat adds nothing, so it marks nothing.
    await pool.execute("DELETE FROM metering.late_usage")
    assert (await count(pool, chunk, batch[:1])).duplicates == 1
    assert await pool.fetchval("SELECT count(*) FROM metering.late_usage") == 0


async def test_a_tenancy_that_left_counts_nothing_more(pool: db.Pool, chunk: int) -> None:
    tenancy_id = await tenancy(pool)
    async with pool.acquire() as conn:
        await Meters(conn).close(tenancy_id)
    counted = await count(pool, chunk, [record(event(tenancy_id))])
    assert reasons(counted) == {0: "tenancy_closed"}
    assert await seen(pool, tenancy_id) == 0


async def test_the_largest_quantities_add_up_exactly(pool: db.Pool, chunk: int) -> None:
    """A batch's sums are made in Python before they reach the totals: never rounded."""
    tenancy_id = await tenancy(pool)
    largest = "99999999999999.999999"  # 14 digits and 6 after the point: the most there can be
    whole = 10**14 - 1
    batch = [record(event(tenancy_id, "storage_gb", quantity=largest)) for _ in range(40)]
    batch += [record(event(tenancy_id, "seats", quantity=whole)) for _ in range(40)]
    assert (await count(pool, chunk, batch)).counted == 80
    assert await totals(pool, tenancy_id) == {
        ("storage_gb", "2026-01"): (40, 40 * Decimal(largest), Decimal(largest)),
        ("seats", "2026-01"): (40, Decimal(40 * whole), Decimal(whole)),
    }


class FakeWorker:
    """What count_batch needs of a worker: its pool, and where dead letters go."""

    def __init__(self, pool: db.Pool) -> None:
        self.pool = pool
        self.dead_letters = self
        self.letters: list[tuple[Any, str, str]] = []

    async def record_raw(self, raw: Any, error_type: str, reason: str) -> None:
        self.letters.append((raw, error_type, reason))


async def waiting_for_a_lock(conn: Any) -> bool:
    # Inside a transaction PostgreSQL answers from the activity it saw first, unless told not to.
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    return waiting > 0


async def test_events_another_consumer_counts_meanwhile_are_repeats_when_counted_again(
    pool: db.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two consumers count the same events at once (a partition changing hands): the second
    waits for the first's insert, fails on it, and counts its whole batch again."""
    real_count = service.count
    batches: list[int] = []

    async def counting(conn: Any, records: Sequence[Record], **options: Any) -> service.Counted:
        batches.append(len(records))
        return await real_count(conn, records, **options)

    monkeypatch.setattr(service, "count", counting)
    tenancy_id = await tenancy(pool)
    shared = [record(event(tenancy_id, quantity=1)) for _ in range(3)]
    own = [record(event(tenancy_id, quantity=1)) for _ in range(2)]
    worker = FakeWorker(pool)
    async with pool.acquire() as other, other.transaction():
        assert (await real_count(other, shared)).counted == 3
        racing = asyncio.create_task(handlers.count_batch(worker, [*own, *shared]))  # type: ignore[arg-type]
        while not await waiting_for_a_lock(other):
            assert not racing.done(), racing
            await asyncio.sleep(0.01)
    await racing
    assert batches == [5, 5]  # the whole batch again, not halved
    assert worker.letters == []
    assert await totals(pool, tenancy_id) == {("api_calls", "2026-01"): (5, 5, 1)}
    assert await seen(pool, tenancy_id) == 5


async def test_a_batch_that_cannot_be_written_is_halved_until_the_culprit_is_alone(
    pool: db.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenancy_id = await tenancy(pool)
    batch = [record(event(tenancy_id, id=f"b-{n:03d}")) for n in range(37)]
    culprit = batch[21]
    real_count = UsageLedger.count
    attempts: list[int] = []

    async def fail_with_the_culprit(self: UsageLedger, items: Any) -> Any:
        attempts.append(len(items))
        if any(u.id == "b-021" for u in items):
            raise ValueError("numeric field overflow")
        return await real_count(self, items)

    monkeypatch.setattr(UsageLedger, "count", fail_with_the_culprit)
    worker = FakeWorker(pool)
    await handlers.count_batch(worker, batch)  # type: ignore[arg-type]
    assert worker.letters == [(culprit, "unprocessable", "ValueError: numeric field overflow")]
    assert await seen(pool, tenancy_id) == 36
    assert len(attempts) < 2 * 6 + 2  # halving: a few transactions, not one per record
