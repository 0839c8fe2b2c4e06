"""A manifest's SQL runs with no more rights than its service (issue 15).

Two walls, each tested on its own: the catalogue refuses a migration that does anything but
shape the tenancy's own tables (PostgreSQL's parser reads it), and a migration that got past
that check anyway runs as the service's owner role, which logs in itself and can reach neither
the platform nor the server, in every tier.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from services.isolation.credentials import tenant_dsn
from services.isolation.databases import ServiceDatabases
from services.isolation.plan import POOLED_SCHEMA, service_owner
from services.isolation.service import IsolationFailed, isolate
from shared import db, migration_sql
from shared.catalogue import (
    IsolationTier,
    Migration,
    ServiceManifest,
    describe_validation_error,
    load_catalogue,
)
from shared.settings import REPO_ROOT
from tests.conftest import Api
from tests.harness import Client

MARKER = Path("/tmp") / f"tenancy-hostile-{uuid.uuid4().hex}"  # noqa: S108 (never created)
EVIL_ROLE = f"evil_{uuid.uuid4().hex[:12]}"

# What an operator might put in a manifest to escape its service; each names what it tries.
HOSTILE = {
    "dblink": "DO $$ BEGIN PERFORM dblink_connect('host=127.0.0.1 dbname=postgres'); END $$",
    "create extension": "CREATE EXTENSION IF NOT EXISTS dblink",
    "copy program": f"COPY (SELECT 1) TO PROGRAM 'touch {MARKER}'",
    "read server file": "CREATE TABLE stolen AS SELECT pg_read_file('/etc/hostname') AS f",
    "read file in a default": (
        "CREATE TABLE t (f text DEFAULT pg_read_file('/etc/hostname'));"
        " INSERT INTO t DEFAULT VALUES"
    ),
    "reset role": f"RESET ROLE; CREATE ROLE {EVIL_ROLE} SUPERUSER LOGIN",
    "session authorization": "SET SESSION AUTHORIZATION postgres",
    "alter system": "ALTER SYSTEM SET log_statement = 'none'",
    "grant a server role": "GRANT pg_execute_server_program TO CURRENT_USER",
    "grant on the ledger": "GRANT ALL ON ALL TABLES IN SCHEMA tenancy_platform TO PUBLIC",
    "platform tables": "CREATE TABLE copied AS SELECT * FROM onboarding.tenancies",
    "tenant passwords": (
        "DO $$ BEGIN RAISE EXCEPTION '%',"
        " (SELECT string_agg(password, ',') FROM tenancy_platform.tenants); END $$"
    ),
    "sql from text": (
        "CREATE TABLE t (x xml); INSERT INTO t VALUES (query_to_xml("
        "'SELECT password FROM tenancy_platform.tenants', true, false, ''))"
    ),
}


# -- the catalogue refuses them ---------------------------------------------------------------


@pytest.mark.parametrize("attempt", list(HOSTILE))
def test_a_hostile_migration_is_refused_naming_the_statement_and_the_rule(attempt: str) -> None:
    with pytest.raises(ValidationError) as refused:
        manifest_with(HOSTILE[attempt], IsolationTier.SCHEMA)
    (line, *_) = describe_validation_error(refused.value)
    assert line.startswith("migrations.0.sql: statement "), line
    assert "not allowed" in line or "names a schema" in line, line


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("ALTER TABLE comments NO FORCE ROW LEVEL SECURITY", "not no force row security"),
        ("ALTER TABLE comments OWNER TO postgres", "not change owner"),
        ("ALTER TABLE comments DROP COLUMN tenant_role", "tenant_role is the platform's"),
        ("CREATE POLICY everyone ON comments USING (true)", "CREATE POLICY is not allowed"),
        ("CREATE TABLE t (id int REFERENCES tenant_x.t)", "tenant_x.t names a schema"),
        ("CREATE TEMP TABLE t (id int)", "temporary tables"),
        ("CREATE TABLE t (id int) TABLESPACE pg_default", "tablespaces"),
        ("DROP SCHEMA pooled CASCADE", "DROP SCHEMA is not allowed"),
        ("BEGIN; COMMIT", "a transaction statement is not allowed"),
        ("CREATE TABLE t (id int", "not valid PostgreSQL: syntax error"),
    ],
)
def test_each_rule_is_named(sql: str, rule: str) -> None:
    found = " ".join(migration_sql.problems(sql))
    assert rule in found, found


def test_the_statement_is_quoted_and_numbered() -> None:
    sql = "CREATE TABLE ok (id int);\nCOPY ok FROM PROGRAM 'id'"
    assert migration_sql.problems(sql) == [
        "statement 2 (\"COPY ok FROM PROGRAM 'id'\"): COPY is not allowed in a migration;"
        f" a migration may {migration_sql.ALLOWED}"
    ]


def test_what_services_need_is_allowed() -> None:
    sql = """
        CREATE TYPE status AS ENUM ('open', 'closed');
        CREATE DOMAIN uprn AS bigint CHECK (VALUE > 0);
        CREATE SEQUENCE refs;
        CREATE TABLE reports (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ref text NOT NULL DEFAULT 'R' || nextval('refs'),
            made_at timestamptz NOT NULL DEFAULT now(),
            year int GENERATED ALWAYS AS (extract(year FROM made_at AT TIME ZONE 'UTC')) STORED,
            state status NOT NULL DEFAULT 'open',
            place uprn,
            body text CHECK (length(body) < 2000)
        );
        CREATE INDEX reports_made ON reports (lower(ref), made_at DESC);
        CREATE VIEW open_reports AS SELECT id, ref FROM reports WHERE state = 'open';
        ALTER TABLE reports ADD COLUMN closed_at timestamptz;
        ALTER TABLE reports ALTER COLUMN body SET NOT NULL;
        ALTER TABLE reports RENAME COLUMN body TO text;
        COMMENT ON TABLE reports IS 'Reports from residents';
        INSERT INTO reports (ref, text) VALUES ('R0', 'seed') ON CONFLICT DO NOTHING;
        UPDATE reports SET closed_at = now() WHERE state = 'closed';
        DELETE FROM reports WHERE ref = 'R0';
        DROP VIEW open_reports;
    """
    assert migration_sql.problems(sql) == []


def test_every_shipped_manifest_passes() -> None:
    for folder in (REPO_ROOT / "catalogue", Path(__file__).parent / "manifests"):
        assert load_catalogue(folder)


async def test_the_api_refuses_a_hostile_manifest_with_the_field_and_rule(api: Api) -> None:
    operator = await api.token("operator", council="E06000047")
    manifest = {
        "id": "hostile-api",
        "name": "Hostile",
        "owner_council": "E06000047",
        "migrations": [{"version": 1, "sql": HOSTILE["dblink"]}],
    }
    async with httpx.AsyncClient(base_url=api.url) as http:
        answer = await http.post("/services", json=manifest, headers=operator)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert "migrations.0.sql" in detail
        assert "DO is not allowed in a migration" in detail
        listed = await http.get("/services", headers=operator)
        assert "hostile-api" not in {s["id"] for s in listed.json()}


# -- and if one got past the check, the database refuses it ----------------------------------


def manifest_with(sql: str, tier: IsolationTier, *, checked: bool = True) -> ServiceManifest:
    fields = {
        "id": f"hostile-{tier.value}",
        "name": "Hostile",
        "owner_council": "E09000012",
        "isolation": tier,
        "migrations": [{"version": 1, "description": "hostile", "sql": sql}],
    }
    if checked:
        return ServiceManifest.model_validate(fields)
    # As if the catalogue's check had a hole: the model built without validation.
    migration = Migration.model_construct(version=1, description="hostile", sql=sql)
    return ServiceManifest.model_validate({**fields, "migrations": []}).model_copy(
        update={"migrations": [migration]}
    )


@pytest.fixture(scope="module")
async def databases(platform: Client) -> AsyncIterator[ServiceDatabases]:
    found = ServiceDatabases(platform.slice.server_dsn, platform.slice.name)
    try:
        yield found
    finally:
        await found.close()


@pytest.mark.parametrize("tier", list(IsolationTier))
@pytest.mark.parametrize("attempt", list(HOSTILE))
async def test_unchecked_hostile_sql_fails_harmlessly_as_the_service_owner(
    platform: Client, databases: ServiceDatabases, tier: IsolationTier, attempt: str
) -> None:
    tenancy_id = str(uuid.uuid4())
    manifest = manifest_with(HOSTILE[attempt], tier, checked=False)
    with pytest.raises(IsolationFailed) as failed:
        await isolate(databases, tenancy_id, manifest, connection_limit=5)
    reason = str(failed.value)
    assert reason.startswith(f"migration 1 (hostile) of {manifest.id} failed: "), reason
    assert any(
        words in reason
        for words in (
            "permission denied",
            "must be superuser",
            "does not exist",
            "privileges",
            "cannot run inside a transaction block",  # ALTER SYSTEM; and see the owner test
        )
    ), reason

    # Nothing of the platform's leaked into the reason the caller is shown.
    others = await platform.pool.fetch("SELECT id::text FROM onboarding.tenancies")
    assert not [row["id"] for row in others if row["id"] in reason]
    pool, _ = await databases.pool_for(manifest.id)
    passwords = await pool.fetch("SELECT password FROM tenancy_platform.tenants")
    assert not [
        row["password"] for row in passwords if row["password"] and row["password"] in reason
    ]

    # And none of what it tried happened.
    assert not MARKER.exists()
    assert not await platform.pool.fetchval(
        "SELECT true FROM pg_roles WHERE rolname = $1", EVIL_ROLE
    )
    settings = await platform.pool.fetch(
        "SELECT name FROM pg_file_settings WHERE name = 'log_statement'"
    )
    assert settings == []
    assert not await pool.fetchval("SELECT true FROM pg_extension WHERE extname = 'dblink'")
    assert not await pool.fetchval(
        "SELECT true FROM pg_class WHERE relname IN ('stolen', 'copied', 't')"
    )


async def owner_dsn(databases: ServiceDatabases, service_id: str, database: str) -> str:
    pool, service_db = await databases.pool_for(service_id)
    password = await pool.fetchval("SELECT password FROM tenancy_platform.service_owner")
    return tenant_dsn(databases.server_dsn, database, service_owner(service_db), password)


@pytest.mark.parametrize("tier", list(IsolationTier))
async def test_migrations_run_as_the_service_owner_who_owns_only_the_service_objects(
    platform: Client, databases: ServiceDatabases, tier: IsolationTier
) -> None:
    tenancy_id = str(uuid.uuid4())
    manifest = manifest_with("CREATE TABLE reports (id bigint PRIMARY KEY)", tier).model_copy(
        update={"id": f"owned-{tier.value}"}
    )
    ready = await isolate(databases, tenancy_id, manifest, connection_limit=5)
    assert ready.migrations_applied == [1]
    _, service_db = await databases.pool_for(manifest.id)
    owner = service_owner(service_db)

    own = await db.connect(databases.dsn(ready.database))
    try:
        tables = await own.fetch(
            "SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = 'reports'",
            ready.schema_name,
        )
        assert [t["tableowner"] for t in tables] == [owner]
        rights = await own.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication"
            " FROM pg_roles WHERE rolname = $1",
            owner,
        )
        assert rights is not None
        assert not any(rights.values())
        assert not await own.fetchval(
            "SELECT bool_or(pg_has_role($1, oid, 'USAGE')) FROM pg_roles"
            " WHERE rolname LIKE 'pg\\_%' OR rolsuper",
            owner,
        )
    finally:
        await own.close()

    # Logged in as the owner itself: the platform's database and ledger stay out of reach.
    as_owner = await asyncpg.connect(await owner_dsn(databases, manifest.id, ready.database))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_owner.fetch("SELECT password FROM tenancy_platform.tenants")
        for sql in (
            "CREATE SCHEMA elsewhere",
            "ALTER SYSTEM SET log_statement = 'none'",
            f"CREATE EXTENSION IF NOT EXISTS dblink SCHEMA {ready.schema_name}",
            "SET SESSION AUTHORIZATION postgres",
            "COPY (SELECT 1) TO PROGRAM 'true'",
            "SELECT pg_read_file('/etc/hostname')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await as_owner.execute(sql)
    finally:
        await as_owner.close()
    try:
        platform_db = await asyncpg.connect(
            await owner_dsn(databases, manifest.id, platform.slice.name)
        )
    except asyncpg.InsufficientPrivilegeError:
        return  # not even allowed in
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await platform_db.fetch("SELECT * FROM onboarding.tenancies")
    finally:
        await platform_db.close()


async def test_unchecked_sql_that_turns_row_security_off_is_undone_by_failing(
    databases: ServiceDatabases,
) -> None:
    """The owner owns the pooled tables, so the database alone would let its SQL weaken their
    row-level security: the platform checks every pooled table after each migration."""
    service = "pooled-guard"
    base = manifest_with("CREATE TABLE notes (body text)", IsolationTier.POOLED).model_copy(
        update={"id": service}
    )
    first = str(uuid.uuid4())
    await isolate(databases, first, base, connection_limit=5)
    for number, sql in enumerate(
        [
            "ALTER TABLE notes NO FORCE ROW LEVEL SECURITY",
            "ALTER TABLE notes DISABLE ROW LEVEL SECURITY",
            "CREATE POLICY everyone ON notes USING (true)",
            "ALTER POLICY tenant_rows ON notes USING (true)",
            "ALTER POLICY tenant_rows ON notes TO CURRENT_USER",
        ],
        start=2,
    ):
        weakened = Migration.model_construct(version=number, description="weaken", sql=sql)
        manifest = base.model_copy(update={"migrations": [*base.migrations, weakened]})
        with pytest.raises(IsolationFailed, match="row-level security"):
            await isolate(databases, str(uuid.uuid4()), manifest, connection_limit=5)
    # A policy dropped is a table unguarded, which the platform guards again.
    dropped = Migration.model_construct(
        version=2, description="drop", sql="DROP POLICY tenant_rows ON notes"
    )
    manifest = base.model_copy(update={"migrations": [*base.migrations, dropped]})
    ready = await isolate(databases, str(uuid.uuid4()), manifest, connection_limit=5)
    assert ready.migrations_applied == [1, 2]
    pool, _ = await databases.pool_for(service)
    guard = await pool.fetchrow(
        "SELECT c.relrowsecurity, c.relforcerowsecurity,"
        " (SELECT array_agg(p.policyname) FROM pg_policies p"
        "  WHERE p.schemaname = $1 AND p.tablename = 'notes') AS policies"
        " FROM pg_class c WHERE c.oid = 'pooled.notes'::regclass",
        POOLED_SCHEMA,
    )
    assert guard is not None
    assert (guard["relrowsecurity"], guard["relforcerowsecurity"]) == (True, True)
    assert guard["policies"] == ["tenant_rows"]
