"""Scenario ``isolation``: provision tenancies in the schema tier, and the same SQL run raw.

*System*: the isolation worker runs in a fresh Python process (its own interpreter per repeat,
so every repeat starts alike: tracing, for one, can be set up only once per process) next to a
load generator in the same event loop. The generator publishes ``TenancyRegistered`` events to
``onboarding.registered`` with a raw aiokafka producer, ``batch`` at once, and publishes the next
batch once every tenancy of the previous one has its ``isolation.ready`` event, which a raw
aiokafka consumer watches (matching on the key, the tenancy id).

*Floor*: what :func:`services.isolation.service.isolate` runs on the service database for one
schema-tier tenancy, executed directly with asyncpg in one loop: on the platform's connection,
in one transaction, the advisory lock, ledger look-up, SCRAM verifier and login role, ledger
entry, own schema and grants; then on the service owner's connection, in a second transaction,
its lock, the migration ledger look-up, the migrations and their record.

Both run on the same embedded PostgreSQL, each measurement on a cluster emptied of the previous
one's databases and roles (roles are cluster-wide, so they would otherwise carry over); the order
of system and floor alternates between repeats. The catalog grows with every schema, table and
role: per-tenancy time over the first and the last window shows whether that costs anything.

``python -m bench.isolation CONFIG OUT`` is the system run's child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from bench.child import child_main, run_child, worker_settings
from bench.common import (
    FLOOR_CONNECTIONS,
    BenchError,
    Figure,
    Laps,
    Options,
    chunks,
    empty_cluster,
    figure,
    kept,
    now_iso,
    on_embedded_servers,
    other_cpu_figure,
    per_item,
    percentile,
    run_machine,
    run_parameters,
    series,
    server_facts,
    sides_in_turn,
    window_size,
)
from shared import db
from shared.catalogue import ServiceManifest, load_manifest
from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.identifiers import service_database_name
from shared.settings import REPO_ROOT

NAME = "isolation"
DESCRIPTION = "provision tenancies in the schema tier: isolation worker vs the same SQL run raw"
MANIFEST = REPO_ROOT / "catalogue" / "bin-collections.yaml"
PARALLEL = f"floor_x{FLOOR_CONNECTIONS}"


@dataclass(frozen=True)
class Plan:
    tenancies: int
    repeat: int
    batch: int
    warmup: int
    window: int

    @classmethod
    def from_options(cls, options: Options) -> Plan:
        tenancies, repeat, batch, warmup = (50, 1, 50, 2) if options.quick else (1000, 3, 100, 5)
        tenancies = options.tenancies or tenancies
        if tenancies < 4:
            raise ValueError("--tenancies must be at least 4 (two windows of two)")
        return cls(
            tenancies=tenancies,
            repeat=options.repeat or repeat,
            batch=min(options.batch or batch, tenancies),
            warmup=warmup,
            window=window_size(tenancies),
        )


# -- the scenario -------------------------------------------------------------------------------


def run(options: Options) -> dict[str, Any]:
    plan = Plan.from_options(options)
    return _result(plan, on_embedded_servers(partial(_measure, plan)))


async def _measure(plan: Plan, server: str, bootstrap: str, root: Path) -> dict[str, Any]:
    facts = await server_facts(server, "max_connections")

    async def emptied() -> None:
        # Roles are cluster-wide: without dropping them they would carry over.
        await empty_cluster(server, tenant_roles=True)

    repeats = [
        await sides_in_turn(
            index,
            {
                "system": partial(_system, plan, server, bootstrap, root, index),
                "floor": partial(_floor, plan, server, index),
                PARALLEL: partial(_parallel_floor, plan, server, index),
            },
            before_each=emptied,
        )
        for index in range(plan.repeat)
    ]
    await emptied()
    return {"server": facts, "repeats": repeats}


# -- the system: the isolation worker behind Kafka ----------------------------------------------


async def _system(
    plan: Plan, server: str, bootstrap: str, root: Path, index: int
) -> dict[str, Any]:
    """Run one system measurement in a child process; returns its timings and catalog facts."""
    from services.isolation.settings import IsolationSettings

    platform_db = f"bench_r{index}"
    config = {
        "bootstrap": bootstrap,
        "database_url": db.with_database(server, platform_db),
        "topic_prefix": f"bench{index}.",
        "tenancies": plan.tenancies,
        "batch": plan.batch,
        "warmup": plan.warmup,
        "manifest": str(MANIFEST),
    }
    measured = await run_child(
        NAME,
        IsolationSettings,
        root,
        index,
        config,
        within=300 + plan.tenancies,
    )
    manifest = load_manifest(MANIFEST)
    measured["catalog"] = await _catalog(server, service_database_name(platform_db, manifest.id))
    return measured


async def _system_run(config: dict[str, Any]) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from services.isolation import app as isolation_app
    from services.isolation.settings import IsolationSettings
    from shared.topics import Topic
    from shared.worker import running

    settings = worker_settings(IsolationSettings, "isolation", config)
    manifest = load_manifest(Path(config["manifest"]))
    warmup, total = config["warmup"], config["warmup"] + config["tenancies"]
    ids = [str(uuid.uuid4()) for _ in range(total)]
    payloads = {tid: _registered(tid, manifest) for tid in ids}
    registered = settings.topic(Topic.TENANCY_REGISTERED.value)
    watched = {
        settings.topic(Topic.ISOLATION_READY.value): "ready",
        settings.topic(Topic.STEP_FAILED.value): "failed",
    }

    worker = isolation_app.build(settings)
    began = time.perf_counter()
    published: dict[str, float] = {}
    async with running(worker, isolation_app.MIGRATIONS):
        await worker.broker.start()
        try:
            startup = time.perf_counter() - began
            watcher = Watcher(config["bootstrap"], watched)
            producer = AIOKafkaProducer(
                bootstrap_servers=config["bootstrap"], acks="all", client_id="bench-load"
            )
            await watcher.start()
            await producer.start()
            try:
                for number, batch in enumerate(
                    [ids[:warmup], *chunks(ids[warmup:], config["batch"])]
                ):
                    sent = []
                    for tid in batch:
                        published[tid] = time.perf_counter()
                        sent.append(
                            await producer.send(
                                registered,
                                payloads[tid],
                                key=tid.encode(),
                                headers=[("content-type", STRUCTURED_CONTENT_TYPE.encode())],
                            )
                        )
                    await asyncio.gather(*sent)
                    await watcher.wait_for(batch, within=120 + len(batch), what=f"batch {number}")
            finally:
                await producer.stop()
                await watcher.stop()
        finally:
            await worker.broker.stop()

    measured = ids[warmup:]
    origin = published[measured[0]]
    spans = _handler_spans(settings.spans_file, registered)
    return {
        "startup_seconds": startup,
        "published": [published[t] - origin for t in measured],
        "ready": [watcher.seen[t] - origin for t in measured],
        "handler_seconds": [spans.get(t) for t in measured],
    }


def _registered(tenancy_id: str, manifest: ServiceManifest) -> bytes:
    from shared.events import Brand, Colours, Council, TenancyRegistered, TenancyRegisteredData

    event = TenancyRegistered.new(
        source="tenancy/bench",
        subject=tenancy_id,
        data=TenancyRegisteredData(
            council=Council(gss="E09000012", name="Hackney", nation="England"),
            service=manifest,
            brand=Brand(name="Hackney Council", colours=Colours(primary="#00664F")),
        ),
    )
    return event.model_dump_json().encode()


def _handler_spans(spans_file: Path, topic: str) -> dict[str, float]:
    """How long the worker spent on each tenancy's event: its consumer span, from the event
    reaching the middleware to the results published after the commit."""
    name = f"isolation consume {topic}"
    out: dict[str, float] = {}
    if not spans_file.exists():
        return out
    with spans_file.open() as lines:
        for line in lines:
            span = json.loads(line)
            if span.get("name") == name and span.get("end_ns") and span.get("start_ns"):
                tenancy = span.get("attributes", {}).get("tenancy.id")
                if tenancy:
                    out[tenancy] = (span["end_ns"] - span["start_ns"]) / 1e9
    return out


class Watcher:
    """Notes the moment each tenancy's result appears on the watched topics (raw consumer,
    no group: every partition assigned, read from the beginning)."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        from aiokafka import AIOKafkaConsumer

        self.topics = topics
        self.seen: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
            client_id="bench-watch",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import TopicPartition

        from shared.topics import PARTITIONS

        await self._consumer.start()
        partitions = [TopicPartition(t, p) for t in self.topics for p in range(PARTITIONS)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            fetched = await self._consumer.getmany(timeout_ms=500)
            now = time.perf_counter()
            for partition, records in fetched.items():
                kind = self.topics[partition.topic]
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if kind == "ready":
                        self.seen.setdefault(key, now)
                    else:
                        self.failed[key] = _reason(record.value)
            if fetched:
                self._changed.set()

    async def wait_for(self, ids: list[str], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while True:
            failed = [f"{t}: {self.failed[t]}" for t in ids if t in self.failed]
            if failed:
                raise BenchError(f"{len(failed)} tenancies of {what} failed: {failed[:3]}")
            missing = [t for t in ids if t not in self.seen]
            if not missing:
                return
            if self._task is not None and self._task.done():
                self._task.result()  # the reader died: say why
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{len(missing)} of {len(ids)} tenancies of {what} not ready")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 1.0))


def _reason(value: bytes | None) -> str:
    try:
        return str(json.loads(value or b"{}").get("data", {}).get("reason", "?"))
    except ValueError:
        return "?"


# -- the floor: the same SQL, raw ---------------------------------------------------------------


async def _floor(plan: Plan, server: str, index: int | str) -> dict[str, Any]:
    from services.isolation.settings import IsolationSettings

    manifest = load_manifest(MANIFEST)
    database = service_database_name(f"floor_r{index}", manifest.id)
    limit = int(IsolationSettings.model_fields["tenant_connection_limit"].default)
    ids = [str(uuid.uuid4()) for _ in range(plan.warmup + plan.tenancies)]
    n, w = plan.tenancies, plan.window
    laps = Laps()
    conn = await open_service_database(server, database)
    try:
        for tid in ids[: plan.warmup]:
            await isolate_raw(conn, tid, manifest, database, limit, Laps())
        starts, ends = [], []
        for number, tid in enumerate(ids[plan.warmup :]):
            if number == w:
                first = laps.snapshot()
            if number == n - w:
                before_last = laps.snapshot()
            starts.append(time.perf_counter())
            await isolate_raw(conn, tid, manifest, database, limit, laps)
            ends.append(time.perf_counter())
    finally:
        await conn.close()
    origin = starts[0]
    last = {label: total - before_last.get(label, 0.0) for label, total in laps.snapshot().items()}
    return {
        "started": [s - origin for s in starts],
        "ended": [e - origin for e in ends],
        "statements": {
            label: {"first": first.get(label, 0.0) / w, "last": last[label] / w} for label in last
        },
        "catalog": await _catalog(server, database),
    }


async def _parallel_floor(plan: Plan, server: str, index: int) -> dict[str, Any]:
    """The same SQL on FLOOR_CONNECTIONS connections at once, each taking the next tenancy
    when it has finished one (the worker isolates several at once too)."""
    from services.isolation.settings import IsolationSettings

    manifest = load_manifest(MANIFEST)
    database = service_database_name(f"floor_r{index}", manifest.id)
    limit = int(IsolationSettings.model_fields["tenant_connection_limit"].default)
    ids = [str(uuid.uuid4()) for _ in range(plan.warmup + plan.tenancies)]
    moments: list[tuple[float, float]] = []

    async def drain(conn: ServiceConnections, queue: list[str]) -> None:
        while queue:
            began = time.perf_counter()
            await isolate_raw(conn, queue.pop(), manifest, database, limit, Laps())
            moments.append((began, time.perf_counter()))

    conns = [await open_service_database(server, database) for _ in range(FLOOR_CONNECTIONS)]
    try:
        for tid in ids[: plan.warmup]:
            await isolate_raw(conns[0], tid, manifest, database, limit, Laps())
        queue = list(reversed(ids[plan.warmup :]))
        await asyncio.gather(*(drain(conn, queue) for conn in conns))
    finally:
        for conn in conns:
            await conn.close()
    moments.sort()
    origin = moments[0][0]
    return {"started": [s - origin for s, _ in moments], "ended": [e - origin for _, e in moments]}


@dataclass
class ServiceConnections:
    """The floor's two logins to a service database, as the isolation worker has them."""

    platform: asyncpg.Connection[asyncpg.Record]
    owner: asyncpg.Connection[asyncpg.Record]

    async def close(self) -> None:
        await self.owner.close()
        await self.platform.close()


async def open_service_database(server: str, database: str) -> ServiceConnections:
    """Connections to a new service database set up as the isolation worker sets up its own:
    the platform's, and the service owner's, which runs the manifest's SQL."""
    from services.isolation.credentials import tenant_dsn
    from services.isolation.plan import (
        database_setup,
        new_password,
        owner_access,
        owner_role,
        scram_verifier,
        service_owner,
        shared_database_setup,
    )

    await db.ensure_database(db.with_database(server, database))
    conn = await db.connect(db.with_database(server, database))
    owner, password = service_owner(database), new_password()
    exists = bool(await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", owner))
    for statement in (
        database_setup(database)
        + shared_database_setup(database)
        + owner_role(owner, scram_verifier(password), exists=exists)
        + owner_access(database, owner)
    ):
        await conn.execute(statement)
    return ServiceConnections(conn, await db.connect(tenant_dsn(server, database, owner, password)))


async def isolate_raw(
    conns: ServiceConnections,
    tenancy_id: str,
    manifest: ServiceManifest,
    database: str,
    connection_limit: int,
    laps: Laps,
) -> None:
    """Step for step what ``isolate`` runs for a new schema-tier tenancy, without a worker;
    ``laps`` adds up the time of each step (a microsecond of bookkeeping per step)."""
    from services.isolation.plan import (
        TenantNames,
        login_role,
        migration_statements,
        new_password,
        own_schema,
        scram_verifier,
    )
    from services.isolation.repository import Ledger, Migrations
    from services.isolation.service import execute_all

    names = TenantNames.for_tenancy(tenancy_id, manifest.isolation, database)
    conn, owner = conns.platform, conns.owner
    async with _timed_transaction(conn, laps, "COMMIT (platform)"):
        ledger = Ledger(conn)
        with laps.lap("advisory lock"):
            await ledger.lock_tenancy(tenancy_id)
        with laps.lap("ledger look-up"):
            await ledger.get(tenancy_id)
        with laps.lap("SCRAM verifier (client side)"):
            password = new_password()
            verifier = scram_verifier(password)
        # In one round trip per group, as ``isolate`` sends them (``execute_all``).
        with laps.lap("role: CREATE ROLE ... PASSWORD <verifier>, settings, group"):
            await execute_all(conn, login_role(names, verifier, connection_limit))
        with laps.lap("ledger insert"):
            await ledger.add(
                tenancy_id,
                manifest.id,
                manifest.isolation,
                names.database,
                names.schema,
                names.role,
                password,
            )
        with laps.lap("schema: CREATE SCHEMA, grants, default privileges"):
            await execute_all(conn, own_schema(names))
    # The manifest's SQL, as the service owner, in a transaction of its own.
    async with _timed_transaction(owner, laps, "COMMIT (service owner)"):
        with laps.lap("owner: advisory lock"):
            await owner.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{tenancy_id}"
            )
        migrations = Migrations(owner)
        with laps.lap("migration ledger look-up"):
            await migrations.of_tenancy(tenancy_id)
        for migration in manifest.migrations:
            with laps.lap(f"migration {migration.version}: {migration.description}"):
                await execute_all(owner, migration_statements(names.schema, migration))
        with laps.lap("migration ledger insert"):
            versions = [migration.version for migration in manifest.migrations]
            await migrations.record_for_tenancy(tenancy_id, versions)


@contextlib.asynccontextmanager
async def _timed_transaction(
    conn: asyncpg.Connection[asyncpg.Record], laps: Laps, commit: str
) -> AsyncIterator[None]:
    transaction = conn.transaction()
    await transaction.start()
    try:
        yield
    except BaseException:
        await transaction.rollback()
        raise
    with laps.lap(commit):
        await transaction.commit()


# -- the server ---------------------------------------------------------------------------------


async def _catalog(server: str, database: str) -> dict[str, int]:
    conn = await asyncpg.connect(db.with_database(server, database))
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM pg_roles) AS roles,"
            " (SELECT count(*) FROM pg_namespace) AS schemas,"
            " (SELECT count(*) FROM pg_class) AS relations,"
            " pg_database_size(current_database()) AS database_bytes"
        )
    finally:
        await conn.close()
    assert row is not None
    return {key: int(value) for key, value in row.items()}


# -- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """One measurement reduced to its figures (seconds)."""

    first: float
    last: float
    total: float
    p50: float
    p95: float
    idle: float
    handler_first: float | None
    handler_last: float | None
    curve: list[float]


def _system_figures(plan: Plan, measured: dict[str, Any]) -> _Run:
    published: list[float] = measured["published"]
    ready: list[float] = measured["ready"]
    latencies = [r - p for p, r in zip(published, ready, strict=True)]
    done = sorted(ready)
    n, w = plan.tenancies, plan.window
    handler: list[float | None] = measured["handler_seconds"]
    by_completion = [handler[i] for i in sorted(range(n), key=ready.__getitem__)]

    def mean_handler(window: list[float | None]) -> float | None:
        known = [v for v in window if v is not None]
        return statistics.fmean(known) if len(known) == len(window) else None

    return _Run(
        first=per_item(done, 0, w),
        last=per_item(done, n - w, w),
        total=max(ready),
        p50=percentile(latencies, 50),
        p95=percentile(latencies, 95),
        # A batch lands on an idle worker: its first result is one tenancy's trip through
        # Kafka, the worker and back, queueing aside.
        idle=statistics.median(
            min(ready[start : start + plan.batch]) - published[start]
            for start in range(0, n, plan.batch)
        ),
        handler_first=mean_handler(by_completion[:w]),
        handler_last=mean_handler(by_completion[n - w :]),
        curve=series(done, w),
    )


def _floor_figures(plan: Plan, measured: dict[str, Any]) -> _Run:
    started: list[float] = measured["started"]
    ended: list[float] = measured["ended"]
    durations = [e - s for s, e in zip(started, ended, strict=True)]
    n, w = plan.tenancies, plan.window
    return _Run(
        first=per_item(ended, 0, w),
        last=per_item(ended, n - w, w),
        total=ended[-1],
        p50=percentile(durations, 50),
        p95=percentile(durations, 95),
        idle=percentile(durations, 50),
        handler_first=None,
        handler_last=None,
        curve=series(ended, w),
    )


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]
    system = [_system_figures(plan, r["system"]) for r in repeats]
    floor = [_floor_figures(plan, r["floor"]) for r in repeats]
    n, w = plan.tenancies, plan.window

    def ms(runs: list[_Run], name: str) -> list[float]:
        return [getattr(r, name) * 1000 for r in runs]

    figures: dict[str, Figure] = {
        "first_ms_per_tenancy": figure(
            f"per tenancy, first {w}", "ms", ms(system, "first"), ms(floor, "first")
        ),
        "last_ms_per_tenancy": figure(
            f"per tenancy, last {w}", "ms", ms(system, "last"), ms(floor, "last")
        ),
        "growth": figure(
            "growth, last / first (flat = 1)",
            "x",
            [r.last / r.first for r in system],
            [r.last / r.first for r in floor],
            ratio=False,
        ),
        "mean_ms_per_tenancy": figure(
            f"per tenancy, all {n} (total / {n})",
            "ms",
            [r.total / n * 1000 for r in system],
            [r.total / n * 1000 for r in floor],
        ),
        "total_s": figure(
            f"total, {n} tenancies", "s", [r.total for r in system], [r.total for r in floor]
        ),
        "total_vs_parallel_s": figure(
            f"… against the floor on {FLOOR_CONNECTIONS} connections at once",
            "s",
            [r.total for r in system],
            [max(r[PARALLEL]["ended"]) for r in repeats],
        ),
        "idle_latency_ms": figure(
            "first result of a batch, from its publish (floor: one transaction, p50)",
            "ms",
            ms(system, "idle"),
            ms(floor, "idle"),
        ),
        "latency_p50_ms": figure(
            f"latency p50, publish → ready, batches of {plan.batch}",
            "ms",
            ms(system, "p50"),
            ms(floor, "p50"),
            ratio=False,
            note="the system's latency includes waiting behind the rest of its batch",
        ),
        "latency_p95_ms": figure(
            f"latency p95, publish → ready, batches of {plan.batch}",
            "ms",
            ms(system, "p95"),
            ms(floor, "p95"),
            ratio=False,
        ),
    }
    if all(r.handler_first is not None and r.handler_last is not None for r in system):
        figures["handler_first_ms"] = figure(
            f"worker's consumer span, mean of first {w}",
            "ms",
            [(r.handler_first or 0) * 1000 for r in system],
            ms(floor, "first"),
        )
        figures["handler_last_ms"] = figure(
            f"worker's consumer span, mean of last {w}",
            "ms",
            [(r.handler_last or 0) * 1000 for r in system],
            ms(floor, "last"),
        )
    figures["other_cpu"] = other_cpu_figure(repeats)
    for key, label in (
        ("relations", "catalog relations in the service database at the end"),
        ("roles", "roles in the cluster at the end"),
    ):
        figures[f"{key}_at_end"] = figure(
            label,
            "count",
            [r["system"]["catalog"][key] for r in repeats],
            [r["floor"]["catalog"][key] for r in repeats],
            ratio=False,
        )
    windows = len(system[0].curve)
    labels = repeats[0]["floor"]["statements"]
    statements = [
        {
            "label": label,
            "values": [
                statistics.median(r["floor"]["statements"][label][side] * 1000 for r in repeats)
                for side in ("first", "last")
            ],
        }
        for label in labels
    ]
    statements.sort(key=lambda row: -max(row["values"]))
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "ran_at": now_iso(),
        "machine": run_machine(measured),
        "parameters": {
            **asdict(plan),
            "service": MANIFEST.stem,
            "tier": "schema",
            "migrations": len(load_manifest(MANIFEST).migrations),
            **run_parameters(measured),
        },
        "figures": figures,
        "breakdowns": [
            {
                "title": "floor, step by step: where one tenancy's time goes (median of repeats)",
                "unit": "ms per tenancy",
                "columns": [f"first {w}", f"last {w}"],
                "rows": statements,
            }
        ],
        "series": {
            "window": w,
            "unit": "ms per tenancy",
            "system": [
                statistics.median(r.curve[i] * 1000 for r in system) for i in range(windows)
            ],
            "floor": [statistics.median(r.curve[i] * 1000 for r in floor) for i in range(windows)],
        },
        "notes": [
            "PostgreSQL runs with durable=False (fsync=off): commits cost no disk flush, for "
            "the system and the floor alike; a durable server adds a flush to both.",
            f"Per tenancy over a window = (last - first completion) / ({w} - 1): a throughput. "
            f"The system's total also holds the pause between batches of {plan.batch} "
            "(the next batch is published when the previous one is ready).",
            "System: the isolation worker with its inbox, outbox and tracing, in a fresh Python "
            "process per repeat, sharing its event loop with the load generator. Floor: the same "
            "SQL in one asyncpg loop, a tenancy's role and schema in one transaction on the "
            "platform's connection and its migrations in one on the service owner's, SCRAM "
            f"verifier included. The parallel floor runs the same on {FLOOR_CONNECTIONS} "
            "connection pairs at once, each taking the next tenancy.",
            f"{plan.warmup} warm-up tenancies precede each measurement (service database "
            "creation, connections) and are not counted. Every measurement starts on an emptied "
            "cluster; the sides' order turns between repeats.",
        ],
        "repeats": [
            {
                "order": r["order"],
                "system": kept(
                    _rounded(s), r["system"], "startup_seconds", "other_cpu_share", "catalog"
                ),
                "floor": kept(_rounded(f), r["floor"], "other_cpu_share", "catalog"),
                PARALLEL: {
                    "total_s": max(r[PARALLEL]["ended"]),
                    "other_cpu_share": r[PARALLEL]["other_cpu_share"],
                },
            }
            for r, s, f in zip(repeats, system, floor, strict=True)
        ],
    }


def _rounded(run: _Run) -> dict[str, Any]:
    """One repeat's figures in milliseconds (total in seconds)."""
    out: dict[str, Any] = {}
    for key, value in asdict(run).items():
        if key == "total":
            out["total_s"] = value
        elif key == "curve":
            out["curve_ms"] = [round(v * 1000, 4) for v in value]
        elif value is not None:
            out[f"{key}_ms"] = round(value * 1000, 4)
    return out


if __name__ == "__main__":
    sys.exit(child_main(NAME, _system_run, sys.argv[1:]))
