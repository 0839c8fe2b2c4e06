"""A council provisioned end to end through the four workers, on the real broker and database."""

from __future__ import annotations

import asyncpg
import pytest

from services.isolation.plan import tenants_group
from services.onboarding.service import RequestRefused
from shared import db
from shared.identifiers import service_database_name, tenant_object_name
from tests.harness import Client


async def test_council_becomes_active_with_schema_role_theme_and_meters(platform: Client) -> None:
    tenancy_id = await platform.onboard("E09000012")

    found = await platform.wait_for(tenancy_id)

    assert found["state"] == "active", found
    assert found["council"] == "E09000012"
    assert {s["step"]: s["status"] for s in found["steps"]} == {
        "isolation": "done",
        "branding": "done",
        "metering": "done",
    }
    pool = platform.pool
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM metering.meters WHERE tenancy_id = $1", tenancy_id
        )
        == 2
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM branding.brand_versions WHERE tenancy_id = $1", tenancy_id
        )
        == 1
    )


async def test_tenant_role_reaches_its_own_schema_only(platform: Client) -> None:
    first = await platform.onboard("E08000025")  # Birmingham
    second = await platform.onboard("W06000015")  # Cardiff
    for tenancy in (first, second):
        assert (await platform.wait_for(tenancy))["state"] == "active"

    database = service_database_name(
        db.database_name(platform.slice.database_url), "bin-collections"
    )
    service_dsn = db.with_database(platform.slice.server_dsn, database)
    admin = await asyncpg.connect(service_dsn)
    try:
        password = await admin.fetchval(
            "SELECT password FROM tenancy_platform.tenants WHERE tenancy_id = $1", first
        )
    finally:
        await admin.close()
    role = tenant_object_name(first)
    other_schema = tenant_object_name(second)
    tenant = await asyncpg.connect(
        db.with_database(platform.slice.server_dsn, database).replace(
            "postgres@", f"{role}:{password}@"
        )
    )
    try:
        await tenant.execute(
            "INSERT INTO missed_bin_reports (uprn, container) VALUES (100023336956, 'refuse')"
        )
        assert await tenant.fetchval("SELECT count(*) FROM missed_bin_reports") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant.fetch(f'SELECT * FROM "{other_schema}".missed_bin_reports')
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant.execute("CREATE TABLE public.sneaky (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant.fetch("SELECT * FROM tenancy_platform.tenants")
        # It connects through the tenants' group, but can never act as the group.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await tenant.execute(f"SET ROLE {tenants_group(database)}")
    finally:
        await tenant.close()
    # One grant for all tenants: the database's ACL does not grow with each one.
    acl = await platform.pool.fetchval(
        "SELECT datacl::text FROM pg_database WHERE datname = $1", database
    )
    assert tenants_group(database) in acl
    assert role not in acl
    assert other_schema not in acl


async def test_failing_service_sql_fails_the_tenancy_visibly(platform: Client) -> None:
    tenancy_id = await platform.onboard("E06000060", service="broken-migration")

    found = await platform.wait_for(tenancy_id)

    assert found["state"] == "failed"
    assert found["failed_step"] == "isolation"
    assert "migration 2" in found["reason"]
    assert "no_such_table" in found["reason"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("E99999999", "not a known UK local authority GSS code"),
        ("hackney", "is not a GSS code"),
        ("E07000026", "ceased to exist on 2023-04-01; it was replaced by Cumberland Council"),
    ],
)
async def test_bad_council_codes_are_refused_with_a_reason(
    platform: Client, code: str, expected: str
) -> None:
    with pytest.raises(RequestRefused, match=expected):
        await platform.onboard(code)


async def test_former_gss_code_resolves_to_the_current_council(platform: Client) -> None:
    tenancy_id = await platform.onboard("S12000015")  # Fife's code before 2018
    found = await platform.wait_for(tenancy_id)
    assert found["council"] == "S12000047"
    assert found["council_name"] == "Fife Council"


async def test_unknown_service_and_second_live_tenancy_are_refused(platform: Client) -> None:
    with pytest.raises(RequestRefused, match="'no-such-service' is not in the catalogue"):
        await platform.onboard("E09000001", service="no-such-service")
    first = await platform.onboard("E09000002")
    with pytest.raises(RequestRefused, match=f"already has tenancy {first}"):
        await platform.onboard("E09000002")
