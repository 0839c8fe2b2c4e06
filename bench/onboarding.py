"""What the onboarding scenarios (``all-councils``, ``one-at-a-time``, ``scale``) share: the
councils they onboard, the whole system run as four worker processes, and its raw floor.

*System*: a child process (:func:`bench.child.run_child`) starts the four workers as real
processes (``python -m services.<name>``) on the bench's servers, loads the example catalogue
and submits onboardings into ``bin-collections`` (schema tier) exactly as the CLI does:
``accept_request`` in a unit of work on onboarding's outbox, published to the broker. Requests
go in ``at once`` (up to :data:`CONCURRENCY` in flight) or one after another, each waiting for
``active``. Times to ``active`` come from ``onboarding.tenancies`` (``active_at -
requested_at``, both the database's clock).

*Floor*: the database work one tenancy's provisioning needs, without Kafka, inbox, outbox or
audit: onboarding's uniqueness check, tenancy row and step rows, branding's version row and
current theme, metering's tenancy and meter rows (one transaction on the platform database,
through the workers' own repositories), and isolation's role, schema, grants and migrations (a
transaction on the service database as the platform, then one as the service owner,
:func:`bench.isolation.isolate_raw`). One asyncpg loop, one tenancy after another.

``python -m bench.all_councils CONFIG OUT`` (and the other two) run the system side here.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg

from bench.child import SESSION_TIMEOUT_MS, run_child
from bench.common import (
    FLOOR_CONNECTIONS,
    BenchError,
    Figure,
    Laps,
    chunks,
    cpu_snapshot,
    empty_cluster,
    figure,
    now_iso,
    other_cpu_figure,
    percentile,
    run_machine,
    run_parameters,
    server_facts,
    sides_in_turn,
)
from bench.isolation import MANIFEST, ServiceConnections, isolate_raw, open_service_database
from shared import db
from shared.settings import DEFAULT_COUNCILS_CSV, REPO_ROOT, CommonSettings

WORKERS = ("onboarding", "isolation", "branding", "metering")
SERVICE_ID = "bin-collections"
# Requests in flight at once when submitting "at once": enough to keep every worker busy.
CONCURRENCY = 50
Raw: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
# How often the child asks the database how far a batch has got. The times come from the
# database's own timestamps, so polling more often would only take PostgreSQL from the workers.
POLL_SECONDS = 0.25
# No tenancy becoming active for this long means the system has stalled.
STALL_SECONDS = 120.0
READY_SECONDS = 60.0


def councils_csv() -> Path:
    """The real council reference data, as the workers find it (``COUNCILS_CSV`` wins)."""
    raw = os.environ.get("COUNCILS_CSV")
    return Path(raw).expanduser().absolute() if raw else DEFAULT_COUNCILS_CSV


def current_councils(path: Path) -> list[str]:
    """The GSS codes of every council that exists today, in a stable order."""
    from services.onboarding.councils import CouncilRegister

    return sorted(record.gss for record in CouncilRegister.from_csv(path).current())


def write_synthetic_councils(path: Path, count: int) -> list[str]:
    """A councils CSV shaped like the real one, holding ``count`` made-up English parish councils
    (one council may hold one live tenancy per service, so each tenancy needs its own council);
    returns their GSS codes."""
    with DEFAULT_COUNCILS_CSV.open(newline="", encoding="utf-8") as real:
        columns = next(csv.reader(real))
    codes = [f"E04{number:06d}" for number in range(1, count + 1)]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns, restval="")
        writer.writeheader()
        for number, gss in enumerate(codes, start=1):
            writer.writerow(
                {
                    "local-authority-code": f"P{number:06d}",
                    "official-name": f"Benchfield {number} Parish Council",
                    "nice-name": f"Benchfield {number}",
                    "gss-code": gss,
                    "start-date": "2000-01-01",
                    "end-date": "",
                    "nation": "England",
                    "local-authority-type-name": "Parish council",
                }
            )
    return codes


# -- in the parent ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What one system run submits: ``councils`` in ``batches`` of that size (each at once, the
    next when the previous is active), or one at a time; the first ``warmup`` are not timed.
    With ``replicas`` (1, 2) each repeat runs the system twice, with one and two of each worker;
    with ``floors`` (1, 4) the floor twice, one tenancy after another and four at a time."""

    councils: list[str]
    councils_csv: Path
    mode: str  # "at-once" or "one-at-a-time"
    batch: int
    warmup: int = 0
    # The system runs once per entry, with that many processes of each worker, and the floor
    # once per entry, on that many pairs of connections.
    replicas: tuple[int, ...] = (1,)
    floors: tuple[int, ...] = (1,)


async def system(
    scenario: str,
    load: Load,
    server: str,
    bootstrap: str,
    root: Path,
    index: int,
    replicas: int = 1,
) -> dict[str, Any]:
    from services.branding.settings import BrandingSettings
    from services.isolation.settings import IsolationSettings
    from services.metering.settings import MeteringSettings
    from services.onboarding.settings import OnboardingSettings

    name = f"r{index}" if replicas == 1 else f"r{index}x{replicas}"
    config = {
        "bootstrap": bootstrap,
        "database_url": db.with_database(server, f"bench_{name}"),
        # Each side its own topics: a side must not read what an earlier one left.
        "topic_prefix": f"bench.{name}.",
        "councils": load.councils,
        "councils_csv": str(load.councils_csv),
        "mode": load.mode,
        "batch": load.batch,
        "warmup": load.warmup,
        "replicas": replicas,
    }
    folder = root / f"replicas-{replicas}"
    folder.mkdir(exist_ok=True)
    settings = (OnboardingSettings, IsolationSettings, BrandingSettings, MeteringSettings)
    # A stalled run fails on its own (STALL_SECONDS); this only stops a child that hangs.
    within = 300 + len(load.councils) * 0.5
    return await run_child(scenario, settings, folder, index, config, within=within)


async def measure(
    scenario: str,
    load: Load,
    repeat: int,
    server: str,
    bootstrap: str,
    root: Path,
) -> dict[str, Any]:
    """A scenario's repeats of every side on the servers :func:`on_embedded_servers` started:
    the system with each number of ``load.replicas``, and the floor serial and in parallel."""
    sides: dict[str, Callable[[int], Awaitable[dict[str, Any]]]] = {
        side_name(n): partial(system, scenario, load, server, bootstrap, root, replicas=n)
        for n in load.replicas
    }
    for connections in load.floors:
        run = partial(
            floor, server, councils=load.councils, warmup=load.warmup, connections=connections
        )
        sides[floor_name(connections)] = partial(_floor_as_dict, run)
    return {"server": await server_facts(server), "repeats": await repeated(repeat, server, sides)}


def side_name(replicas: int) -> str:
    return "system" if replicas == 1 else f"system_x{replicas}"


def floor_name(connections: int) -> str:
    return "floor" if connections == 1 else f"floor_x{connections}"


async def _floor_as_dict(run: Callable[[int], Awaitable[FloorRun]], index: int) -> dict[str, Any]:
    done = await run(index)
    return {"started": done.started, "ended": done.ended, "steps": done.steps}


async def emptied(server: str) -> None:
    # Roles are cluster-wide: without dropping them they would carry over to the next side.
    await empty_cluster(server, tenant_roles=True)


# -- in the child: the workers ------------------------------------------------------------------


def worker_env(config: dict[str, Any], port: int) -> dict[str, str]:
    root = Path(config["root"])
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": config["bootstrap"],
        "DATABASE_URL": config["database_url"],
        "TOPIC_PREFIX": config["topic_prefix"],
        "KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "COUNCILS_CSV": config["councils_csv"],
        "ASSETS_DIR": str(root / "assets"),
        "THEMES_DIR": str(root / "themes"),
        "EXPORTS_DIR": str(root / "exports"),
        "SPANS_FILE": str(root / "spans.jsonl"),
        "LOG_LEVEL": "WARNING",
        "OUTBOX_SWEEP_SECONDS": "2",
        "BILLING_AUTO_CLOSE": "false",
        # Readiness is asked of /readyz: at WARNING the "worker ready" line is not logged.
        "HEALTH_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class RunningWorkers:
    """The worker processes of a run, by worker: one each, or ``replicas`` of each."""

    procs: dict[str, list[asyncio.subprocess.Process]]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user and system) used so far by each worker's processes together, and
        by the servers (see :func:`servers_cpu_seconds`)."""
        import psutil

        used: dict[str, float] = {}
        for name, procs in self.procs.items():
            times = [psutil.Process(proc.pid).cpu_times() for proc in procs]
            used[name] = sum(t.user + t.system for t in times)
        parent = psutil.Process().parent()
        return {**used, **servers_cpu_seconds(parent.pid if parent is not None else None)}


def servers_cpu_seconds(bench: int | None) -> dict[str, float]:
    """CPU seconds used so far by the servers the bench process ``bench`` started: PostgreSQL
    (the postmaster, its live backends and those it has reaped) and the broker."""
    import psutil

    used = {"PostgreSQL": 0.0, "broker": 0.0}
    for server in psutil.Process(bench).children() if bench is not None else []:
        with contextlib.suppress(psutil.Error):
            name = server.name()
            kind = "PostgreSQL" if name == "postgres" else "broker" if "tansu" in name else None
            if kind is None:
                continue  # a child process of the bench's own
            for proc in [server, *server.children(recursive=True)]:
                t = proc.cpu_times()
                used[kind] += t.user + t.system + t.children_user + t.children_system
    return used


@contextlib.asynccontextmanager
async def workers_running(config: dict[str, Any]) -> AsyncIterator[RunningWorkers]:
    """The four workers as real processes (``config["replicas"]`` of each, default one), ready
    (consumers joined) when this yields."""
    from shared.kafka_admin import ensure_topics
    from shared.topics import PARTITIONS, Topic
    from stack.ports import free_port

    root = Path(config["root"])
    replicas = int(config.get("replicas", 1))
    # Made before the workers start, as the launcher does: four workers making them at the same
    # moment race each other.
    await db.ensure_database(config["database_url"])
    topics = [config["topic_prefix"] + topic.value for topic in Topic]
    await ensure_topics(config["bootstrap"], topics, PARTITIONS)
    running = RunningWorkers({name: [] for name in WORKERS})
    starting: list[tuple[str, asyncio.subprocess.Process, int]] = []
    try:
        for name in WORKERS:
            for replica in range(replicas):
                label = name if replicas == 1 else f"{name}-{replica}"
                while (port := free_port()) in {port for _, _, port in starting}:
                    pass
                with (root / f"{label}.log").open("ab") as log:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        f"services.{name}",
                        cwd=REPO_ROOT,
                        env=worker_env(config, port),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                running.procs[name].append(proc)
                starting.append((label, proc, port))
        await asyncio.gather(*(_ready(label, proc, port, root) for label, proc, port in starting))
        yield running
    finally:
        everyone = [proc for procs in running.procs.values() for proc in procs]
        for proc in everyone:
            if proc.returncode is None:
                proc.terminate()
        for proc in everyone:
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _ready(name: str, proc: asyncio.subprocess.Process, port: int, root: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not await asyncio.to_thread(_answers, f"http://127.0.0.1:{port}/readyz"):
        if proc.returncode is not None or time.monotonic() > deadline:
            tail = (root / f"{name}.log").read_text(errors="replace")[-3000:]
            raise BenchError(f"worker {name} did not become ready:\n{tail}")
        await asyncio.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        # Only ever the worker's own http://127.0.0.1 probe.
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


# -- in the child: submitting and waiting -------------------------------------------------------


class Submitter:
    """Onboardings submitted as the CLI submits them, and watched in the database."""

    def __init__(self, config: dict[str, Any], pool: db.Pool) -> None:
        from services.onboarding.councils import CouncilRegister
        from shared.messaging import create_broker

        self.pool = pool
        self.prefix = config["topic_prefix"]
        self.register = CouncilRegister.from_csv(Path(config["councils_csv"]))
        settings = CommonSettings(_env_file=None, kafka_bootstrap_servers=config["bootstrap"])  # type: ignore[call-arg]
        self.broker = create_broker(settings, client_id="bench-load")

    async def onboard(self, council: str) -> str:
        from services.onboarding.service import Person, accept_request
        from shared.messaging import publish_json
        from shared.outbox import UnitOfWork

        async def publish(payload: dict[str, Any], **kw: Any) -> None:
            await publish_json(self.broker, payload, **kw)

        async with UnitOfWork(self.pool, "onboarding", publish, self.prefix).transaction() as tx:
            return await accept_request(
                tx,
                self.register,
                council_code=council,
                service_id=SERVICE_ID,
                contact=None,
                brand=None,
                source="bench",
                accepted_by=Person("bench", "operator"),
            )

    async def at_once(self, councils: Sequence[str]) -> list[str]:
        """Submit every council's onboarding, up to CONCURRENCY in flight; ids in that order."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(council: str) -> str:
            async with gate:
                return await self.onboard(council)

        return list(await asyncio.gather(*(one(c) for c in councils)))

    async def wait_active(self, ids: Sequence[str], poll: float = POLL_SECONDS) -> None:
        """Until every tenancy is active; fails loudly, with reasons, if any failed or stalls."""
        done, progress = 0, time.monotonic()
        while done < len(ids):
            await asyncio.sleep(poll)
            rows = await self.pool.fetch(
                "SELECT state, count(*) AS n FROM onboarding.tenancies"
                " WHERE id = ANY($1::uuid[]) GROUP BY state",
                ids,
            )
            states: dict[str, int] = {r["state"]: r["n"] for r in rows}
            if states.get("failed"):
                await self._failed(ids)
            if states.get("active", 0) > done:
                done, progress = states["active"], time.monotonic()
            elif time.monotonic() - progress > STALL_SECONDS:
                raise BenchError(f"{len(ids) - done} of {len(ids)} tenancies stalled: {states}")

    async def _failed(self, ids: Sequence[str]) -> None:
        rows = await self.pool.fetch(
            "SELECT id::text, council_gss, failed_step, reason FROM onboarding.tenancies"
            " WHERE id = ANY($1::uuid[]) AND state = 'failed' ORDER BY failed_at",
            ids,
        )
        reasons = "\n".join(
            f"  {r['id']} ({r['council_gss']}): {r['failed_step']}: {r['reason']}" for r in rows
        )
        raise BenchError(f"{len(rows)} tenancies failed:\n{reasons}")

    async def times(self, ids: Sequence[str]) -> tuple[list[float], list[float]]:
        """Each tenancy's requested and active moments (database clock, epoch seconds)."""
        rows = await self.pool.fetch(
            "SELECT id::text, extract(epoch FROM requested_at)::float8 AS requested,"
            " extract(epoch FROM active_at)::float8 AS active FROM onboarding.tenancies"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        found = {r["id"]: (r["requested"], r["active"]) for r in rows}
        return [found[t][0] for t in ids], [found[t][1] for t in ids]


async def system_run(config: dict[str, Any]) -> dict[str, Any]:
    """The child: the workers, the catalogue, then the load the parent asked for."""
    began = time.perf_counter()
    async with workers_running(config) as workers:
        startup = time.perf_counter() - began
        pool = await db.create_pool(config["database_url"], max_size=CONCURRENCY + 2)
        try:
            await _load_catalogue(pool)
            submitter = Submitter(config, pool)
            await submitter.broker.start()
            try:
                before, machine_before = workers.cpu_seconds(), cpu_snapshot()
                measured = await _drive(submitter, config)
                after, machine_after = workers.cpu_seconds(), cpu_snapshot()
            finally:
                await submitter.broker.stop()
        finally:
            await pool.close()
    cpu = {name: after[name] - before[name] for name in after}
    # The load generator (this process) and anything else the machine did meanwhile.
    cpu["everything else"] = max(0.0, machine_after.busy - machine_before.busy - sum(cpu.values()))
    return {"startup_seconds": startup, "cpu_seconds": cpu, **measured}


async def _load_catalogue(pool: db.Pool) -> None:
    from services.onboarding.repository import CatalogueRepository
    from shared.catalogue import load_catalogue

    async with pool.acquire() as conn:
        for manifest in load_catalogue(REPO_ROOT / "catalogue"):
            await CatalogueRepository(conn).upsert(manifest)


async def _drive(submitter: Submitter, config: dict[str, Any]) -> dict[str, Any]:
    councils: list[str] = config["councils"]
    warmup = councils[: config["warmup"]]
    for council in warmup:
        await submitter.wait_active([await submitter.onboard(council)])
    timed = councils[config["warmup"] :]
    if config["mode"] == "one-at-a-time":
        return await _one_at_a_time(submitter, timed)
    return await _in_batches(submitter, timed, config["batch"])


async def _one_at_a_time(submitter: Submitter, councils: list[str]) -> dict[str, Any]:
    ids, seen = [], []
    for council in councils:
        began = time.perf_counter()
        tenancy = await submitter.onboard(council)
        # Polled often: the poll's own delay is part of what the caller sees.
        await submitter.wait_active([tenancy], poll=0.005)
        seen.append(time.perf_counter() - began)
        ids.append(tenancy)
    requested, active = await submitter.times(ids)
    return {"requested": requested, "active": active, "observed_seconds": seen}


async def _in_batches(submitter: Submitter, councils: list[str], batch: int) -> dict[str, Any]:
    ids: list[str] = []
    walls = []
    for part in chunks(councils, batch):
        began = time.perf_counter()
        new = await submitter.at_once(part)
        await submitter.wait_active(new)
        walls.append(time.perf_counter() - began)
        ids += new
    requested, active = await submitter.times(ids)
    return {"requested": requested, "active": active, "batch_seconds": walls}


# -- the floor ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorRun:
    started: list[float]
    ended: list[float]
    steps: dict[str, float]  # seconds per tenancy, mean over all, by step

    def durations(self) -> list[float]:
        return [e - s for s, e in zip(self.started, self.ended, strict=True)]


async def floor(
    server: str, index: int, councils: Sequence[str], warmup: int = 0, connections: int = 1
) -> FloorRun:
    """Provision ``councils`` the raw way, the first ``warmup`` one after another and untimed,
    then the rest on ``connections`` pairs of connections at once (one pair: one after
    another), each pair taking the next council when it has finished one."""
    from services.isolation.settings import IsolationSettings
    from shared.catalogue import load_manifest
    from shared.identifiers import service_database_name

    manifest = load_manifest(MANIFEST)
    platform = db.with_database(server, f"floor_r{index}")
    limit = int(IsolationSettings.model_fields["tenant_connection_limit"].default)
    database = service_database_name(f"floor_r{index}", manifest.id)
    await _platform_schemas(platform)
    laps = Laps()
    moments: list[tuple[float, float]] = []

    async def one(conn: Raw, service_conn: ServiceConnections, council: str) -> None:
        tenancy = str(uuid.uuid4())
        with laps.lap("platform: tenancy, steps, theme version, meters"):
            await _platform_writes(conn, tenancy, council, manifest)
        with laps.lap("isolation: role, schema, grants, migrations"):
            await isolate_raw(service_conn, tenancy, manifest, database, limit, Laps())

    async def drain(pair: tuple[Raw, ServiceConnections], queue: list[str]) -> None:
        while queue:
            began = time.perf_counter()
            await one(*pair, queue.pop())
            moments.append((began, time.perf_counter()))

    pairs: list[tuple[Raw, ServiceConnections]] = []
    try:
        for _ in range(connections):
            pairs.append(
                (await db.connect(platform), await open_service_database(server, database))
            )
        await _load_catalogue_on(pairs[0][0])
        for council in councils[:warmup]:
            await one(*pairs[0], council)
        queue = list(reversed(councils[warmup:]))
        await asyncio.gather(*(drain(pair, queue) for pair in pairs))
    finally:
        for conn, service_conn in pairs:
            await service_conn.close()
            await conn.close()
    moments.sort()
    origin = moments[0][0] if moments else 0.0
    return FloorRun(
        started=[began - origin for began, _ in moments],
        ended=[end - origin for _, end in moments],
        steps={label: total / max(1, len(councils)) for label, total in laps.snapshot().items()},
    )


async def _platform_schemas(dsn: str) -> None:
    from services.branding.app import MIGRATIONS as BRANDING
    from services.metering.app import MIGRATIONS as METERING
    from services.onboarding.app import MIGRATIONS as ONBOARDING

    await db.ensure_database(dsn)
    pool = await db.create_pool(dsn, max_size=1)
    try:
        for schema, folder in (
            ("onboarding", ONBOARDING),
            ("branding", BRANDING),
            ("metering", METERING),
        ):
            await db.migrate(pool, schema, folder)
    finally:
        await pool.close()


async def _load_catalogue_on(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    from services.onboarding.repository import CatalogueRepository
    from shared.catalogue import load_manifest

    await CatalogueRepository(conn).upsert(load_manifest(MANIFEST))


async def _platform_writes(
    conn: asyncpg.Connection[asyncpg.Record], tenancy_id: str, gss: str, manifest: Any
) -> None:
    """Onboarding's, branding's and metering's essential rows for one tenancy, in one
    transaction, through the workers' own repositories (the same SQL, none of the plumbing)."""
    from services.branding.repository import BrandVersions
    from services.branding.theme import canonical, content_hash
    from services.metering.repository import Meters
    from services.metering.service import period_kind
    from services.onboarding.domain import State, StepStatus, Tenancy
    from services.onboarding.repository import TenancyRepository
    from shared.events import (
        STEPS,
        Acceptance,
        Brand,
        Colours,
        Council,
        OnboardingRequestedData,
        ThemePaths,
    )

    name = f"Council {gss}"
    brand = Brand(name=name, colours=Colours(primary="#0B0C0C"), logo_alt=name)
    request = OnboardingRequestedData(
        council=gss,
        service_id=manifest.id,
        acceptance=Acceptance(
            agreement_version=manifest.agreement.version,
            name="bench",
            role="operator",
            accepted_at=datetime.now(UTC),
        ),
    )
    async with conn.transaction():
        tenancies = TenancyRepository(conn)
        if await tenancies.live_tenancy_of(gss, manifest.id):
            raise BenchError(f"floor: {gss} already has a tenancy")
        await tenancies.add_request(tenancy_id, gss, name, manifest.id, request)
        done: dict[str, StepStatus] = {step: StepStatus.DONE for step in STEPS}
        await tenancies.save(Tenancy(tenancy_id, gss, manifest.id, State.ACTIVE, done))
        versions = BrandVersions(conn)
        paths = ThemePaths(css=f"{tenancy_id}/v1/theme.css", tokens=f"{tenancy_id}/v1/tokens.json")
        await versions.add(tenancy_id, 1, canonical(brand), content_hash(brand), paths)
        await versions.make_current(tenancy_id, 1)
        council = Council(gss=gss, name=name, nation="England")
        await Meters(conn).open(
            tenancy_id, manifest.id, manifest.meters, council, period_kind(manifest), None
        )


# -- both sides, repeated -----------------------------------------------------------------------


async def repeated(
    repeat: int, server: str, sides: dict[str, Callable[[int], Awaitable[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """``repeat`` repeats of every side, each on an emptied cluster, their order turning."""
    repeats = [
        await sides_in_turn(
            index,
            {name: partial(side, index) for name, side in sides.items()},
            before_each=partial(emptied, server),
        )
        for index in range(repeat)
    ]
    await emptied(server)
    return repeats


def cpu_breakdown(repeats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where the system's CPU went while it worked: each worker's processes, the servers, and
    the rest of the machine (the load generator, and whatever else ran)."""
    labels = list(repeats[0]["system"]["cpu_seconds"])
    return {
        "title": "system, CPU seconds by process while it worked (median of repeats)",
        "unit": "CPU s",
        "columns": ["used"],
        "rows": [
            {
                "label": label,
                "values": [statistics.median(r["system"]["cpu_seconds"][label] for r in repeats)],
            }
            for label in labels
        ],
    }


# -- figures ------------------------------------------------------------------------------------


def latencies(side: dict[str, Any]) -> list[float]:
    """Seconds from request to ``active`` of each tenancy (the floor's: its own duration)."""
    if "active" in side:
        return [a - r for r, a in zip(side["requested"], side["active"], strict=True)]
    return [e - s for s, e in zip(side["started"], side["ended"], strict=True)]


def total_seconds(side: dict[str, Any]) -> float:
    """From the first request to the last tenancy active (the floor: first start to last end)."""
    if "active" in side:
        return float(max(side["active"]) - min(side["requested"]))
    return float(side["ended"][-1] - side["started"][0])


def latency_figures(repeats: Sequence[dict[str, Any]], what: str, *qs: int) -> dict[str, Figure]:
    """Percentiles of the time to ``active``, system next to the floor's own per-tenancy time."""
    return {
        f"p{q}_ms": figure(
            f"{what} p{q}, request → active (floor: one tenancy's own time)",
            "ms",
            [percentile(latencies(r["system"]), q) * 1000 for r in repeats],
            [percentile(latencies(r["floor"]), q) * 1000 for r in repeats],
        )
        for q in qs
    }


def replica_figures(
    repeats: Sequence[dict[str, Any]], what: str, floor: str, floor_label: str = ""
) -> dict[str, Figure]:
    """The total with two of each worker, against the ``floor`` side, and its speed-up over
    one of each."""
    one = [total_seconds(r["system"]) for r in repeats]
    two = [total_seconds(r[side_name(2)]) for r in repeats]
    return {
        "total_x2_s": figure(
            f"{what}, 2 of each worker" + (f" (floor: {floor_label})" if floor_label else ""),
            "s",
            two,
            [total_seconds(r[floor]) for r in repeats],
        ),
        "speed_up_x2": figure(
            "speed-up with 2 of each worker (one's total / two's)",
            "times",
            [a / b for a, b in zip(one, two, strict=True)],
        ),
    }


def floor_breakdown(repeats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    labels = list(repeats[0]["floor"]["steps"])
    return {
        "title": "floor, step by step: one tenancy's time (median of repeats)",
        "unit": "ms per tenancy",
        "columns": ["mean"],
        "rows": [
            {
                "label": label,
                "values": [statistics.median(r["floor"]["steps"][label] * 1000 for r in repeats)],
            }
            for label in labels
        ],
    }


FLOOR_NOTE = (
    "Floor: onboarding's uniqueness check, tenancy and step rows, branding's version and current "
    "theme rows, metering's tenancy and meter rows (one transaction, the workers' repositories), "
    "then isolation's role, schema and grants, and its migrations as the service owner (a "
    "transaction each on the service database): one asyncpg loop, one tenancy after another, "
    "no Kafka, inbox, outbox, audit or theme files. The parallel floor does the same on "
    f"{FLOOR_CONNECTIONS} pairs of connections at once, each taking the next council."
)
SYSTEM_NOTE = (
    "System: the four workers as real processes (python -m services.<name>, fresh per repeat), "
    "requests accepted as the CLI accepts them (accept_request in a unit of work, published to "
    "the broker); time to active is active_at - requested_at in onboarding.tenancies."
)


def result(
    name: str,
    description: str,
    measured: dict[str, Any],
    parameters: dict[str, Any],
    figures: dict[str, Figure],
    notes: list[str],
    series_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A scenario's result in the shape every scenario writes."""
    repeats = measured["repeats"]
    return {
        "name": name,
        "description": description,
        "ran_at": now_iso(),
        "machine": run_machine(measured),
        "parameters": {
            **parameters,
            "service": SERVICE_ID,
            "tier": "schema",
            "concurrency": CONCURRENCY,
            **run_parameters(measured),
        },
        "figures": {**figures, "other_cpu": other_cpu_figure(repeats)},
        "breakdowns": [floor_breakdown(repeats), cpu_breakdown(repeats)],
        "series": series_ or {},
        "notes": [
            *notes,
            SYSTEM_NOTE,
            FLOOR_NOTE,
            "PostgreSQL runs with durable=False (fsync=off) for every side; each side starts "
            "on an emptied cluster and their order turns between repeats.",
        ],
        "repeats": [
            {"order": r["order"], **{side: _side_summary(r[side]) for side in r["order"]}}
            for r in repeats
        ],
    }


def _side_summary(side: dict[str, Any]) -> dict[str, Any]:
    kept = ("startup_seconds", "cpu_seconds", "batch_seconds", "other_cpu_share")
    return {"total_s": total_seconds(side), **{k: side[k] for k in kept if k in side}}
