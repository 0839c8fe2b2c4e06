"""Promise 4 in every tier: connected as tenancy A's own role, nothing of tenancy B's can be read,
written, listed or guessed, and A cannot create objects elsewhere, raise its own privileges or
turn row-level security off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from services.isolation.credentials import connection_string
from shared import db
from shared.identifiers import tenant_object_name
from tests.harness import Client

denied = pytest.raises(asyncpg.InsufficientPrivilegeError)


@dataclass
class Tier:
    service: str
    councils: tuple[str, str]
    table: str
    insert: str


TIERS = {
    "pooled": Tier(
        "planning-comments",
        ("W06000001", "W06000002"),
        "comments",
        "INSERT INTO comments (application_ref, body) VALUES ('24/0001/FUL', $1)",
    ),
    "schema": Tier(
        "bin-collections",
        ("W06000003", "W06000004"),
        "missed_bin_reports",
        "INSERT INTO missed_bin_reports (uprn, container) VALUES (10002345678, $1)",
    ),
    "database": Tier(
        "parking-permits",
        ("W06000005", "W06000006"),
        "permits",
        "INSERT INTO permits (vehicle_registration, zone, valid_from, valid_to)"
        " VALUES ($1, 'A', '2026-12-01', '2027-11-30')",
    ),
}


@dataclass
class Pair:
    tier: str
    spec: Tier
    a: str
    b: str
    a_dsn: str
    b_dsn: str


@pytest.fixture(scope="module", params=list(TIERS))
async def pair(request: pytest.FixtureRequest, platform: Client) -> Pair:
    spec = TIERS[request.param]
    a = await platform.onboard(spec.councils[0], service=spec.service)
    b = await platform.onboard(spec.councils[1], service=spec.service)
    for tenancy in (a, b):
        found = await platform.wait_for(tenancy)
        assert found["state"] == "active", found
    dsns = [
        await connection_string(
            platform.slice.server_dsn, platform.slice.database_url, spec.service, tenancy
        )
        for tenancy in (a, b)
    ]
    for dsn, label in zip(dsns, ("written by A", "written by B"), strict=True):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(spec.insert, label)
        finally:
            await conn.close()
    return Pair(request.param, spec, a, b, dsns[0], dsns[1])


@pytest.fixture
async def as_a(pair: Pair) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pair.a_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_sees_and_changes_only_its_own_rows(pair: Pair, as_a: asyncpg.Connection) -> None:
    rows = await as_a.fetch(f"SELECT * FROM {pair.spec.table}")
    assert len(rows) == 1
    assert "written by A" in [str(v) for v in rows[0].values()]
    if pair.tier == "pooled":
        b_role = tenant_object_name(pair.b)
        assert (
            await as_a.fetchval("SELECT count(*) FROM comments WHERE tenant_role = $1", b_role) == 0
        )
        assert (
            await as_a.execute("UPDATE comments SET body = 'x' WHERE tenant_role = $1", b_role)
            == "UPDATE 0"
        )
        assert (
            await as_a.execute("DELETE FROM comments WHERE tenant_role = $1", b_role) == "DELETE 0"
        )
        with denied:
            await as_a.execute(
                "INSERT INTO comments (application_ref, body, tenant_role) VALUES ('x', 'y', $1)",
                b_role,
            )
        with denied:
            await as_a.execute("UPDATE comments SET tenant_role = $1", b_role)


async def test_a_cannot_reach_b_by_name(pair: Pair, as_a: asyncpg.Connection) -> None:
    other = tenant_object_name(pair.b)
    if pair.tier == "schema":
        with denied:
            await as_a.fetch(f'SELECT * FROM "{other}".{pair.spec.table}')
        with denied:
            await as_a.execute(f'DELETE FROM "{other}".{pair.spec.table}')
    elif pair.tier == "database":
        b_database_as_a = db.with_database(pair.a_dsn, other)
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match="permission denied for database"
        ):
            await asyncpg.connect(b_database_as_a)
    else:
        with denied:
            await as_a.execute(f'SET ROLE "{other}"')


async def test_a_lists_nothing_of_b(pair: Pair, as_a: asyncpg.Connection) -> None:
    visible = await as_a.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    own_schema = "pooled" if pair.tier == "pooled" else tenant_object_name(pair.a)
    assert (own_schema, pair.spec.table) in {(r["table_schema"], r["table_name"]) for r in visible}
    assert {r["table_schema"] for r in visible} == {own_schema}


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE public.smuggled (id int)",
        "CREATE SCHEMA smuggled",
        "CREATE TEMP TABLE smuggled (id int)",
        "CREATE TABLE smuggled (id int)",
        "CREATE FUNCTION smuggled() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ],
)
async def test_a_cannot_create_objects(
    pair: Pair, as_a: asyncpg.Connection, statement: str
) -> None:
    with denied:
        await as_a.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER ROLE CURRENT_USER CREATEDB",
        "ALTER ROLE CURRENT_USER BYPASSRLS",
        "ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        "DROP TABLE {table}",
        "TRUNCATE {table}",
    ],
)
async def test_a_cannot_raise_its_privileges_or_switch_off_security(
    pair: Pair, as_a: asyncpg.Connection, statement: str
) -> None:
    with denied:
        await as_a.execute(statement.format(table=pair.spec.table))
    elevated = await as_a.fetchval(
        "SELECT rolcreatedb OR rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    assert elevated is False


async def test_a_cannot_hand_its_rights_to_anyone(pair: Pair, as_a: asyncpg.Connection) -> None:
    # Without the grant option PostgreSQL only warns "no privileges were granted": check the effect.
    async def grants() -> set[tuple[str, str, str]]:
        rows = await as_a.fetch(
            "SELECT grantor, grantee, privilege_type FROM information_schema.role_table_grants"
            " WHERE table_name = $1",
            pair.spec.table,
        )
        return {(r["grantor"], r["grantee"], r["privilege_type"]) for r in rows}

    before = await grants()
    for grantee in ("PUBLIC", f'"{tenant_object_name(pair.b)}"'):
        await as_a.execute(f"GRANT ALL ON {pair.spec.table} TO {grantee}")
    assert await grants() == before
    assert not {grantee for _, grantee, _ in before} & {"PUBLIC", tenant_object_name(pair.b)}


async def test_row_security_cannot_be_switched_off_for_a_session(
    pair: Pair, as_a: asyncpg.Connection
) -> None:
    if pair.tier != "pooled":
        pytest.skip("row-level security is the pooled tier's wall")
    await as_a.execute("SET row_security = off")
    with denied:
        await as_a.fetch("SELECT * FROM comments")


async def test_b_rows_are_untouched(pair: Pair, platform: Client) -> None:
    conn = await asyncpg.connect(pair.b_dsn)
    try:
        rows = await conn.fetch(f"SELECT * FROM {pair.spec.table}")
    finally:
        await conn.close()
    assert len(rows) == 1
    assert "written by B" in [str(v) for v in rows[0].values()]
