"""Session-wide servers: one PostgreSQL and one Kafka-compatible broker for the whole run,
started on free ports in temporary folders. Tests keep apart through fresh databases, topic
prefixes and tenancy ids (see ``tests.harness.Slice``).

``TENANCY_TEST_BACKEND=docker`` uses testcontainers' Kafka and PostgreSQL instead of the
embedded ones, for a run against Apache Kafka itself.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared import db
from tests.harness import (
    Client,
    Slice,
    WorkerProcess,
    in_process_workers,
    load_example_catalogue,
)


@dataclass
class Servers:
    postgres_dsn: str
    bootstrap: str
    broker: object | None = None  # EmbeddedBroker when embedded, for restart tests


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    if os.environ.get("TENANCY_TEST_BACKEND") == "docker":
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16") as pg, KafkaContainer() as kafka:
            dsn = pg.get_connection_url().replace("postgresql+psycopg2", "postgresql")
            yield Servers(dsn, kafka.get_bootstrap_server())
        return

    from stack.broker import EmbeddedBroker
    from stack.postgres import EmbeddedPostgres

    # Not under pytest's own temporary folder: run as root, PostgreSQL runs as a user of its
    # own that needs search permission on the folders above its data, and every pytest session
    # that starts meanwhile (a second suite beside this one) takes that permission away from
    # /tmp/pytest-of-root again, which stops the server mid-run.
    with (
        tempfile.TemporaryDirectory(prefix="tenancy-tests-") as folder,
        EmbeddedPostgres(Path(folder) / "pgdata", durable=False) as postgres,
        EmbeddedBroker(Path(folder) / "broker") as broker,
    ):
        yield Servers(postgres.dsn("postgres"), broker.bootstrap_servers, broker)


def new_slice(servers: Servers, root: Path) -> Slice:
    root.mkdir(parents=True, exist_ok=True)
    return Slice(servers.postgres_dsn, servers.bootstrap, root)


@pytest.fixture
async def crash_slice(servers: Servers, tmp_path: Path) -> Slice:
    """A slice of its own, with its database, for a test that runs worker processes."""
    slice_ = new_slice(servers, tmp_path)
    await db.ensure_database(slice_.database_url)
    return slice_


@pytest.fixture
async def client(crash_slice: Slice) -> AsyncIterator[Client]:
    """An operator's client of ``crash_slice``, whose workers the test runs as processes."""
    pool = await db.create_pool(crash_slice.database_url, max_size=4)
    try:
        async with Client(crash_slice, pool) as client:
            yield client
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def platform_slice(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Slice:
    slice_ = new_slice(servers, tmp_path_factory.mktemp("platform"))
    await db.ensure_database(slice_.database_url)
    return slice_


@pytest.fixture(scope="session")
async def platform(platform_slice: Slice) -> AsyncIterator[Client]:
    """The four workers running in-process on their own slice, with the example catalogue."""
    async with in_process_workers(platform_slice) as workers:
        pool = workers["onboarding"].pool
        await load_example_catalogue(pool, [Path(__file__).parent / "manifests"])
        async with Client(platform_slice, pool) as client:
            client.workers = workers  # type: ignore[attr-defined]
            yield client


@dataclass
class Api:
    """The operator API as a real process on the platform's slice, and a way to get tokens."""

    url: str
    pool: db.Pool
    process: WorkerProcess

    async def token(
        self, role: str, council: str | None = None, service: str | None = None
    ) -> dict[str, str]:
        from api.tokens import Role, create

        async with self.pool.acquire() as conn:
            token, _ = await create(conn, Role(role), council, service, "tests")
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def api(platform: Client) -> AsyncIterator[Api]:
    from stack.ports import free_port

    port = free_port()
    # Tests across the session send wrong tokens on purpose, all from 127.0.0.1; the bound on
    # them has tests of its own (test_hardening_web.py) against an API of their own.
    env = {"API_PORT": str(port), "AUTH_FAILURE_LIMIT": "100000"}
    process = WorkerProcess("api", platform.slice, env, module="api", ready="api ready")
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready)
        yield Api(f"http://127.0.0.1:{port}", platform.pool, process)
    finally:
        process.stop()
