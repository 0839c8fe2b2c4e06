"""Per-tenant migrations: a migration added to a live service reaches every tenancy through
``tenancy migrate``, one tenancy failing leaves the others migrated, and ``--status`` shows who
is on which version."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import yaml

from services.isolation.credentials import connection_string
from services.onboarding.repository import CatalogueRepository
from shared.catalogue import Migration, ServiceManifest, load_manifest
from shared.topics import Topic
from tests.harness import Client, cli, onboarded

MANIFESTS = Path(__file__).parent / "manifests"
WIDE = {"COLUMNS": "250"}  # Rich tables on a pipe are 80 columns wide otherwise


def with_migration(service: str, version: int, sql: str) -> ServiceManifest:
    manifest = load_manifest(MANIFESTS / f"{service}.yaml")
    added = Migration(version=version, description=f"added live ({version})", sql=sql)
    return manifest.model_copy(update={"migrations": [*manifest.migrations, added]})


@contextlib.asynccontextmanager
async def as_tenant(
    platform: Client, service: str, tenancy_id: str
) -> AsyncIterator[asyncpg.Connection]:
    """Connected with the tenancy's own login, as the service's code would be."""
    dsn = await connection_string(
        platform.slice.server_dsn, platform.slice.database_url, service, tenancy_id
    )
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def migrate(platform: Client, *args: str) -> tuple[int, list[dict[str, object]]]:
    result = await cli(platform.slice, "migrate", *args, "--json")
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout)


DRILLS = {
    "migration-drill": ("S12000033", "S12000034", "S12000041"),  # schema tier
    "migration-drill-pooled": ("S12000005", "S12000006"),
    "migration-drill-database": ("S12000042",),
}


async def test_new_migration_reaches_every_tenancy_in_every_tier(
    platform: Client, tmp_path: Path
) -> None:
    tenancies = {service: await onboarded(platform, service, c) for service, c in DRILLS.items()}
    for service in DRILLS:
        added = with_migration(service, 2, "ALTER TABLE visits ADD COLUMN visited_on date;")
        (tmp_path / f"{service}.yaml").write_text(yaml.safe_dump(added.model_dump(mode="json")))
    loaded = await cli(platform.slice, "services", "load", str(tmp_path))
    assert loaded.returncode == 0, loaded.stderr

    for service, ids in tenancies.items():
        code, before = await migrate(platform, service, "--status")
        assert code == 0
        assert {r["tenancy"] for r in before} == set(ids)
        assert {(r["version"], r["latest"], r["status"]) for r in before} == {(1, 2, "behind")}

        started = time.monotonic()
        code, results = await migrate(platform, service)
        elapsed = time.monotonic() - started
        print(f"{service}: {len(ids)} tenancies migrated in {elapsed:.2f} s (CLI wall time)")

        assert code == 0, results
        assert {r["tenancy"] for r in results} == set(ids)
        for r in results:
            assert (r["ok"], r["version"], r["error"]) == (True, 2, None), r
            assert r["council"] in DRILLS[service]
        for tenancy_id in ids:
            async with as_tenant(platform, service, tenancy_id) as conn:
                await conn.execute("INSERT INTO visits (place, visited_on) VALUES ('x', now())")
                assert await conn.fetchval("SELECT count(visited_on) FROM visits") == 1

        code, after = await migrate(platform, service, "--status")
        assert {(r["version"], r["status"]) for r in after} == {(2, "current")}


async def test_a_migration_that_fails_for_one_tenancy_leaves_the_others_migrated(
    platform: Client,
) -> None:
    service = "migration-partial"
    good, also_good, bad = await onboarded(
        platform, service, ("S12000008", "S12000036", "S12000045")
    )
    for tenancy_id, value in ((good, 5), (also_good, 7), (bad, -1)):
        async with as_tenant(platform, service, tenancy_id) as conn:
            await conn.execute("INSERT INTO readings (value) VALUES ($1)", value)
    # Two statements: the failing tenancy must get neither (a run is all-or-nothing).
    third = with_migration(
        service,
        3,
        "ALTER TABLE readings ADD COLUMN unit text;"
        " ALTER TABLE readings ADD CONSTRAINT readings_positive CHECK (value > 0);",
    )
    async with platform.pool.acquire() as conn:
        await CatalogueRepository(conn).upsert(third)

    code, results = await migrate(platform, service)

    assert code == 3
    by_id = {r["tenancy"]: r for r in results}
    assert set(by_id) == {good, also_good, bad}
    for tenancy_id in (good, also_good):
        assert (by_id[tenancy_id]["ok"], by_id[tenancy_id]["version"]) == (True, 3)
        async with as_tenant(platform, service, tenancy_id) as conn:
            await conn.execute("INSERT INTO readings (value, unit) VALUES (1, 'mm')")
    failed = by_id[bad]
    assert (failed["ok"], failed["version"]) == (False, 2)
    assert "migration 3" in str(failed["error"])
    assert "readings_positive" in str(failed["error"])
    async with as_tenant(platform, service, bad) as conn:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await conn.fetch("SELECT unit FROM readings")

    # Run again, as an operator reads it: the migrated ones stay as they are, the failing one
    # fails again, with its error in the table.
    again = await cli(platform.slice, "migrate", service, env=WIDE)
    assert again.returncode == 3
    rows = [line for line in again.stdout.splitlines() if "│" in line]
    assert any(bad in line and "failed" in line and "readings_positive" in line for line in rows)
    assert sum(" ok " in line for line in rows) == 2, again.stdout
    assert "2 migrated, 1 failed" in again.stdout

    shown = await cli(platform.slice, "migrate", service, "--status", env=WIDE)
    assert shown.returncode == 0, shown.stderr
    lines = {line for line in shown.stdout.splitlines() if "│" in line}
    assert any(bad in line and "behind" in line for line in lines), shown.stdout
    assert sum("current" in line for line in lines) == 2, shown.stdout
    assert "2 of 3 tenancies current" in shown.stdout

    # Once its data is fixed, running the rollout again brings the laggard up.
    async with as_tenant(platform, service, bad) as conn:
        await conn.execute("UPDATE readings SET value = 1 WHERE value <= 0")
    rerun = await cli(platform.slice, "migrate", service, env=WIDE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "3 migrated, 0 failed" in rerun.stdout
    assert "3/3" in rerun.stderr  # the progress bar, complete


async def test_rollout_recorded_while_the_broker_is_down_is_relayed(platform: Client) -> None:
    service = "migration-relay"
    (tenancy_id,) = await onboarded(platform, service, ("S12000050",))
    async with platform.pool.acquire() as conn:
        await CatalogueRepository(conn).upsert(
            with_migration(service, 2, "ALTER TABLE visits ADD COLUMN visited_on date;")
        )
    unreachable = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "BROKER_CONNECT_TIMEOUT_SECONDS": "1"}

    result = await cli(platform.slice, "migrate", service, "--json", env=unreachable)

    assert result.returncode == 0, result.stderr
    [migrated] = json.loads(result.stdout)
    assert (migrated["tenancy"], migrated["ok"], migrated["version"]) == (tenancy_id, True, 2)
    relayed = await platform.pool.fetchval(
        "SELECT published_at IS NOT NULL FROM isolation.outbox WHERE key = $1 AND topic = $2",
        tenancy_id,
        platform.slice.topic(Topic.MIGRATION_REQUESTED),
    )
    assert relayed


async def test_unknown_service_is_refused(platform: Client) -> None:
    for args in (["no-such-service"], ["no-such-service", "--status"]):
        result = await cli(platform.slice, "migrate", *args)
        assert result.returncode == 1
        assert "no service 'no-such-service' in the catalogue" in " ".join(result.stderr.split())
