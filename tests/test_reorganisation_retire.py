"""`tenancy reorganise retire` (issue 18): once a day's moves are settled, each verified
predecessor's frozen data are exported as offboarding's are, then dropped with its role, in
every isolation tier; a predecessor whose move is not verified is refused and kept as it was.
Woking merges into West Surrey in each example service, on workers of its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.isolation import retirement
from services.isolation.databases import ServiceDatabases
from services.isolation.export import sha256_of, verify_archive
from services.onboarding.councils import CouncilRegister
from services.onboarding.moves import MoveStatus
from services.onboarding.repository import CatalogueRepository
from services.onboarding.retirement import Retirement, RetirementStatus, due_for_retirement
from services.onboarding.retirement_service import retire_due
from shared import db
from shared.identifiers import service_database_name, tenant_object_name
from tests.harness import Client, cli, in_process_workers, load_example_catalogue
from tests.test_reorganisation import SURREY_VESTING
from tests.test_reorganisation_apply import (
    KEEPS_KEYS,
    MAIN,
    TIERS,
    Area,
    ReorganisedSlice,
    add_rows,
    apply_plan,
    can_log_in,
    register_csv,
    rows_of,
    settled,
    sql,
)

# West Surrey's predecessors.
WOKING, GUILDFORD, WAVERLEY = "E07000217", "E07000209", "E07000216"
DAY = SURREY_VESTING.isoformat()
ENV = {"COLUMNS": "250"}


@pytest.fixture(scope="module")
async def area(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Area]:
    """Woking's tenancies moved into West Surrey's; Waverley's move fails on a key clash."""
    root = tmp_path_factory.mktemp("retired")
    slice_ = ReorganisedSlice(servers.postgres_dsn, servers.bootstrap, root)
    slice_.councils_csv = register_csv(root)
    await db.ensure_database(slice_.database_url)
    async with in_process_workers(slice_) as workers:
        pool = workers["onboarding"].pool
        await load_example_catalogue(pool)
        async with pool.acquire() as conn:
            await CatalogueRepository(conn).upsert(KEEPS_KEYS)
        async with Client(slice_, pool) as client:
            client.councils = CouncilRegister.from_csv(slice_.councils_csv)
            wanted = [(WOKING, s) for s in TIERS.values()]
            wanted += [(c, KEEPS_KEYS.id) for c in (GUILDFORD, WAVERLEY)]
            ids = {key: await client.onboard(key[0], service=key[1]) for key in wanted}
            for tenancy_id in ids.values():
                assert (await client.wait_for(tenancy_id))["state"] == "active"
            found = Area(client, client.councils, ids)
            for service in TIERS.values():
                await add_rows(found, service, found.of(WOKING, service), ["wok-1", "wok-2"])
            await add_rows(found, KEEPS_KEYS.id, found.of(GUILDFORD, KEEPS_KEYS.id), ["guildford"])
            await add_rows(found, KEEPS_KEYS.id, found.of(WAVERLEY, KEEPS_KEYS.id), ["waverley"])
            await apply_plan(found, SURREY_VESTING)
            yield found


async def present(area: Area, service: str, tenancy_id: str) -> dict[str, bool]:
    """Whether the tenancy's role, schema (in its service's database) and own database exist."""
    own = tenant_object_name(tenancy_id)
    server = area.slice.server_dsn
    service_db = db.with_database(server, service_database_name(area.slice.name, service))
    role = await sql(server, "SELECT 1 FROM pg_roles WHERE rolname = $1", own)
    schema = await sql(service_db, "SELECT 1 FROM pg_namespace WHERE nspname = $1", own)
    database = await sql(server, "SELECT 1 FROM pg_database WHERE datname = $1", own)
    return {"role": bool(role), "schema": bool(schema), "database": bool(database)}


async def test_settled_predecessors_are_exported_then_dropped_in_every_tier(area: Area) -> None:
    moves = await settled(area, SURREY_VESTING)
    waverley = area.of(WAVERLEY, KEEPS_KEYS.id)
    assert moves[waverley]["status"] == "failed"  # Guildford's row 1 moved first
    before = {
        service: await present(area, service, area.of(WOKING, service))
        for service in TIERS.values()
    }
    assert before[TIERS["schema"]] == {"role": True, "schema": True, "database": False}
    assert before[TIERS["database"]]["database"]
    # The worker's own round retires none of them yet: they were verified moments ago.
    async with area.client.uow().transaction() as tx:
        assert await retire_due(tx, 90, "tests") == []

    retired = await cli(area.slice, "reorganise", "retire", "--on", DAY, "--wait", "60", "--json")
    assert retired.returncode == 3, retired.stderr  # Waverley's move is not verified
    summary = json.loads(retired.stdout)
    assert waverley in summary["refused"]
    assert "not verified" in summary["refused"][waverley]
    assert len(summary["requested"]) == 4  # Woking in each tier, and Guildford
    shown = {r["source"]: r for r in summary["retirements"]}
    assert {r["retirement"] for r in shown.values()} == {"retired"}, shown

    for tier, service in TIERS.items():
        woking = area.of(WOKING, service)
        # Offboarding's archive, in its place: every table, with row counts and checksums.
        found = shown[woking]
        archive = Path(found["archive"])
        assert archive == area.slice.root / "exports" / service / f"{woking}.zip"
        assert sha256_of(archive) == found["archive_sha256"]
        manifest = verify_archive(archive)
        assert manifest["tenancy_id"] == woking
        rows = {t["name"]: t["rows"] for t in manifest["tables"]}
        # Pooled rows were re-tagged to West Surrey's role where they were: none are left.
        assert rows[MAIN[service][0]] == (0 if tier == "pooled" else 2)
        assert {t["name"]: t["rows"] for t in found["exported"]} == rows
        assert await present(area, service, woking) == {
            "role": False,
            "schema": False,
            "database": False,
        }
        # The successor keeps the rows it took.
        target = moves[woking]["target"]
        assert sorted(v for _, v in await rows_of(area, service, target)) == ["wok-1", "wok-2"]

    # Refused: Waverley's frozen data, role and login are as they were.
    assert await rows_of(area, KEEPS_KEYS.id, waverley) == [(1, "waverley")]
    assert await can_log_in(area, waverley)

    # The audit trail has the export (archive, checksum, row counts) and the drop.
    woking_bins = area.of(WOKING, TIERS["schema"])
    async with area.client.pool.acquire() as conn:
        actions = {
            r["action"]: r["detail"]
            for r in await conn.fetch(
                "SELECT action, detail FROM audit.log WHERE tenancy_id = $1", woking_bins
            )
        }
        cli_request = await conn.fetchval(
            "SELECT count(*) FROM audit.log WHERE action = 'reorganise.retire'"
        )
    exported = actions["tenancy.reorganisation.exported"]
    assert exported["archive"] == shown[woking_bins]["archive"]
    assert exported["archive_sha256"] == shown[woking_bins]["archive_sha256"]
    assert "missed_bin_reports: 2 rows, sha256 " in exported["tables"]
    assert actions["tenancy.reorganisation.retired"]["dropped"] == "its schema and its role"
    assert cli_request == 1

    # Retiring again is harmless: nothing is asked for again, and nothing changes.
    again = await cli(area.slice, "reorganise", "retire", "--on", DAY, "--json")
    assert again.returncode == 3, again.stderr
    repeated = json.loads(again.stdout)
    assert (repeated["requested"], len(repeated["already"])) == ([], 4)
    table = await cli(area.slice, "reorganise", "moves", "--on", DAY, env=ENV)
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("retired: ") == 4
    assert "retired: 2 rows exported" in table.stdout
    status = await cli(area.slice, "status", woking_bins, env=ENV)
    assert status.returncode == 0, status.stderr
    assert f"exported to {shown[woking_bins]['archive']}" in status.stdout

    # Isolation itself reports a repeated request's recorded removal, and refuses a
    # predecessor whose move it has no record of, leaving its data as they were.
    databases = ServiceDatabases(area.slice.server_dsn, area.slice.name)
    exports = area.slice.root / "exports"
    try:
        async with area.client.pool.acquire() as conn:
            bins = await CatalogueRepository(conn).get(TIERS["schema"])
            drill = await CatalogueRepository(conn).get(KEEPS_KEYS.id)
        assert bins is not None
        assert drill is not None
        target = moves[woking_bins]["target"]
        repeat = await retirement.retire(databases, exports, woking_bins, target, bins)
        assert repeat.archive_sha256 == shown[woking_bins]["archive_sha256"]
        with pytest.raises(retirement.RetirementRefused, match="no verified move"):
            await retirement.retire(databases, exports, waverley, moves[waverley]["target"], drill)
    finally:
        await databases.close()
    assert await rows_of(area, KEEPS_KEYS.id, waverley) == [(1, "waverley")]
    assert await can_log_in(area, waverley)


def test_only_a_verified_move_is_retired_and_the_worker_waits_its_days() -> None:
    now = datetime(2027, 7, 1, tzinfo=UTC)
    failed = Retirement("a", "t", "svc", MoveStatus.FAILED)
    assert "not verified" in (failed.refusal() or "")
    assert not failed.request()
    moved = Retirement("b", "t", "svc", MoveStatus.MOVED, moved_at=now - timedelta(days=91))
    recent = Retirement("c", "t", "svc", MoveStatus.MOVED, moved_at=now - timedelta(days=2))
    assert due_for_retirement([failed, moved, recent], now, 90) == [moved]
    assert moved.request()
    assert due_for_retirement([moved], now, 90) == []  # asked for: the worker asks once
    assert moved.fail("DependentObjectsStillExistError: role is still referenced")
    assert moved.request()  # the operator's retire asks again
    assert moved.retired()
    assert not moved.retired()
    assert not moved.fail("late")
    assert not moved.request()  # retired stays retired
    assert moved.status is RetirementStatus.RETIRED


def test_isolation_refuses_a_predecessor_whose_move_nothing_confirms() -> None:
    from services.isolation.repository import LedgerEntry

    source, target = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"

    def entry(tenancy_id: str, removed: bool = False) -> LedgerEntry:
        own = tenant_object_name(tenancy_id)
        when = datetime(2027, 4, 2, tzinfo=UTC) if removed else None
        return LedgerEntry(
            tenancy_id, KEEPS_KEYS.id, KEEPS_KEYS.isolation, "d", own, own, None, when, None
        )

    assert retirement.refusal(source, entry(source), target, entry(target), KEEPS_KEYS) is None
    gone = retirement.refusal(source, entry(source), target, entry(target, True), KEEPS_KEYS)
    assert gone == f"the successor's tenancy {target} has no data in {KEEPS_KEYS.id}"
    assert "has no data" in (
        retirement.refusal(source, None, target, entry(target), KEEPS_KEYS) or ""
    )
    assert "its own successor" in (
        retirement.refusal(source, entry(source), source, entry(source), KEEPS_KEYS) or ""
    )
