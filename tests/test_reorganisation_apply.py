"""`tenancy reorganise apply` (issue 18), end to end on workers of its own: Surrey's districts
merge into East Surrey (2027) and Cumbria is split, hosted by Cumberland, in every isolation
tier. The register is the real one with Surrey's reorganisation added
(tests.test_reorganisation.surrey_csv) and Cumbria's replayed on 1 April 2028, so that its
councils can still join before it."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.isolation import merge
from services.isolation.databases import ServiceDatabases
from services.metering.pricing import format_pounds
from services.metering.repository import Billing
from services.metering.service import close_period
from services.onboarding.councils import CouncilRegister
from services.onboarding.moves import PlanNotApplicable
from services.onboarding.reorganisation import parse_hosts
from services.onboarding.reorganisation_repository import MoveRepository
from services.onboarding.reorganisation_service import apply
from services.onboarding.repository import CatalogueRepository
from services.onboarding.service import Person, RequestRefused
from shared import db
from shared.catalogue import ServiceManifest
from shared.identifiers import service_database_name, tenant_object_name
from shared.messaging import publish_json
from shared.outbox import UnitOfWork
from shared.topics import Topic
from tests.harness import Client, Slice, cli, events_on, in_process_workers, load_example_catalogue
from tests.harness import offboard as offboard_tenancy
from tests.test_reorganisation import ISSUED, SURREY_VESTING, surrey_csv

CUMBRIA_REPLAY = date(2028, 4, 1)
ELMBRIDGE, EPSOM, MOLE_VALLEY, REIGATE = "E07000207", "E07000208", "E07000210", "E07000211"
SURREY_COUNTY, WEST_SURREY = "E10000030", ISSUED["WSU"]
CUMBRIA, ALLERDALE = "E10000006", "E07000026"
EAST_SURREY, CUMBERLAND, WESTMORLAND = ISSUED["ESU"], "E06000063", "E06000064"
TIERS = {"schema": "bin-collections", "pooled": "planning-comments", "database": "parking-permits"}
# A schema-tier service that keeps keys as they are on a merge: two councils' first rows clash.
KEEPS_KEYS = ServiceManifest.model_validate(
    {
        "id": "merge-drill",
        "name": "Merge drill",
        "owner_council": "E09000012",
        "isolation": "schema",
        "migrations": [
            {"version": 1, "sql": "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)"}
        ],
    }
)


def register_csv(folder: Path) -> Path:
    """Surrey reorganised in 2027, and Cumbria's 2023 split replayed on 1 April 2028."""
    path = surrey_csv(folder, ISSUED)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    for row in rows:
        cumbrian = row["local-authority-code"] in {"CBD", "WAF"} or {"CBD", "WAF"} & set(
            row["replaced-by"].split(",")
        )
        if cumbrian:
            for key in ("start-date", "end-date"):
                if row[key] == "2023-04-01":
                    row[key] = CUMBRIA_REPLAY.isoformat()
            row["current-authority"] = "True"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass
class ReorganisedSlice(Slice):
    councils_csv: Path = field(default=Path())

    def env(self) -> dict[str, str]:
        return {**super().env(), "COUNCILS_CSV": str(self.councils_csv)}


@dataclass
class Area:
    client: Client
    register: CouncilRegister
    tenancies: dict[tuple[str, str], str]  # (council, service) -> tenancy id

    @property
    def slice(self) -> Slice:
        return self.client.slice

    def of(self, council: str, service: str) -> str:
        return self.tenancies[council, service]


@pytest.fixture(scope="module")
async def area(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Area]:
    root = tmp_path_factory.mktemp("reorganised")
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
            wanted = [(c, s) for s in TIERS.values() for c in (ELMBRIDGE, EPSOM, CUMBRIA)]
            wanted += [(ALLERDALE, TIERS["schema"])]
            wanted += [(c, KEEPS_KEYS.id) for c in (MOLE_VALLEY, REIGATE)]
            ids = {key: await client.onboard(key[0], service=key[1]) for key in wanted}
            for tenancy_id in ids.values():
                assert (await client.wait_for(tenancy_id))["state"] == "active"
            yield Area(client, client.councils, ids)


# -- talking to the tenants' data ---------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    dsn: str
    table: str  # qualified and quoted
    condition: str  # which rows are the tenancy's


def where(area: Area, service: str, tenancy_id: str, table: str) -> Where:
    own = tenant_object_name(tenancy_id)
    database = service_database_name(area.slice.name, service)
    if service == TIERS["pooled"]:
        return Where(
            db.with_database(area.slice.server_dsn, database),
            f'pooled."{table}"',
            f"tenant_role = '{own}'",
        )
    if service == TIERS["database"]:
        database = own
    return Where(db.with_database(area.slice.server_dsn, database), f'{own}."{table}"', "true")


async def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def add_rows(area: Area, service: str, tenancy_id: str, values: list[str]) -> None:
    """Rows in the tenancy's main table of each example service, as the platform writes them."""
    own = tenant_object_name(tenancy_id)
    table = MAIN[service][0]
    place = where(area, service, tenancy_id, table)
    for n, value in enumerate(values, start=1):
        args: tuple[object, ...]
        if service == TIERS["schema"]:
            row, args = "(uprn, container) VALUES (1000 + $2, $1)", (value, n)
        elif service == TIERS["pooled"]:
            row, args = "(application_ref, body, tenant_role) VALUES ($1, $1, $2)", (value, own)
        elif service == TIERS["database"]:
            row = "(vehicle_registration, zone, valid_from, valid_to)"
            row, args = f"{row} VALUES ($1, 'A', '2027-01-01', '2027-12-31')", (value,)
        else:
            row, args = "(id, body) VALUES ($2, $1)", (value, n)
        await sql(place.dsn, f"INSERT INTO {place.table} {row}", *args)


MAIN = {
    TIERS["schema"]: ("missed_bin_reports", "container"),
    TIERS["pooled"]: ("comments", "body"),
    TIERS["database"]: ("permits", "vehicle_registration"),
    KEEPS_KEYS.id: ("notes", "body"),
}


async def rows_of(area: Area, service: str, tenancy_id: str) -> list[tuple[int, str]]:
    table, column = MAIN[service]
    place = where(area, service, tenancy_id, table)
    found = await sql(
        place.dsn,
        f'SELECT id, "{column}" AS v FROM {place.table} WHERE {place.condition} ORDER BY id',
    )
    return [(r["id"], r["v"]) for r in found]


async def can_log_in(area: Area, tenancy_id: str) -> bool:
    found = await sql(
        area.slice.server_dsn,
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
        tenant_object_name(tenancy_id),
    )
    return bool(found[0]["rolcanlogin"])


async def apply_plan(area: Area, vesting: date, *hosts: str) -> Any:
    """Apply as on vesting day itself: the guard on applying early is the CLI test's."""
    chosen = parse_hosts(area.register, vesting, list(hosts))
    by = Person("Test", "operator")
    async with area.client.uow().transaction() as tx:
        return await apply(tx, area.register, vesting, chosen, by, "tests", today=vesting)


async def settled(area: Area, vesting: date, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every move of the day's plan, once each is moved or failed."""
    deadline = time.monotonic() + timeout
    while True:
        async with area.client.pool.acquire() as conn:
            found = {m["source"]: m for m in await MoveRepository(conn).of_day(vesting)}
        if found and all(m["status"] in ("moved", "failed") for m in found.values()):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"moves did not settle: {found}")
        await asyncio.sleep(0.1)


async def tenancy_row(area: Area, tenancy_id: str) -> asyncpg.Record:
    async with area.client.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, council_gss, reorganised_into::text AS into"
            " FROM onboarding.tenancies WHERE id = $1",
            tenancy_id,
        )
    assert row is not None
    return row


async def brand_name(area: Area, tenancy_id: str) -> str | None:
    async with area.client.pool.acquire() as conn:
        name: str | None = await conn.fetchval(
            "SELECT v.brand->>'name' FROM branding.current_theme c"
            " JOIN branding.brand_versions v USING (tenancy_id, version) WHERE c.tenancy_id = $1",
            tenancy_id,
        )
    return name


async def withdrawn(area: Area, tenancy_id: str) -> bool:
    link = area.slice.root / "themes" / tenancy_id / "current"
    return await brand_name(area, tenancy_id) is None and not link.is_symlink()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("not so in time")
        await asyncio.sleep(0.1)


async def closed_in_metering(area: Area, tenancy_id: str, timeout: float = 20.0) -> asyncpg.Record:
    """The predecessor's row in metering, once metering has acted on its reorganisation."""
    deadline = time.monotonic() + timeout
    while True:
        async with area.client.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT closed_at, reorganised_into::text AS into FROM metering.tenancies"
                " WHERE tenancy_id = $1",
                tenancy_id,
            )
        if row is not None and row["into"] is not None:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"metering did not close {tenancy_id}: {row}")
        await asyncio.sleep(0.1)


def name_of(area: Area, code: str) -> str:
    found = area.register.find(code)
    assert found is not None
    return found.name


# -- the tests -------------------------------------------------------------------------------


async def test_surrey_districts_merge_into_east_surrey_in_every_tier(area: Area) -> None:
    for service in TIERS.values():
        await add_rows(area, service, area.of(ELMBRIDGE, service), ["elm-1", "elm-2"])
        await add_rows(area, service, area.of(EPSOM, service), ["eps-1", "eps-2", "eps-3"])
    await add_rows(area, KEEPS_KEYS.id, area.of(MOLE_VALLEY, KEEPS_KEYS.id), ["mole"])
    await add_rows(area, KEEPS_KEYS.id, area.of(REIGATE, KEEPS_KEYS.id), ["reigate"])

    assert not await withdrawn(area, area.of(EPSOM, TIERS["schema"]))
    applied = await apply_plan(area, SURREY_VESTING)
    assert applied.first
    assert len(applied.requested) == 8
    moves = await settled(area, SURREY_VESTING)

    targets = set()
    for service in TIERS.values():
        elmbridge, epsom = area.of(ELMBRIDGE, service), area.of(EPSOM, service)
        assert moves[elmbridge]["status"] == moves[epsom]["status"] == "moved", [
            (m["service_id"], m["reason"]) for m in moves.values()
        ]
        target = moves[elmbridge]["target"]
        assert moves[epsom]["target"] == target  # one East Surrey tenancy per service
        targets.add(target)
        for predecessor in (elmbridge, epsom):
            row = await tenancy_row(area, predecessor)
            assert (row["state"], row["into"]) == ("reorganised", target)
            assert not await can_log_in(area, predecessor)  # frozen, not dropped yet
        successor = await tenancy_row(area, target)
        assert (successor["state"], successor["council_gss"]) == ("active", EAST_SURREY)
        assert await brand_name(area, target) == name_of(area, "ESU")
        # Every row arrived once; the schema and database tiers renumbered their keys.
        arrived = await rows_of(area, service, target)
        assert sorted(v for _, v in arrived) == ["elm-1", "elm-2", "eps-1", "eps-2", "eps-3"]
        assert len({key for key, _ in arrived}) == 5
        [main] = [t for t in moves[epsom]["tables"] if t["name"] == MAIN[service][0]]
        assert (main["source_rows"], main["target_rows_before"], main["target_rows_after"]) == (
            3,
            2,
            5,
        )
        assert int(main["target_checksum_after"]) - int(main["target_checksum_before"]) == int(
            main["source_checksum"]
        )
        if service != TIERS["pooled"]:  # the copied source is kept until the move is settled
            assert len(await rows_of(area, service, epsom)) == 3
    assert len(targets) == 3
    # The predecessor's theme is withdrawn once it has ended; the successor's own stays.
    await eventually(lambda: withdrawn(area, area.of(EPSOM, TIERS["schema"])))

    # A key clash: Mole Valley's row 1 moved first, Reigate's row 1 cannot follow.
    mole, reigate = area.of(MOLE_VALLEY, KEEPS_KEYS.id), area.of(REIGATE, KEEPS_KEYS.id)
    assert moves[mole]["status"] == "moved"
    failed = moves[reigate]
    assert (failed["status"], failed["failed_step"]) == ("failed", "isolation")
    assert "key clash" in failed["reason"]
    assert "reorganisation.merge_keys: keep" in failed["reason"]
    assert (await tenancy_row(area, reigate))["state"] == "active"
    assert await rows_of(area, KEEPS_KEYS.id, reigate) == [(1, "reigate")]
    assert await can_log_in(area, reigate)
    assert await rows_of(area, KEEPS_KEYS.id, failed["target"]) == [(1, "mole")]

    # Applying again asks again for the failed move only, and changes nothing else.
    again = await apply_plan(area, SURREY_VESTING)
    assert (again.first, again.requested) == (False, [reigate])
    moves = await settled(area, SURREY_VESTING)
    assert moves[reigate]["status"] == "failed"
    assert moves[reigate]["attempts"] == 2
    for service in TIERS.values():
        assert len(await rows_of(area, service, moves[area.of(EPSOM, service)]["target"])) == 5
    # Once the clash is resolved, applying again finishes the plan.
    place = where(area, KEEPS_KEYS.id, reigate, "notes")
    await sql(place.dsn, f"UPDATE {place.table} SET id = 2")
    await apply_plan(area, SURREY_VESTING)
    moves = await settled(area, SURREY_VESTING)
    assert moves[reigate]["status"] == "moved"
    assert await rows_of(area, KEEPS_KEYS.id, failed["target"]) == [(1, "mole"), (2, "reigate")]

    async with area.client.pool.acquire() as conn:
        actions = {
            r["action"]: r["detail"]
            for r in await conn.fetch(
                "SELECT action, detail FROM audit.log WHERE tenancy_id = $1",
                area.of(EPSOM, "bin-collections"),
            )
        }
    assert "tenancy.reorganisation.requested" in actions
    assert "missed_bin_reports: 3 rows, checksum " in actions["tenancy.reorganised"]["tables"]
    ended = [json.loads(e["value"]) for e in await events_on(area.slice, Topic.TENANCY_REORGANISED)]
    epsom_bins = next(e for e in ended if e["subject"] == area.of(EPSOM, "bin-collections"))
    assert epsom_bins["data"]["closes_at"] == "2027-03-31T23:00:00Z"
    assert epsom_bins["data"]["successor"] == EAST_SURREY


async def test_metering_bills_each_predecessor_to_vesting_and_its_successor_after(
    area: Area,
) -> None:
    from tests.test_metering import publish, usage_event, wait_counted

    moves = await settled(area, SURREY_VESTING)
    closes_at = datetime(2027, 3, 31, 23, tzinfo=UTC)  # midnight starting 1 April, BST
    for service, last in zip(TIERS.values(), ("2027-03", "2027-03", "FY2026-27"), strict=True):
        for council in (ELMBRIDGE, EPSOM):
            predecessor = area.of(council, service)
            row = await closed_in_metering(area, predecessor)
            assert (row["closed_at"], row["into"]) == (closes_at, moves[predecessor]["target"])
            async with area.client.pool.acquire() as conn:
                details = await conn.fetch(
                    "SELECT detail FROM audit.log WHERE tenancy_id = $1"
                    " AND action = 'billing.reorganisation.closed'",
                    predecessor,
                )
            assert [d["detail"]["final_invoice"] for d in details] == [f"with the close of {last}"]

    # Before vesting day the predecessor's usage is still its own, though it is reorganised.
    bins = TIERS["schema"]
    epsom, target = area.of(EPSOM, bins), moves[area.of(EPSOM, bins)]["target"]
    now = datetime.now(UTC)
    await publish(area.slice, [usage_event(epsom, "missed_bin_reports", time=now, source=bins)])
    await wait_counted(area.client.pool, epsom, 1)

    # March 2027 closed ahead of time (the CLI waits for a period to be over), as metering would.
    metering = UnitOfWork(
        area.client.pool,
        "metering",
        lambda payload, **kw: publish_json(area.client.broker, payload, **kw),
        area.slice.prefix,
    )
    async with area.client.pool.acquire() as conn:
        manifest = await CatalogueRepository(conn).get(bins)
    assert manifest is not None
    for _ in range(2):  # the second close finds the period closed and issues nothing
        async with metering.transaction() as tx:
            await close_period(tx, manifest, "2027-03")
    async with area.client.pool.acquire() as conn:
        issued = {i["tenancy_id"]: i for i in await Billing(conn).invoices(bins, "2027-03")}
        finals = await conn.fetchval(
            "SELECT count(*) FROM metering.invoices WHERE tenancy_id = $1 AND final", epsom
        )
    assert issued[epsom]["final"]
    assert issued[area.of(ELMBRIDGE, bins)]["final"]
    assert issued[epsom]["total_pence"] == 5000  # the month's fee, the last it pays
    assert not issued[target]["final"]
    assert finals == 1


async def test_a_repeated_data_move_reports_the_move_already_made(area: Area) -> None:
    moves = await settled(area, SURREY_VESTING)
    databases = ServiceDatabases(area.slice.server_dsn, area.slice.name)
    try:
        for service in TIERS.values():
            source = area.of(ELMBRIDGE, service)
            target = moves[source]["target"]
            async with area.client.pool.acquire() as conn:
                manifest = await CatalogueRepository(conn).get(service)
            assert manifest is not None
            again = await merge.move(databases, source, target, manifest)
            assert [t.model_dump(mode="json") for t in again.tables] == moves[source]["tables"]
            assert len(await rows_of(area, service, target)) == 5
    finally:
        await databases.close()


async def test_a_stalled_move_is_driven_again_with_its_latest_request(area: Area) -> None:
    from services.onboarding.redrive import redrive_moves_once

    source = area.of(ELMBRIDGE, TIERS["pooled"])
    async with area.client.pool.acquire() as conn:
        # As if the broker had lost the request to move the data.
        await conn.execute(
            "UPDATE onboarding.reorganisation_moves SET status = 'moving',"
            " updated_at = now() - interval '1 hour' WHERE source_tenancy_id = $1",
            source,
        )
    try:
        assert await redrive_moves_once(area.client.uow(), 60) == 1
        assert await redrive_moves_once(area.client.uow(), 60) == 0  # not again at once
    finally:
        async with area.client.pool.acquire() as conn:
            await conn.execute(
                "UPDATE onboarding.reorganisation_moves SET status = 'moved'"
                " WHERE source_tenancy_id = $1",
                source,
            )


async def test_cumbria_is_split_hosted_by_cumberland_through_the_cli(area: Area) -> None:
    for service in TIERS.values():
        await add_rows(area, service, area.of(CUMBRIA, service), ["cma-1", "cma-2"])
    await add_rows(area, TIERS["schema"], area.of(ALLERDALE, TIERS["schema"]), ["all-1"])
    env = {"COLUMNS": "200"}  # the slice's environment names the reorganised register
    day = CUMBRIA_REPLAY.isoformat()

    hosted = ("--host", "CMA=CBD")
    early = ("--early", "  drill ahead of vesting day ")
    unhosted = await cli(area.slice, "reorganise", "apply", "--on", day, *early, env=env)
    assert unhosted.returncode != 0
    assert "must name the successor that hosts" in " ".join(unhosted.stderr.split())
    # Before vesting day, without --early, apply schedules the plan for the worker.
    wrong = ("--host", "CMA/bin-collections=WAF")
    scheduled = await cli(area.slice, "reorganise", "apply", "--on", day, *wrong, env=env)
    assert scheduled.returncode == 0, scheduled.stderr
    told = " ".join(scheduled.stdout.split())
    assert f"scheduled, not applied: the onboarding worker carries out the plan for {day}" in told
    assert "REORGANISE_AUTOMATICALLY=true" in told
    assert "as it stands the plan is blocked" in " ".join(scheduled.stderr.split())
    planned = await cli(area.slice, "reorganise", "plan", "--on", day, "--json", env=env)
    assert json.loads(planned.stdout)["arrangement"]["hosts"] == {"CMA/bin-collections": "WAF"}

    # The agreement divides the cost 45:55; shares that do not make a whole are refused.
    uneven = ("--share", "CBD=0.5", "--share", "WAF=60%")
    refused = await cli(area.slice, "reorganise", "apply", "--on", day, *hosted, *uneven, *early)
    assert refused.returncode != 0
    assert "share: the shares of the cost of Cumbria County Council (E10000006) add up to 110%" in (
        " ".join(refused.stderr.split())
    )
    shared = ("--share", "CBD=45%", "--share", f"{WESTMORLAND}=0.55")
    result = await cli(
        area.slice, "reorganise", "apply", "--on", day, *hosted, *shared, *early, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "applied early: 4 tenancies move now, before vesting day 2028-04-01" in result.stdout
    # The hosts given by hand win over those scheduled, and the operator is told.
    assert "note: the plan was scheduled with hosts CMA/bin-collections=WAF" in " ".join(
        result.stderr.split()
    )
    async with area.client.pool.acquire() as conn:
        kept = await conn.fetchval(
            "SELECT applied_early FROM onboarding.reorganisations WHERE vesting = $1",
            CUMBRIA_REPLAY,
        )
        audited = await conn.fetchval(
            "SELECT detail->>'reorganisation.early' FROM audit.log"
            " WHERE action = 'reorganise.apply' AND detail->>'reorganisation.vesting' = $1",
            day,
        )
    assert kept == audited == "drill ahead of vesting day"
    moves = await settled(area, CUMBRIA_REPLAY)
    assert {m["status"] for m in moves.values()} == {"moved"}, moves
    for service in TIERS.values():
        county = area.of(CUMBRIA, service)
        move = moves[county]
        assert move["kind"] == "split"
        successor = await tenancy_row(area, move["target"])
        assert (successor["state"], successor["council_gss"]) == ("active", CUMBERLAND)
        assert await brand_name(area, move["target"]) == name_of(area, "CBD")
        assert (await tenancy_row(area, county))["state"] == "reorganised"
        expected = (["all-1"] if service == TIERS["schema"] else []) + ["cma-1", "cma-2"]
        assert sorted(v for _, v in await rows_of(area, service, move["target"])) == expected
        async with area.client.pool.acquire() as conn:
            request = await MoveRepository(conn).request(county)
        agreement = request.agreement
        assert (agreement.host.gss, [c.gss for c in agreement.served]) == (
            CUMBERLAND,
            [WESTMORLAND],
        )
        assert agreement.cost_shared
        assert agreement.novated_from == county
        assert agreement.acceptance.role == "operator, on the successor's behalf"
        assert [(s.council.gss, s.share) for s in agreement.shares] == [
            (CUMBERLAND, "9/20"),
            (WESTMORLAND, "11/20"),
        ]
        # The host's meters record whom it serves, sharing its costs.
        await closed_in_metering(area, county)
        async with area.client.pool.acquire() as conn:
            shared = await conn.fetchval(
                "SELECT shared_with FROM metering.tenancies WHERE tenancy_id = $1", move["target"]
            )
        assert shared == [WESTMORLAND]
    # Allerdale merges into the same Cumberland tenancy the county's split made.
    allerdale = area.of(ALLERDALE, TIERS["schema"])
    assert moves[allerdale]["target"] == moves[area.of(CUMBRIA, TIERS["schema"])]["target"]
    await shared_invoice_names_both_councils(area, moves[area.of(CUMBRIA, TIERS["schema"])])

    again = await cli(area.slice, "reorganise", "apply", "--on", day, "--host", "CMA=CBD", env=env)
    assert again.returncode == 0, again.stderr
    assert "already applied; asked again for 0 failed moves" in again.stdout
    shown = await cli(area.slice, "reorganise", "moves", "--on", day, "--json", env=env)
    assert {m["status"] for m in json.loads(shown.stdout)} == {"moved"}
    table = await cli(area.slice, "reorganise", "moves", "--on", day, env=env)
    assert table.returncode == 0, table.stderr
    assert "Cumbria County Council" in table.stdout
    assert table.stdout.count("moved") == 4
    other_host = await cli(
        area.slice, "reorganise", "apply", "--on", day, "--host", "CMA=WAF", env=env
    )
    assert other_host.returncode != 0
    assert "name the same hosts" in " ".join(other_host.stderr.split())


async def shared_invoice_names_both_councils(area: Area, move: dict[str, Any]) -> None:
    """The host's first month after vesting (closed ahead of time, as metering would): its
    invoice is divided between Cumberland and Westmorland and Furness by their shares."""
    bins = TIERS["schema"]
    async with area.client.pool.acquire() as conn:
        manifest = await CatalogueRepository(conn).get(bins)
    assert manifest is not None
    metering = UnitOfWork(
        area.client.pool,
        "metering",
        lambda payload, **kw: publish_json(area.client.broker, payload, **kw),
        area.slice.prefix,
    )
    async with metering.transaction() as tx:
        await close_period(tx, manifest, "2028-04")
    async with area.client.pool.acquire() as conn:
        issued = {i["tenancy_id"]: i for i in await Billing(conn).invoices(bins, "2028-04")}
    invoice = issued[move["target"]]
    parties = [(p["council"]["gss"], p["share"]) for p in invoice["parties"]]
    assert parties == [(CUMBERLAND, "9/20"), (WESTMORLAND, "11/20")]
    assert invoice["total_pence"] > 0
    assert sum(p["amount_pence"] for p in invoice["parties"]) == invoice["total_pence"]
    listed = await cli(area.slice, "invoices", bins, "--period", "2028-04", env={"COLUMNS": "250"})
    assert listed.returncode == 0, listed.stderr
    assert f"{name_of(area, 'WAF')} 55%" in listed.stdout
    # The file finance imports says who pays which part, on every line of the host's invoice.
    finance = area.slice.root / "invoices-2028-04.csv"
    written = await cli(area.slice, "invoices", bins, "--period", "2028-04", "--csv", str(finance))
    assert written.returncode == 0, written.stderr
    host_lines = [r for r in csv.DictReader(finance.open()) if r["invoice_id"] == invoice["id"]]
    assert host_lines
    amounts = [format_pounds(p["amount_pence"]) for p in invoice["parties"]]
    expected = f"{CUMBERLAND} 9/20 {amounts[0]}; {WESTMORLAND} 11/20 {amounts[1]}"
    assert {r["shared_by"] for r in host_lines} == {expected}


async def test_a_plan_that_is_not_ready_is_refused_and_a_moved_tenancy_cannot_be_offboarded(
    area: Area,
) -> None:
    with pytest.raises(PlanNotApplicable, match="no live tenancy belongs to a council replaced"):
        await apply_plan(area, date(2026, 4, 1))
    reorganised = area.of(ELMBRIDGE, TIERS["schema"])
    with pytest.raises(RequestRefused, match="was reorganised"):
        await offboard_tenancy(area.client, reorganised)


async def test_the_api_shows_each_move_to_the_councils_party_to_it(area: Area) -> None:
    import httpx

    from api.tokens import Role, create
    from stack.ports import free_port
    from tests.harness import WorkerProcess
    from tests.test_web_support import Browserless, text_of

    await settled(area, SURREY_VESTING)
    port = free_port()
    process = WorkerProcess(
        "api-moves", area.slice, {"API_PORT": str(port)}, module="api", ready="api ready"
    )
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready)

        async def seen_by(role: Role, council: str | None, path: str, status: int = 200) -> Any:
            async with area.client.pool.acquire() as conn:
                token, _ = await create(conn, role, council, None, "tests")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                answer = await http.get(path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == status, answer.text
            return answer.json()

        async def moves_seen_by(role: Role, council: str | None) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = await seen_by(
                role, council, "/reorganisations/2027-04-01/moves"
            )
            return found

        everything = await moves_seen_by(Role.OPERATOR, None)
        assert len(everything) == 8
        assert {m["status"] for m in everything} == {"moved"}
        epsom = await moves_seen_by(Role.COUNCIL_ADMIN, EPSOM)
        assert {m["source"] for m in epsom} == {area.of(EPSOM, s) for s in TIERS.values()}
        assert len(await moves_seen_by(Role.COUNCIL_ADMIN, EAST_SURREY)) == 8
        assert await moves_seen_by(Role.COUNCIL_ADMIN, CUMBERLAND) == []

        # What each successor inherits, on any vesting day; a predecessor inherits nothing.
        inherited = "/reorganisations/inherited"
        east = await seen_by(Role.COUNCIL_ADMIN, EAST_SURREY, inherited)
        assert len(east) == 8
        assert {(m["vesting"], m["successor_gss"], m["status"]) for m in east} == {
            ("2027-04-01", EAST_SURREY, "moved")
        }
        assert await seen_by(Role.COUNCIL_ADMIN, EPSOM, inherited) == []
        served = await seen_by(Role.COUNCIL_ADMIN, WESTMORLAND, inherited)
        assert {m["source"] for m in served} == {area.of(CUMBRIA, s) for s in TIERS.values()}
        assert {(m["kind"], m["successor_gss"]) for m in served} == {("split", CUMBERLAND)}
        assert served[0]["served"] == [{"gss": WESTMORLAND, "name": name_of(area, "WAF")}]
        await seen_by(Role.OPERATOR, None, inherited, status=403)

        # The host's invoices that a council it serves shares (the Cumbria test issued them):
        # that council's finance and admin see them, with its part; another council does not.
        shared = {
            r["id"]
            for r in await area.client.pool.fetch(
                "SELECT id::text FROM metering.invoices WHERE parties @> jsonb_build_array("
                "jsonb_build_object('council', jsonb_build_object('gss', $1::text)))",
                WESTMORLAND,
            )
        }
        for role in (Role.FINANCE, Role.COUNCIL_ADMIN):
            seen = {i["id"]: i for i in await seen_by(role, WESTMORLAND, "/invoices")}
            assert shared <= set(seen)
            for invoice in (seen[i] for i in shared):
                assert invoice["council_gss"] == CUMBERLAND
                assert WESTMORLAND in [p["council"]["gss"] for p in invoice["parties"]]
        assert not shared & {i["id"] for i in await seen_by(Role.FINANCE, EPSOM, "/invoices")}

        # A reorganised tenancy says where it went, through the API and the CLI.
        epsom_bins = area.of(EPSOM, TIERS["schema"])
        target = next(m["target"] for m in everything if m["source"] == epsom_bins)
        status = await seen_by(Role.COUNCIL_ADMIN, EPSOM, f"/tenancies/{epsom_bins}")
        assert status["state"] == "reorganised"
        assert status["reorganised_into"] == {
            "id": target,
            "council": EAST_SURREY,
            "council_name": name_of(area, "ESU"),
            "vesting": "2027-04-01",
        }
        assert "reorganised" in [step["step"] for step in status["timeline"]]
        shown_by_cli = await cli(area.slice, "status", epsom_bins, env={"COLUMNS": "200"})
        assert shown_by_cli.returncode == 0, shown_by_cli.stderr
        assert "is reorganised" in shown_by_cli.stdout
        assert f"reorganised into tenancy {target}: {name_of(area, 'ESU')}" in shown_by_cli.stdout

        async with area.client.pool.acquire() as conn:
            successor_token, _ = await create(conn, Role.COUNCIL_ADMIN, EAST_SURREY, None, "tests")
            operator_token, _ = await create(conn, Role.OPERATOR, None, None, "tests")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            web = Browserless(http)
            await web.sign_in(successor_token)
            page = await web.get("/manage/reorganisations")
        assert page.status_code == 200, page.text
        section = text_of(page.text).split("Tenancies your council inherits", 1)[1]
        assert "Epsom and Ewell" in section
        assert "Merge on 1 April 2027" in section
        # Each move, and the predecessor's data: kept, locked out, until retired.
        applied = section.split("Applied: the moves", 1)[1]
        assert "Predecessor's data" in applied
        assert "Kept, locked out" in applied
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            web = Browserless(http)
            await web.sign_in(operator_token)
            listed = text_of((await web.get("/manage")).text)
            one_html = (await web.get(f"/tenancy/{epsom_bins}")).text
            one = text_of(one_html)
        assert "Reorganised (" in listed
        assert f"Moved into {name_of(area, 'ESU')}" in listed
        assert "Reorganised" in one
        assert f"Moved into {name_of(area, 'ESU')} ({EAST_SURREY}), tenancy {target}" in one
        assert f'href="/tenancy/{target}"' in one_html  # the operator may open it

        async with area.client.pool.acquire() as conn:
            token, _ = await create(conn, Role.COUNCIL_ADMIN, EPSOM, None, "tests")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            web = Browserless(http)
            await web.sign_in(token)
            page = await web.get("/manage/reorganisations")
            own = await web.get(f"/tenancy/{epsom_bins}")
            own_list = await web.get("/manage")
        # The predecessor's admin is told where its tenancy went and when, with no link to a
        # tenancy it may not open.
        told = text_of(own.text)
        assert f"{name_of(area, EPSOM)} was replaced by {name_of(area, 'ESU')} on 1 April" in told
        assert f"Only {name_of(area, 'ESU')}" in told  # may open it, not this admin
        assert f"/tenancy/{target}" not in own.text + own_list.text
        assert "vesting day 1 April 2027" in text_of(own_list.text)
        assert page.status_code == 200, page.text
        shown = text_of(page.text)
        if date.today() < SURREY_VESTING:  # the page lists coming vesting days only
            applied = shown.split("Applied: the moves", 1)[1].split("Vesting day", 1)[0]
            assert "Epsom and Ewell" in applied
            assert "Moved" in applied
            assert "Elmbridge" not in applied  # another council's move
    finally:
        process.stop()
