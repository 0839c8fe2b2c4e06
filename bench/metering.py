"""Scenario ``metering``: count usage events exactly once, and the same topic read bare.

Each repeat publishes the same ``events`` usage events (a fifth of them repeats of earlier ids,
byte for byte, as a service retrying its publish would send) to a fresh ``usage.recorded``
topic, keyed by tenancy id and spread over ``tenancies`` tenancies and the four meters of every
aggregation. Nothing consumes them while they are published: both sides start from a backlog.

*System*: the metering worker, in a fresh Python process per repeat (tracing can be set up only
once per process, so every repeat starts alike), on its own new database whose meters are
opened for every tenancy before it starts consuming. Its consumer reads batches of up to
``usage_batch_size`` (5,000) records and counts each batch in one transaction, while it reads
the next. The time runs from the start of its first batch to the end of the counting of its
last, from the spans the worker writes, so the group join and start-up are left out.

*Floor*: a bare aiokafka consumer in a fresh group reading the same topic to the end with the
same ``getmany`` size and fetch wait, doing nothing with the records and committing nothing:
the most the broker and the client library can deliver here, the ceiling of throughput. Its
time runs from its first records to its last, and its rate is that of the records after its
first fetch: those came at the start of the time.

Afterwards the database is checked: every unique event counted once, the totals equal to the
sum of the unique events' quantities, nothing dead-lettered. That is recorded as ``exact``,
never asserted.

``python -m bench.metering CONFIG OUT`` is the system run's child process.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from bench.child import SESSION_TIMEOUT_MS, child_main, run_child, worker_settings
from bench.common import (
    BenchError,
    Figure,
    Options,
    both_sides,
    empty_cluster,
    figure,
    kept,
    now_iso,
    on_embedded_servers,
    other_cpu_figure,
    run_machine,
    run_parameters,
    server_facts,
)
from services.metering.settings import MeteringSettings
from shared import db
from shared.cloudevents import STRUCTURED_CONTENT_TYPE

NAME = "metering"
DESCRIPTION = "count usage events exactly once: metering worker vs a bare consumer of the topic"
SERVICE_ID = "metering-bench"
SOURCE = "bench/usage"
# One meter of each aggregation, as in tests/manifests/metering-drill.yaml, so every path of
# the counting (sums, peaks, unique values) is exercised.
METERS = (
    ("api_calls", "count", "call"),
    ("storage_gb", "sum", "GB"),
    ("seats", "max", "seat"),
    ("active_users", "unique_count", "user"),
)
DUPLICATE_SHARE = 0.2
# The worker's default; the floor reads with the same getmany size.
BATCH: int = MeteringSettings.model_fields["usage_batch_size"].default
QUICK_BATCH = 500
# faststream's default ``batch_timeout_ms`` for a batch subscriber: the floor waits alike.
GETMANY_TIMEOUT_MS = 200


@dataclass(frozen=True)
class Plan:
    events: int
    tenancies: int
    repeat: int
    batch: int

    @classmethod
    def from_options(cls, options: Options) -> Plan:
        events, repeat = (2_000, 1) if options.quick else (50_000, 3)
        plan = cls(
            events=options.events or events,
            tenancies=options.tenancies or 50,
            repeat=options.repeat or repeat,
            # A quick run's few events still make several batches, and several fetches.
            batch=QUICK_BATCH if options.quick else BATCH,
        )
        if plan.events < 10:
            raise ValueError("--events must be at least 10 (a fifth of them are repeats)")
        return plan


# -- the events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    tenancies: list[str]
    records: list[tuple[bytes, bytes]]  # (key, value) in publish order
    unique: int
    quantity: Decimal  # the sum of the unique events' quantities


def workload(plan: Plan, seed: int = 20_26) -> Workload:
    """The same events for every repeat of the measurement. Each repeated event lands up to
    three batches' worth of events after its original, so some meet it inside one batch and
    the rest across batches: the two ways a repeated event reaches the worker."""
    rng = random.Random(seed)
    tenancies = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(plan.tenancies)]
    duplicates = round(plan.events * DUPLICATE_SHARE)
    unique = plan.events - duplicates
    # Within the last hour and the same for all, so every event falls in one month and none
    # in the future, whenever the benchmark runs.
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    events: list[tuple[float, bytes, bytes]] = []
    quantity = Decimal(0)
    for index in range(unique):
        tenancy = tenancies[index % plan.tenancies]
        # Stepping the meter per round of tenancies gives every tenancy every meter.
        meter = METERS[(index // plan.tenancies) % len(METERS)][0]
        data: dict[str, Any] = {"meter": meter, "quantity": "1"}
        if meter == "storage_gb":
            data["quantity"] = str(Decimal("0.125") * (1 + index % 8))
        elif meter == "seats":
            data["quantity"] = str(1 + index % 20)
        elif meter == "active_users":
            data["value"] = f"user-{index % 1000}"
        quantity += Decimal(data["quantity"])
        event = {
            "specversion": "1.0",
            "id": f"u{index:08d}",
            "source": SOURCE,
            "type": "uk.gov.tenancy.usage.recorded.v1",
            "subject": tenancy,
            "time": at,
            "datacontenttype": "application/json",
            "data": data,
        }
        events.append((float(index), tenancy.encode(), json.dumps(event).encode()))
    spread = 3 * plan.batch
    for _ in range(duplicates):
        original = rng.randrange(unique)
        _, key, value = events[original]
        events.append((original + rng.uniform(0.5, spread), key, value))
    events.sort(key=lambda item: item[0])
    return Workload(tenancies, [(k, v) for _, k, v in events], unique, quantity)


async def _publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    began = time.perf_counter()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, client_id="bench-usage"
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, value, key=key, headers=[("content-type", STRUCTURED_CONTENT_TYPE.encode())]
            )
            for key, value in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return time.perf_counter() - began


# -- the scenario -------------------------------------------------------------------------------


def run(options: Options) -> dict[str, Any]:
    plan = Plan.from_options(options)
    return _result(plan, on_embedded_servers(partial(_measure, plan)))


async def _measure(plan: Plan, server: str, bootstrap: str, root: Path) -> dict[str, Any]:
    from shared.kafka_admin import ensure_topics
    from shared.topics import PARTITIONS, Topic

    facts = await server_facts(server)
    load = workload(plan)
    repeats: list[dict[str, Any]] = []
    for index in range(plan.repeat):
        # A fresh prefix is a fresh topic and fresh consumer groups: each repeat starts from
        # the whole backlog, not from where the previous one committed.
        prefix = f"bench{index}-{uuid.uuid4().hex[:6]}."
        topic = prefix + Topic.USAGE_RECORDED.value
        await ensure_topics(bootstrap, [topic], PARTITIONS)
        published = await _publish(bootstrap, topic, load.records)
        repeat = await both_sides(
            index,
            partial(_system, plan, load, server, bootstrap, root, index, prefix),
            partial(_floor, plan, bootstrap, topic, prefix + "bench-floor"),
        )
        repeats.append({**repeat, "publish_seconds": published})
    return {"server": facts, "unique": load.unique, "repeats": repeats}


# -- the floor: a bare consumer -----------------------------------------------------------------


async def _floor(plan: Plan, bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # As the worker's consumer: the same join and fetch behaviour (shared.messaging).
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=max(300, SESSION_TIMEOUT_MS // 4),
        rebalance_timeout_ms=SESSION_TIMEOUT_MS,
        fetch_max_wait_ms=100,
        client_id="bench-floor",
    )
    began = time.perf_counter()
    await consumer.start()
    seen = fetches = first_fetch = 0
    first = last = 0.0
    deadline = time.monotonic() + 120 + plan.events / 1000
    try:
        while seen < plan.events:
            if time.monotonic() > deadline:
                raise BenchError(f"the bare consumer read {seen} of {plan.events} records")
            fetched = await consumer.getmany(timeout_ms=GETMANY_TIMEOUT_MS, max_records=plan.batch)
            now = time.perf_counter()
            got = sum(len(records) for records in fetched.values())
            if got:
                if not seen:
                    first, first_fetch = now, got
                seen += got
                fetches += 1
                last = now
    finally:
        await consumer.stop()
    return {
        "seconds": last - first,
        "records": seen,
        "first_fetch": first_fetch,
        "fetches": fetches,
        "join_seconds": first - began,
    }


# -- the system: the metering worker ------------------------------------------------------------


async def _system(
    plan: Plan,
    load: Workload,
    server: str,
    bootstrap: str,
    root: Path,
    index: int,
    prefix: str,
) -> dict[str, Any]:
    """Run one system measurement in a child process; returns its timings and what it counted."""
    database_url = db.with_database(server, f"bench_metering_r{index}")
    await empty_cluster(server)  # the previous repeat's: every repeat starts on an empty one
    config = {
        "bootstrap": bootstrap,
        "database_url": database_url,
        "topic_prefix": prefix,
        "events": plan.events,
        "unique": load.unique,
        "batch": plan.batch,
        "tenancies": load.tenancies,
    }
    measured = await run_child(
        NAME, MeteringSettings, root, index, config, within=180 + plan.events / 100
    )
    measured["check"] = await _check(database_url, load)
    return measured


async def _check(database_url: str, load: Workload) -> dict[str, Any]:
    """What the worker counted, against what was published."""
    conn = await db.connect(database_url)
    try:
        counted = await conn.fetchval("SELECT count(*) FROM metering.usage_events")
        totals = await conn.fetchrow(
            "SELECT coalesce(sum(events), 0) AS events, coalesce(sum(total), 0) AS total"
            " FROM metering.usage_totals"
        )
        dead = await conn.fetchval("SELECT count(*) FROM metering.dead_letters")
    finally:
        await conn.close()
    assert totals is not None
    exact = (
        counted == load.unique
        and totals["events"] == load.unique
        and totals["total"] == load.quantity
        and dead == 0
    )
    return {
        "exact": exact,
        "counted": int(counted),
        "expected": load.unique,
        "total": str(totals["total"]),
        "expected_total": str(load.quantity),
        "dead_letters": int(dead),
    }


async def _system_run(config: dict[str, Any]) -> dict[str, Any]:
    from services.metering import app as metering_app
    from services.metering.repository import Meters
    from shared.catalogue import Aggregation, Meter, PeriodKind
    from shared.events import Council
    from shared.messaging import subscriber_options
    from shared.topics import Topic
    from shared.worker import running

    settings = worker_settings(
        MeteringSettings, "metering", config, usage_batch_size=config["batch"]
    )
    topic = settings.topic(Topic.USAGE_RECORDED.value)
    group = subscriber_options(settings, "metering", Topic.USAGE_RECORDED.value)["group_id"]
    meters = [
        Meter(key=key, aggregation=Aggregation(kind), unit=unit) for key, kind, unit in METERS
    ]
    council = Council(gss="E09000012", name="Hackney", nation="England")

    worker = metering_app.build(settings)
    async with running(worker, metering_app.MIGRATIONS):
        # Opened before the worker consumes, or the backlog would meet unknown tenancies.
        async with worker.pool.acquire() as conn, conn.transaction():
            for tenancy_id in config["tenancies"]:
                await Meters(conn).open(
                    tenancy_id, SERVICE_ID, meters, council, PeriodKind.MONTH, None
                )
        watch = await db.connect(settings.database_url)
        began = time.perf_counter()
        await worker.broker.start()
        try:
            polled = await _watch(watch, config["unique"], began)
            await _drained(config["bootstrap"], group, topic, within=60)
        finally:
            await worker.broker.stop()
            await watch.close()
    return {**polled, "batches": _batch_spans(settings.spans_file, topic)}


async def _watch(
    conn: asyncpg.Connection[asyncpg.Record], unique: int, began: float
) -> dict[str, Any]:
    """Poll what the worker has counted until it has counted every unique event, or stops
    getting anywhere. The sum over ``usage_totals`` (a row per tenancy, meter and month) moves
    with ``usage_events`` in the same transaction and costs far less than counting that."""
    query = "SELECT coalesce(sum(events), 0) FROM metering.usage_totals"
    first: float | None = None
    counted = 0
    progress = time.perf_counter()
    while counted < unique:
        await asyncio.sleep(0.02)
        now = time.perf_counter()
        found = int(await conn.fetchval(query))
        if found > counted:
            counted, progress = found, now
            if first is None:
                first = now
        # Joining the group takes a second or two; after that a pause this long is a stall.
        if now - progress > (60 if first is None else 20):
            break
    return {
        "counted_while_running": counted,
        "first_count_seconds": None if first is None else first - began,
        "all_counted_seconds": progress - began,
    }


async def _drained(bootstrap: str, group: str, topic: str, within: float) -> None:
    """Wait until the worker's group has committed the end of every partition: it has read
    every event, repeats included, not only the last new one."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from shared.topics import PARTITIONS

    # Never subscribes, so it reads the group's offsets without joining it (Tansu does not
    # answer the admin client's all-topics OffsetFetch).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + within
        while True:
            behind = []
            for partition in partitions:
                done = await consumer.committed(partition)
                if ends[partition] > 0 and (done is None or done < ends[partition]):
                    behind.append((partition.partition, done, ends[partition]))
            if not behind:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the worker's group is still behind: {behind}")
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


def _batch_spans(spans_file: Path, topic: str) -> dict[str, Any] | None:
    """The worker's batch spans on the usage topic: when it started its first batch, ended its
    last, how many records they held and how long it spent inside them."""
    spans: list[tuple[int, int, int]] = []
    # A batch is counted after its consumer span ends, while the next one is read: the last
    # batch's time ends with its counting.
    counted_ends: list[int] = []
    if spans_file.exists():
        with spans_file.open() as lines:
            for line in lines:
                span = json.loads(line)
                attributes = span.get("attributes", {})
                if attributes.get("messaging.destination.name") != topic or not (
                    span.get("start_ns") and span.get("end_ns")
                ):
                    continue
                count = attributes.get("messaging.batch.message_count")
                if count is not None:
                    spans.append((span["start_ns"], span["end_ns"], int(count)))
                elif attributes.get("tenancy.usage.counted") is not None:
                    counted_ends.append(span["end_ns"])
    if not spans:
        return None
    last = max([e for _, e, _ in spans] + counted_ends)
    return {
        "seconds": (last - min(s for s, _, _ in spans)) / 1e9,
        "batches": len(spans),
        "records": sum(c for _, _, c in spans),
        "handler_seconds": sum(e - s for s, e, _ in spans) / 1e9,
    }


# -- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """One side of one repeat reduced to its figures."""

    seconds: float  # reading all the events, first batch to last
    rate: float  # events per second, repeats included
    batch: float  # mean records per batch (per non-empty fetch for the floor)
    busy: float | None  # share of the time inside the worker's handler (reading a batch)


def _system_run_figures(plan: Plan, measured: dict[str, Any]) -> _Run:
    spans = measured["batches"]
    if spans is None:
        raise BenchError("the worker wrote no batch spans; cannot time it")
    seconds = spans["seconds"]
    return _Run(
        seconds=seconds,
        rate=plan.events / seconds,
        batch=spans["records"] / spans["batches"],
        busy=spans["handler_seconds"] / seconds,
    )


def _floor_run_figures(plan: Plan, measured: dict[str, Any]) -> _Run:
    """The records of the first fetch came at the start of the time: the rate is the others'."""
    seconds = measured["seconds"]
    if measured["fetches"] < 2 or seconds <= 0:
        raise BenchError("the bare consumer read everything in one fetch; publish more --events")
    return _Run(
        seconds=seconds,
        rate=(measured["records"] - measured["first_fetch"]) / seconds,
        batch=measured["records"] / measured["fetches"],
        busy=None,
    )


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]
    system = [_system_run_figures(plan, r["system"]) for r in repeats]
    floor = [_floor_run_figures(plan, r["floor"]) for r in repeats]
    checks = [r["system"]["check"] for r in repeats]
    exact = all(c["exact"] for c in checks)
    n, unique = plan.events, measured["unique"]

    figures: dict[str, Figure] = {
        "events_per_second": figure(
            f"events per second, {n:,} read ({unique:,} unique)",
            "events/s",
            [r.rate for r in system],
            [r.rate for r in floor],
            note="ratio: the share of the bare consumer's rate the worker reaches",
        ),
        "us_per_event": figure(
            "time per event (ratio = how many times slower than the bare consumer)",
            "µs",
            [1e6 / r.rate for r in system],
            [1e6 / r.rate for r in floor],
        ),
        "total_s": figure(
            f"reading all {n:,}, first batch to last",
            "s",
            [r.seconds for r in system],
            [r.seconds for r in floor],
        ),
        "batch_size": figure(
            f"records per batch (at most {plan.batch})",
            "records",
            [r.batch for r in system],
            [r.batch for r in floor],
            ratio=False,
        ),
        "handler_share": figure(
            "share of the time inside the worker's batch handler",
            "%",
            [(r.busy or 0) * 100 for r in system],
            None,
            note=(
                "the handler reads a batch and waits for the one before to be counted; the rest"
                " is fetching and the framework between batches"
            ),
        ),
        "other_cpu": other_cpu_figure(repeats),
    }
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "ran_at": now_iso(),
        "exact": exact,
        "machine": run_machine(measured),
        "parameters": {
            **asdict(plan),
            "unique": unique,
            "duplicate_share": DUPLICATE_SHARE,
            "meters": [key for key, _, _ in METERS],
            **run_parameters(measured),
        },
        "figures": figures,
        "series": {},
        "notes": [
            f"counted exactly once in every repeat: {'yes' if exact else 'NO'} "
            f"({unique:,} unique events, their quantities summed, nothing dead-lettered)",
            f"{n:,} events over {plan.tenancies} tenancies and {len(METERS)} meters, "
            f"{DUPLICATE_SHARE:.0%} of them repeated ids; rates count every event read, the "
            "repeated ones included.",
            "System: the metering worker in a fresh process per repeat, timed from the start of "
            "its first batch span to the end of its last (group join and start-up left out). "
            "Floor: a bare aiokafka consumer, same getmany size and fetch wait, no processing "
            "and no commits, timed from its first records to its last (its rate: the records "
            "after its first fetch over that time).",
            "PostgreSQL runs with durable=False (fsync=off): a batch's commit costs no disk "
            "flush; a durable server adds one flush per batch.",
        ],
        "repeats": [
            {
                "order": r["order"],
                "publish_seconds": r["publish_seconds"],
                "system": kept(
                    {**asdict(s), **r["system"]["check"]},
                    r["system"],
                    "batches",
                    "first_count_seconds",
                    "all_counted_seconds",
                    "other_cpu_share",
                ),
                "floor": kept(asdict(f), r["floor"], "fetches", "join_seconds", "other_cpu_share"),
            }
            for r, s, f in zip(repeats, system, floor, strict=True)
        ],
    }


if __name__ == "__main__":
    sys.exit(child_main(NAME, _system_run, sys.argv[1:]))
