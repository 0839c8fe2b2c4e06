"""The probes orchestrators and Prometheus rely on, with real worker processes: /livez,
/readyz (following PostgreSQL down and back) and /metrics with every Tenancy metric on the
worker that owns it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shared import db
from shared.topics import Topic
from stack.ports import free_port
from stack.postgres import EmbeddedPostgres
from tests.conftest import Api, Servers
from tests.harness import WORKERS, Client, Slice, WorkerProcess, load_example_catalogue, stop_all

pytestmark = pytest.mark.slow

EVENT_METRICS = (
    "tenancy_events_handled",
    "tenancy_events_failed",
    "tenancy_handler_duration_seconds",
    "tenancy_consumer_lag",
)


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


@pytest.fixture
def processes(crash_slice: Slice) -> Iterator[dict[str, WorkerProcess]]:
    ports = distinct_ports(len(WORKERS))
    procs = {
        name: WorkerProcess(name, crash_slice, {"HEALTH_PORT": str(port)})
        for name, port in zip(WORKERS, ports, strict=True)
    }
    yield procs
    stop_all(procs.values())


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


def url(proc: WorkerProcess, path: str) -> str:
    return f"http://127.0.0.1:{proc.extra_env['HEALTH_PORT']}{path}"


async def scrape(http: httpx.AsyncClient, proc: WorkerProcess) -> dict[str, list[Sample]]:
    response = await http.get(url(proc, "/metrics"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


async def eventually_scraped(
    http: httpx.AsyncClient, proc: WorkerProcess, name: str, sample: str, **labels: str
) -> dict[str, list[Sample]]:
    """Scrape until the family ``name`` has a sample ``sample`` with ``labels``."""
    deadline = time.monotonic() + 15
    while True:
        families = await scrape(http, proc)
        if value(families.get(name, []), sample, **labels) is not None:
            return families
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name}: no {sample}{labels} in {families.get(name)}")
        await asyncio.sleep(0.2)


async def test_every_worker_serves_probes_and_its_own_metrics(
    processes: dict[str, WorkerProcess], client: Client, http: httpx.AsyncClient
) -> None:
    for proc in processes.values():
        proc.start()
    for proc in processes.values():
        await asyncio.to_thread(proc.wait_ready)
        assert f"http://127.0.0.1:{proc.extra_env['HEALTH_PORT']}" in proc.output()
    await load_example_catalogue(client.pool)

    for proc in processes.values():
        live = await http.get(url(proc, "/livez"))
        assert (live.status_code, live.json()) == (200, {"status": "alive"})
        ready = await http.get(url(proc, "/readyz"))
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}

    tenancy_id = await client.onboard("E09000012")
    assert (await client.wait_for(tenancy_id))["state"] == "active"
    await client.publish_raw(Topic.ONBOARDING_REQUESTED, b"not json")

    onboarding = processes["onboarding"]
    families = await eventually_scraped(
        http,
        onboarding,
        "tenancy_dead_letters",
        "tenancy_dead_letters_total",
        worker="onboarding",
        reason="JSONDecodeError",
    )
    requested = Topic.ONBOARDING_REQUESTED.event_type
    handled = families["tenancy_events_handled"]
    failed = families["tenancy_events_failed"]
    assert value(handled, "tenancy_events_handled_total", event_type=requested) == 1
    assert value(failed, "tenancy_events_failed_total", event_type=requested) == 1
    durations = families["tenancy_handler_duration_seconds"]
    assert value(durations, "tenancy_handler_duration_seconds_count", event_type=requested) == 2
    assert value(families["tenancy_tenancies"], "tenancy_tenancies", state="active") == 1
    active = families["tenancy_time_to_active_seconds"]
    assert value(active, "tenancy_time_to_active_seconds_count") == 1
    assert 0 < (value(active, "tenancy_time_to_active_seconds_sum") or 0) < 60

    for name, proc in processes.items():
        families = await eventually_scraped(
            http, proc, "tenancy_consumer_lag", "tenancy_consumer_lag", worker=name
        )
        for family in EVENT_METRICS:
            assert families.get(family), f"{name} exports no {family}"
            assert all(s.labels["worker"] == name for s in families[family])
        assert "tenancy_dead_letters" in families
        lags = families["tenancy_consumer_lag"]
        assert all(s.value >= 0 and s.labels["topic"].startswith(proc.slice.prefix) for s in lags)
        if name != "onboarding":
            assert "tenancy_tenancies" not in families
            assert "tenancy_time_to_active_seconds" not in families
            # Each worker handled its part of the onboarding.
            assert (
                value(families["tenancy_events_handled"], "tenancy_events_handled_total") or 0
            ) >= 1


async def test_readiness_follows_postgres_and_the_worker_rides_it_out(
    servers: Servers, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg", durable=False)
    await asyncio.to_thread(postgres.start)
    slice_ = Slice(postgres.dsn("postgres"), servers.bootstrap, tmp_path / "slice")
    slice_.root.mkdir()
    worker = WorkerProcess("metering", slice_, {"HEALTH_PORT": str(free_port())})
    try:
        await db.ensure_database(slice_.database_url)
        worker.start()
        await asyncio.to_thread(worker.wait_ready)

        async def readiness_becomes(status: int) -> dict[str, object]:
            deadline = time.monotonic() + 15
            while True:
                response = await http.get(url(worker, "/readyz"))
                if response.status_code == status:
                    body: dict[str, object] = response.json()
                    return body
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"readiness stayed {response.status_code}: {response.text}"
                    )
                await asyncio.sleep(0.2)

        assert (await readiness_becomes(200))["status"] == "ready"

        await asyncio.to_thread(postgres.stop)
        down = await readiness_becomes(503)
        checks = down["checks"]
        assert isinstance(checks, dict)
        assert checks["broker"] == "ok"
        assert checks["database"] != "ok"
        live = await http.get(url(worker, "/livez"))
        assert live.status_code == 200
        assert (await http.get(url(worker, "/metrics"))).status_code == 200
        assert worker.proc is not None
        assert worker.proc.poll() is None

        await asyncio.to_thread(postgres.start)
        assert (await readiness_becomes(200))["checks"] == {"database": "ok", "broker": "ok"}
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop()
        await asyncio.to_thread(postgres.stop)


async def test_the_api_serves_the_probes_on_its_own_port_without_a_token(
    api: Api, http: httpx.AsyncClient
) -> None:
    live = await http.get(f"{api.url}/livez")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    ready = await http.get(f"{api.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
    scraped = await http.get(f"{api.url}/metrics")
    assert scraped.status_code == 200
    assert "# TYPE tenancy_events_handled_total counter" in scraped.text
    paths = (await http.get(f"{api.url}/openapi.json")).json()["paths"]
    assert not {"/livez", "/readyz", "/metrics"} & paths.keys()
