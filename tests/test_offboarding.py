"""Offboarding with exit, on the real broker and database: a council leaves with its data in
open formats, nothing of it stays behind, and re-running any step is harmless."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.isolation.credentials import NoCredentials, connection_string
from services.isolation.export import (
    ArchiveInvalid,
    Export,
    archive_path,
    sha256_of,
    verify_archive,
)
from services.isolation.offboarding import Table, deletion_order, export_query
from services.isolation.repository import Ledger
from services.onboarding.repository import CatalogueRepository
from services.onboarding.service import RequestRefused
from shared import db
from shared.catalogue import IsolationTier, ServiceManifest
from shared.identifiers import service_database_name, tenant_object_name
from tests.harness import WORKERS, Client, drained, offboard
from tests.harness import cli as tenancy

OFFBOARDED = frozenset({"offboarded", "failed"})

# Rows a council writes, per table, with awkward text: separators, quotes, line breaks, Welsh.
BINS = {
    "missed_bin_reports": [
        {"uprn": 100061234567, "container": "refuse"},
        {"uprn": 100061234568, "container": 'food caddy, "small"\nby the gate'},
        {"uprn": 100061234569, "container": "gwastraff gardd — ŵ"},
    ],
    "garden_waste_subscriptions": [
        {"uprn": 100061234567, "bins": 2, "starts_on": date(2026, 4, 1)},
    ],
    # The SDK's usage outbox is one of the council's tables: a row not yet sent leaves with it.
    "tenancy_usage_outbox": [{"id": "missed-bin-report-1", "meter": "missed_bin_reports"}],
}
PERMITS = {
    "permits": [
        {
            "vehicle_registration": "AB12 CDE",
            "zone": "C",
            "valid_from": date(2026, 1, 1),
            "valid_to": date(2026, 12, 31),
        },
        {
            "vehicle_registration": "XY70 ZZZ",
            "zone": "C, east",
            "valid_from": date(2026, 3, 1),
            "valid_to": date(2027, 2, 28),
        },
    ],
}
COMMENTS = {
    "comments": [
        {"application_ref": "24/01234/FUL", "body": "Object: overlooking"},
        {"application_ref": "24/01234/FUL", "body": 'Support, "much needed"'},
        {"application_ref": "24/05678/HOU", "body": "Line one\nline two"},
    ],
}
OTHER_COMMENTS = {
    "comments": [
        {"application_ref": "24/09999/FUL", "body": "another council's comment"},
        {"application_ref": "24/09998/FUL", "body": "and another"},
    ],
}


def service_dsn(platform: Client, service_id: str) -> str:
    name = service_database_name(db.database_name(platform.slice.database_url), service_id)
    return db.with_database(platform.slice.server_dsn, name)


@contextlib.asynccontextmanager
async def as_tenant(
    platform: Client, service_id: str, tenancy_id: str
) -> AsyncIterator[asyncpg.Connection]:
    dsn = await connection_string(
        platform.slice.server_dsn, platform.slice.database_url, service_id, tenancy_id
    )
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def as_platform(platform: Client, service_id: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await db.connect(service_dsn(platform, service_id))
    try:
        yield conn
    finally:
        await conn.close()


async def write_rows(conn: asyncpg.Connection, rows: dict[str, list[dict[str, Any]]]) -> None:
    for table, records in rows.items():
        for record in records:
            columns = ", ".join(record)
            params = ", ".join(f"${i}" for i in range(1, len(record) + 1))
            await conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({params})", *record.values()
            )


async def onboard_active(platform: Client, council: str, service: str) -> str:
    tenancy_id = await platform.onboard(council, service=service)
    found = await platform.wait_for(tenancy_id)
    assert found["state"] == "active", found
    return tenancy_id


# Tenancies whose archives this module wrote, removed afterwards: the in-process isolation
# worker writes to its default exports folder under .tenancy/.
EXPORTED: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def remove_archives(platform: Client) -> Iterator[None]:
    yield
    exports_dir = platform.workers["isolation"].settings.exports_dir  # type: ignore[attr-defined]
    for tenancy_id in EXPORTED:
        for archive in exports_dir.glob(f"*/{tenancy_id}.zip"):
            archive.unlink()


async def offboarded(platform: Client, tenancy_id: str) -> dict[str, Any]:
    EXPORTED.add(tenancy_id)
    await offboard(platform, tenancy_id, reason="the council runs its own service now")
    found = await platform.wait_for(tenancy_id, OFFBOARDED)
    assert found["state"] == "offboarded", found
    return found


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    manifest = verify_archive(path)
    tables: dict[str, list[dict[str, str]]] = {}
    with zipfile.ZipFile(path) as archive:
        for table in manifest["tables"]:
            text = archive.read(table["file"]).decode("utf-8")
            tables[table["name"]] = list(csv.DictReader(io.StringIO(text, newline="")))
    return manifest, tables


def as_csv_values(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What PostgreSQL writes for the values inserted: dates ISO, numbers plain."""
    return [
        {k: v.isoformat() if isinstance(v, date) else str(v) for k, v in row.items()}
        for row in rows
    ]


def only(columns: list[str], rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(({c: row[c] for c in columns} for row in rows), key=json.dumps)


async def ledger_row(platform: Client, service_id: str, tenancy_id: str) -> dict[str, Any]:
    async with as_platform(platform, service_id) as conn:
        row = await conn.fetchrow(
            "SELECT password, removed_at, removal FROM tenancy_platform.tenants"
            " WHERE tenancy_id = $1",
            tenancy_id,
        )
    assert row is not None
    return dict(row)


TIERS = [
    pytest.param("planning-comments", IsolationTier.POOLED, "E07000223", COMMENTS, id="pooled"),
    pytest.param("bin-collections", IsolationTier.SCHEMA, "E07000224", BINS, id="schema"),
    pytest.param("parking-permits", IsolationTier.DATABASE, "E07000105", PERMITS, id="database"),
]


@pytest.mark.parametrize(("service_id", "tier", "council", "rows"), TIERS)
async def test_council_leaves_with_its_data_and_nothing_of_it_stays(
    platform: Client,
    service_id: str,
    tier: IsolationTier,
    council: str,
    rows: dict[str, list[dict[str, Any]]],
) -> None:
    tenancy_id = await onboard_active(platform, council, service_id)
    async with as_tenant(platform, service_id, tenancy_id) as conn:
        await write_rows(conn, rows)
    pooled = tier is IsolationTier.POOLED
    if pooled:  # a neighbour in the same tables, who stays
        neighbour = await onboard_active(platform, "E07000032", service_id)
        async with as_tenant(platform, service_id, neighbour) as conn:
            await write_rows(conn, OTHER_COMMENTS)

    started = time.monotonic()
    found = await offboarded(platform, tenancy_id)
    print(f"\n{service_id}: offboarded in {time.monotonic() - started:.2f}s")

    # The archive is where the status says, and is what its checksum says.
    archive = Path(found["archive"])
    exports_dir = platform.workers["isolation"].settings.exports_dir  # type: ignore[attr-defined]
    assert archive == archive_path(exports_dir, service_id, tenancy_id)
    assert sha256_of(archive) == found["archive_sha256"]
    assert found["offboarded_at"] is not None
    manifest, tables = read_archive(archive)  # every CSV's checksum and row count verified
    assert (manifest["tenancy_id"], manifest["service_id"]) == (tenancy_id, service_id)
    assert manifest["tier"] == tier.value
    assert manifest["format"] == "csv; UTF-8; header row"
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {
        table: len(records) for table, records in rows.items()
    }
    for table, records in rows.items():
        columns = list(records[0])
        assert only(columns, tables[table]) == only(columns, as_csv_values(records)), table
        assert "id" in tables[table][0]
        assert "tenant_role" not in tables[table][0]

    # The event onboarding emitted carries the same archive.
    offboarded_event = await platform.pool.fetchval(
        "SELECT payload FROM onboarding.outbox WHERE key = $1 AND payload->>'type' = $2",
        tenancy_id,
        "uk.gov.tenancy.onboarding.offboarded.v1",
    )
    assert offboarded_event["data"] == {
        "archive": str(archive),
        "archive_sha256": found["archive_sha256"],
    }

    # Nothing of the tenancy stays: its role, its space, its rows, its secret. Its history does.
    role = tenant_object_name(tenancy_id)
    steps = {step["step"]: step for step in found["steps"]}
    assert steps["isolation"]["detail"]["role"] == role
    assert steps["isolation"]["at"] < found["offboarding_at"] < found["offboarded_at"]
    assert not await platform.pool.fetchval(
        "SELECT count(*) FROM pg_roles WHERE rolname = $1", role
    )
    async with as_platform(platform, service_id) as conn:
        assert not await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", role)
        if pooled:
            assert not await conn.fetchval(
                "SELECT count(*) FROM pooled.comments WHERE tenant_role = $1", role
            )
    assert not await platform.pool.fetchval(
        "SELECT count(*) FROM pg_database WHERE datname = $1", role
    )
    ledger = await ledger_row(platform, service_id, tenancy_id)
    assert ledger["password"] == ""
    assert ledger["removed_at"] is not None
    assert ledger["removal"]["archive_sha256"] == found["archive_sha256"]
    with pytest.raises(NoCredentials):
        await connection_string(
            platform.slice.server_dsn, platform.slice.database_url, service_id, tenancy_id
        )

    if pooled:  # the neighbour's rows are untouched and still theirs alone
        async with as_tenant(platform, service_id, neighbour) as conn:
            bodies = {r["body"] for r in await conn.fetch("SELECT body FROM comments")}
        assert bodies == {r["body"] for r in OTHER_COMMENTS["comments"]}
        assert (await platform.status(neighbour) or {})["state"] == "active"


def fingerprint(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, sha256_of(path)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def effects_of(platform: Client, tenancy_id: str, archive: Path) -> dict[str, Any]:
    pool = platform.pool
    effects: dict[str, Any] = {
        f"{schema}.outbox": await pool.fetchval(
            f"SELECT count(*) FROM {schema}.outbox WHERE key = $1", tenancy_id
        )
        for schema in WORKERS
    }
    effects["removed"] = await pool.fetchval(
        "SELECT count(*) FROM isolation.outbox WHERE key = $1 AND payload->>'type' = $2",
        tenancy_id,
        "uk.gov.tenancy.isolation.removed.v1",
    )
    effects["tenancy"] = dict(
        await pool.fetchrow(
            "SELECT state, offboarding_at, offboarded_at, archive, archive_sha256, updated_at"
            " FROM onboarding.tenancies WHERE id = $1",
            tenancy_id,
        )
    )
    effects["archive"] = fingerprint(archive)
    effects["ledger"] = await ledger_row(platform, "bin-collections", tenancy_id)
    effects["exports"] = listing(archive.parent)
    return effects


async def test_duplicate_onboarding_and_offboarding_events_change_nothing(
    platform: Client,
) -> None:
    tenancy_id = await onboard_active(platform, "E07000170", "bin-collections")
    async with as_tenant(platform, "bin-collections", tenancy_id) as conn:
        await write_rows(conn, BINS)
    found = await offboarded(platform, tenancy_id)
    await drained(platform.slice)
    archive = Path(found["archive"])
    before = await effects_of(platform, tenancy_id, archive)
    assert before["removed"] == 1

    events = []
    for schema in WORKERS:
        events += await platform.pool.fetch(
            f"SELECT topic, key, payload, headers FROM {schema}.outbox WHERE key = $1",
            tenancy_id,
        )
    types = {e["payload"]["type"] for e in events}
    assert {
        "uk.gov.tenancy.onboarding.requested.v1",
        "uk.gov.tenancy.onboarding.registered.v1",
        "uk.gov.tenancy.offboarding.requested.v1",
        "uk.gov.tenancy.isolation.removed.v1",
        "uk.gov.tenancy.onboarding.offboarded.v1",
    } <= types
    for _ in range(2):
        for event in events:
            await platform.broker.publish(
                event["payload"],
                topic=event["topic"],
                key=event["key"].encode(),
                headers=event["headers"],
            )
    await drained(platform.slice)

    assert await effects_of(platform, tenancy_id, archive) == before

    # A fresh request to remove it again (a retry, say) finds the removal recorded: the same
    # archive is reported, nothing is exported or dropped again, the tenancy stays offboarded.
    request = next(
        e for e in events if e["payload"]["type"] == "uk.gov.tenancy.offboarding.requested.v1"
    )
    await platform.broker.publish(
        {**request["payload"], "id": str(uuid.uuid4())},
        topic=request["topic"],
        key=request["key"].encode(),
        headers=request["headers"],
    )
    await drained(platform.slice)
    after = await effects_of(platform, tenancy_id, archive)
    assert after["removed"] == 2
    assert {k: v for k, v in after.items() if "outbox" not in k and k != "removed"} == {
        k: v for k, v in before.items() if "outbox" not in k and k != "removed"
    }
    reported = await platform.pool.fetch(
        "SELECT payload->'data' AS data FROM isolation.outbox WHERE key = $1"
        " AND payload->>'type' = 'uk.gov.tenancy.isolation.removed.v1'",
        tenancy_id,
    )
    assert reported[0]["data"] == reported[1]["data"]


async def test_removal_interrupted_after_dropping_the_database_resumes_without_re_export(
    platform: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenancy_id = await onboard_active(platform, "E07000129", "parking-permits")
    async with as_tenant(platform, "parking-permits", tenancy_id) as conn:
        await write_rows(conn, PERMITS)
    record_removal = Ledger.mark_removed

    async def dies_before_recording(self: Ledger, tid: str, removal: dict[str, Any]) -> None:
        if tid == tenancy_id:
            raise RuntimeError("worker died before recording the removal")
        await record_removal(self, tid, removal)

    monkeypatch.setattr(Ledger, "mark_removed", dies_before_recording)
    EXPORTED.add(tenancy_id)
    await offboard(platform, tenancy_id)

    failed = await platform.wait_for(tenancy_id, OFFBOARDED)
    assert (failed["state"], failed["failed_step"]) == ("failed", "isolation")
    assert "worker died before recording the removal" in failed["reason"]
    role = tenant_object_name(tenancy_id)
    assert not await platform.pool.fetchval(
        "SELECT count(*) FROM pg_database WHERE datname = $1", role
    )
    interrupted = await ledger_row(platform, "parking-permits", tenancy_id)
    assert interrupted["removed_at"] is None
    archive = Path(interrupted["removal"]["archive"])
    exported = fingerprint(archive)

    monkeypatch.undo()
    found = await offboarded(platform, tenancy_id)  # the operator tries again

    assert found["archive_sha256"] == interrupted["removal"]["archive_sha256"]
    assert fingerprint(archive) == exported  # not exported again from an empty database
    _, tables = read_archive(archive)
    assert only(list(PERMITS["permits"][0]), tables["permits"]) == only(
        list(PERMITS["permits"][0]), as_csv_values(PERMITS["permits"])
    )
    assert not await platform.pool.fetchval(
        "SELECT count(*) FROM pg_roles WHERE rolname = $1", role
    )
    assert (await ledger_row(platform, "parking-permits", tenancy_id))["removed_at"] is not None


BROKEN_DATABASE_TIER = ServiceManifest.model_validate(
    {
        "id": "offboard-broken-database",
        "name": "Broken migration in the database tier (test)",
        "owner_council": "E09000012",
        "isolation": "database",
        "migrations": [
            {"version": 1, "sql": "CREATE TABLE notes (id bigint PRIMARY KEY)"},
            {"version": 2, "sql": "ALTER TABLE no_such_table ADD COLUMN x int"},
        ],
    }
)


@pytest.mark.parametrize(
    ("service_id", "council"),
    [
        pytest.param("broken-migration", "E07000171", id="nothing-created"),
        pytest.param(BROKEN_DATABASE_TIER.id, "E07000066", id="database-and-role-created"),
    ],
)
async def test_failed_tenancy_is_offboarded_with_whatever_was_created(
    platform: Client, service_id: str, council: str
) -> None:
    async with platform.pool.acquire() as conn:
        await CatalogueRepository(conn).upsert(BROKEN_DATABASE_TIER)
    tenancy_id = await platform.onboard(council, service=service_id)
    assert (await platform.wait_for(tenancy_id))["state"] == "failed"
    await drained(platform.slice)

    found = await offboarded(platform, tenancy_id)

    manifest, tables = read_archive(Path(found["archive"]))
    assert (manifest["tables"], tables) == ([], {})
    role = tenant_object_name(tenancy_id)
    for catalogue in ("pg_roles WHERE rolname", "pg_database WHERE datname"):
        assert not await platform.pool.fetchval(f"SELECT count(*) FROM {catalogue} = $1", role)
    # Recorded as removed, so a registration still in flight cannot bring it back.
    assert (await ledger_row(platform, service_id, tenancy_id))["removed_at"] is not None


async def test_offboarding_is_refused_unless_active_or_failed(platform: Client) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(RequestRefused, match=f"no tenancy {unknown}"):
        await offboard(platform, unknown)

    tenancy_id = await onboard_active(platform, "E07000200", "bin-collections")
    await offboarded(platform, tenancy_id)
    with pytest.raises(RequestRefused, match="already offboarded"):
        await offboard(platform, tenancy_id)
    # ...and the council may join again, as a new tenancy.
    assert await onboard_active(platform, "E07000200", "bin-collections") != tenancy_id

    for state, message in [
        ("registered", "still being provisioned"),
        ("offboarding", "already being offboarded"),
    ]:
        stuck = str(uuid.uuid4())
        await platform.pool.execute(
            "INSERT INTO onboarding.tenancies (id, council_gss, council_name, service_id, state,"
            " contact) VALUES ($1, 'E07000171', 'Bassetlaw', 'refusal-' || $2, $2, '{}')",
            stuck,
            state,
        )
        with pytest.raises(RequestRefused, match=message):
            await offboard(platform, stuck)
        assert (await platform.status(stuck) or {})["state"] == state
    # Refusals emit nothing.
    assert not await platform.pool.fetchval(
        "SELECT count(*) FROM onboarding.outbox WHERE payload->>'type' = $1 AND key = $2",
        "uk.gov.tenancy.offboarding.requested.v1",
        unknown,
    )


async def test_offboard_command_follows_until_offboarded(platform: Client) -> None:
    tenancy_id = await onboard_active(platform, "E07000084", "bin-collections")

    EXPORTED.add(tenancy_id)
    result = await tenancy(platform.slice, "offboard", tenancy_id, "--wait", "30", "--json")

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == tenancy_id
    assert shown["state"] == "offboarded"
    assert sha256_of(Path(shown["archive"])) == shown["archive_sha256"]
    status = await tenancy(platform.slice, "status", tenancy_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["archive"] == shown["archive"]

    again = await tenancy(platform.slice, "offboard", tenancy_id, "--json")
    assert again.returncode != 0
    assert "already offboarded" in json.loads(again.stdout)["error"]
    bad = await tenancy(platform.slice, "offboard", "not-a-tenancy")
    assert bad.returncode != 0
    assert "is not a tenancy id" in " ".join(bad.stderr.split())


# -- the archive and the SQL, without a database --------------------------------------------


def test_archive_round_trips_and_detects_tampering(tmp_path: Path) -> None:
    tenancy_id = str(uuid.uuid4())
    with Export(tmp_path, "bin-collections", tenancy_id, IsolationTier.SCHEMA) as export:
        sink = export.table("reports")
        sink.write(b'id,note\r\n1,"a, b"\r\n2,"line\r\nbreak"\r\n')
        export.add(sink, rows=2)
        empty = export.table("empty")
        empty.write(b"id\r\n")
        export.add(empty, rows=0)
        path, digest = export.write_archive()

    assert path == tmp_path / "bin-collections" / f"{tenancy_id}.zip"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no leftovers
    manifest = verify_archive(path)
    assert [(t["name"], t["rows"]) for t in manifest["tables"]] == [("reports", 2), ("empty", 0)]
    with zipfile.ZipFile(path) as archive:
        rows = list(csv.reader(io.StringIO(archive.read("reports.csv").decode(), newline="")))
    assert rows == [["id", "note"], ["1", "a, b"], ["2", "line\r\nbreak"]]

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        target.writestr("manifest.json", source.read("manifest.json"))
        target.writestr("reports.csv", b'id,note\r\n1,"a, c"\r\n2,"line\r\nbreak"\r\n')
        target.writestr("empty.csv", source.read("empty.csv"))
    with pytest.raises(ArchiveInvalid, match=r"reports\.csv: checksum"):
        verify_archive(tampered)


def test_export_refuses_table_names_that_are_not_plain_identifiers(tmp_path: Path) -> None:
    with (
        Export(tmp_path, "bin-collections", str(uuid.uuid4()), IsolationTier.SCHEMA) as export,
        pytest.raises(ValueError, match="not a safe SQL identifier"),
    ):
        export.table("../../etc/passwd")


def test_pooled_export_takes_the_tenants_rows_without_the_tenant_column() -> None:
    table = Table("comments", partitioned=False, columns=["id", "body", "tenant_role"])
    assert export_query("pooled", table, "tenant_role") == (
        'SELECT "id", "body" FROM ONLY "pooled"."comments" WHERE "tenant_role" = $1'
    )
    assert export_query("tenant_x", table) == 'SELECT * FROM ONLY "tenant_x"."comments"'
    unowned = Table("lookup", partitioned=True, columns=["code"])
    assert export_query("pooled", unowned, "tenant_role") is None


def test_rows_that_reference_others_are_deleted_first() -> None:
    references = [("comments", "applications"), ("replies", "comments"), ("replies", "replies")]
    assert deletion_order(["applications", "comments", "replies"], references) == [
        "replies",
        "comments",
        "applications",
    ]
    assert deletion_order(["a", "b"], [("a", "b"), ("b", "a")]) == ["a", "b"]
