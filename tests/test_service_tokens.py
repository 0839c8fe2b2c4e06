"""Service tokens: the token a shared service's software uses, narrowed to its one service. It
fetches its tenancies' own database logins (and fetches them again after a rotation) and
reports their usage; every other endpoint, and the web pages, refuse it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio

from api.tokens import Role, authenticate
from shared.identifiers import tenant_object_name
from tests.conftest import Api
from tests.harness import Client, cli
from tests.test_usage_http import joined
from tests.test_web_support import Browserless, text_of

SERVICE = "credentials-drill"  # schema tier
# Councils no other test module uses.
MAIN, LEAVING, BINS = "E06000027", "E08000009", "E07000103"  # Torbay, Trafford, Watford


@dataclass
class World:
    tenancy: str  # an active credentials-drill tenancy
    offboarded: str  # one that left
    other: str  # an active bin-collections tenancy
    service: dict[str, str]  # credentials-drill's service token


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(platform: Client, api: Api) -> World:
    tenancy, left, other = await joined(platform, SERVICE, MAIN, LEAVING, BINS)
    return World(tenancy, left, other, await api.token("service", service=SERVICE))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


def path(tenancy_id: str, service: str = SERVICE) -> str:
    return f"/services/{service}/tenancies/{tenancy_id}/credentials"


def password_of(dsn: str) -> str:
    password = urlsplit(dsn).password
    assert password
    return unquote(password)


async def test_a_service_gets_a_login_that_works_and_is_never_cached_nor_logged(
    world: World, http: httpx.AsyncClient, api: Api
) -> None:
    logged = len(api.process.output())
    answer = await http.get(path(world.tenancy), headers=world.service)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    found = answer.json()
    role = tenant_object_name(world.tenancy)
    assert {k: v for k, v in found.items() if k != "dsn"} == {
        "tenancy_id": world.tenancy,
        "service_id": SERVICE,
        "tier": "schema",
        "database": found["database"],
        "schema": role,
        "role": role,
        "rotated_at": None,
    }
    assert found["database"].endswith("_credentials_drill")
    tenant = await asyncpg.connect(found["dsn"])
    try:
        assert await tenant.fetchval("SELECT current_user") == role
        assert await tenant.fetchval("SELECT current_database()") == found["database"]
    finally:
        await tenant.close()

    output = api.process.output()[logged:]
    assert password_of(found["dsn"]) not in output
    fetched = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and "credentials fetched" in line
    ]
    assert [e["tenancy_id"] for e in fetched] == [world.tenancy]
    async with api.pool.acquire() as conn:
        principal = await authenticate(conn, world.service["Authorization"].split()[1])
    assert principal is not None
    assert fetched[0]["caller"] == principal.token_id


async def test_another_services_or_an_unknown_tenancy_looks_missing(
    world: World, http: httpx.AsyncClient, platform: Client
) -> None:
    unisolated = str(uuid.uuid4())  # requested and registered, not yet isolated
    await platform.pool.execute(
        "INSERT INTO onboarding.tenancies (id, council_gss, council_name, service_id, state,"
        " contact) VALUES ($1, 'E07000229', 'Worthing', $2, 'registered', '{}')",
        unisolated,
        SERVICE,
    )
    missing = str(uuid.uuid4())
    try:
        for where in (
            path(world.other),  # bin-collections' tenancy, asked for as credentials-drill's
            path(world.other, "bin-collections"),  # ...and under its own service
            path(world.tenancy, "bin-collections"),
            path(missing),
            path(unisolated),
            path(world.offboarded),
        ):
            answer = await http.get(where, headers=world.service)
            assert answer.status_code == 404, (where, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            tenancy_id = where.split("/")[4]
            assert answer.json()["detail"] == f"no tenancy {tenancy_id}"
    finally:  # not left for the onboarding worker to re-drive
        await platform.pool.execute("DELETE FROM onboarding.tenancies WHERE id = $1", unisolated)
    malformed = await http.get(path("not-a-tenancy"), headers=world.service)
    assert malformed.status_code == 422


async def test_people_may_not_fetch_a_tenancys_login(
    world: World, http: httpx.AsyncClient, api: Api
) -> None:
    assert (await http.get(path(world.tenancy))).status_code == 401
    for role, council in (
        ("operator", None),
        ("operator", "E09000012"),  # even the council that runs the service
        ("council-admin", MAIN),  # or the council whose tenancy it is
        ("finance", None),
        ("auditor", None),
    ):
        answer = await http.get(path(world.tenancy), headers=await api.token(role, council))
        assert answer.status_code == 403, (role, answer.text)
        assert "service" in answer.json()["detail"]


async def test_after_a_rotation_the_new_password_is_fetched(
    world: World, http: httpx.AsyncClient, platform: Client
) -> None:
    before = (await http.get(path(world.tenancy), headers=world.service)).json()
    rotated = await cli(platform.slice, "credentials", world.tenancy, "--rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr

    after = (await http.get(path(world.tenancy), headers=world.service)).json()
    assert after["dsn"] == json.loads(rotated.stdout)["dsn"]
    assert password_of(after["dsn"]) != password_of(before["dsn"])
    assert after["rotated_at"] is not None
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(before["dsn"])
    tenant = await asyncpg.connect(after["dsn"])
    try:
        assert await tenant.fetchval("SELECT current_user") == tenant_object_name(world.tenancy)
    finally:
        await tenant.close()


ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/services", None),
    ("POST", "/services", {}),
    ("POST", "/tenancies", {}),
    ("GET", "/tenancies", None),
    ("GET", "/tenancies/{id}", None),
    ("POST", "/tenancies/{id}/retry", None),
    ("POST", "/tenancies/{id}/offboard", {}),
    ("POST", "/tenancies/{id}/brand", {}),
    ("GET", "/tenancies/{id}/usage", None),
    ("GET", "/invoices", None),
    ("GET", "/audit", None),
    ("GET", "/audit/verify", None),
]


@pytest.mark.parametrize(("method", "where", "body"), ENDPOINTS)
async def test_a_service_token_may_use_no_other_endpoint(
    world: World, http: httpx.AsyncClient, method: str, where: str, body: Any
) -> None:
    answer = await http.request(
        method, where.replace("{id}", world.tenancy), json=body, headers=world.service
    )
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "a service token cannot do this" in answer.json()["detail"]


async def test_a_service_token_cannot_sign_in_to_the_pages(world: World, api: Api) -> None:
    token = world.service["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        code = await web.csrf("/sign-in")
        refused = await web.post("/sign-in", {"csrf_token": code, "token": token, "next": "/"})
        assert refused.status_code == 400
        assert "This is a service token" in text_of(refused.text)
        assert "tenancy_session" not in web.cookies
        # A session cookie that holds one anyway is not a sign-in.
        web.cookies["tenancy_session"] = token
        page = await web.get("/find-a-service")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/sign-in")


async def test_a_service_token_is_made_for_exactly_one_service(platform: Client) -> None:
    refused = await cli(platform.slice, "tokens", "create", "--role", "service")
    assert refused.returncode == 1
    assert "service: a service token needs --service" in " ".join(refused.stderr.split())
    both = await cli(
        platform.slice,
        "tokens", "create", "--role", "service", "--service", SERVICE, "--council", MAIN,
    )  # fmt: skip
    assert both.returncode == 1
    assert "leave out --council" in " ".join(both.stderr.split())
    bad = await cli(platform.slice, "tokens", "create", "--role", "service", "--service", "X y")
    assert bad.returncode == 1
    assert "is not a service id" in " ".join(bad.stderr.split())

    made = await cli(
        platform.slice, "tokens", "create", "--role", "service", "--service", SERVICE, "--json"
    )
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    assert shown["role"] == "service"
    async with platform.pool.acquire() as conn:
        principal = await authenticate(conn, shown["token"])
        assert principal is not None
        assert (principal.role, principal.service, principal.council) == (
            Role.SERVICE,
            SERVICE,
            None,
        )
        # The database holds the rule too.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO api.tokens (id, token_sha256, role) VALUES ($1, 'x', 'service')",
                uuid.uuid4(),
            )
