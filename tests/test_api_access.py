"""Who may call what on the operator API, as a table: every role against every endpoint, then
the rules behind the table: another council's tenancy is a 404 indistinguishable from a missing
one, errors are RFC 9457 problems that name the field and the rule, and a ``202`` is durable.

The tests share one world, built once per module on the session's platform: council A and B in
bin-collections, and drill services of this module's own (so offboarding and retrying here never
touch a tenancy another test counts on)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from api.tokens import Role, create, revoke
from services.onboarding.repository import CatalogueRepository
from shared.catalogue import ServiceManifest
from tests.conftest import Api
from tests.harness import Client

# Councils no other test module uses (each council holds one live tenancy per service).
A, B, C, D, JOINER = "E06000036", "E06000037", "E06000038", "E06000039", "E06000040"
OWNER = "E09000012"  # runs bin-collections and this module's drill services
OTHER_OWNER = "E08000025"  # runs planning-comments, nothing of the above


def drill(service_id: str, *migrations: str) -> dict[str, Any]:
    return {
        "id": service_id,
        "name": f"API access drill ({service_id}, test)",
        "owner_council": OWNER,
        "isolation": "schema",
        "migrations": [{"version": n, "sql": sql} for n, sql in enumerate(migrations, 1)],
        "meters": [{"key": "notes"}],
    }


NOTES = "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)"
JOIN = drill("api-access-join", NOTES)  # POST /tenancies in the matrix creates tenancies here
LEAVE = drill("api-access-leave", NOTES)  # active tenancies the matrix offboards
BROKEN = drill("api-access-broken", NOTES, "ALTER TABLE no_such_table ADD COLUMN x int")
BRAND = {"name": "Bracknell Forest Council", "colours": {"primary": "#00664F"}}

# The callers of the matrix: (role, council scope) or, for the last three, no valid token.
CALLERS: dict[str, tuple[str, str | None] | None] = {
    "operator": ("operator", None),
    "operator@owner": ("operator", OWNER),
    "operator@other": ("operator", OTHER_OWNER),
    "admin-A": ("council-admin", A),
    "admin-B": ("council-admin", B),
    "finance": ("finance", None),
    "auditor": ("auditor", None),
    "no token": None,
    "revoked": None,
    "unknown": None,
}

ENDPOINTS = (
    "GET /services",
    "POST /services",
    "POST /tenancies",
    "GET /tenancies",
    "GET /tenancies/{id}",
    "POST retry",
    "POST offboard",
    "POST brand",
    "GET usage",
    "GET /invoices",
    "GET /audit",
    "GET /audit/verify",
)
NO = (401,) * len(ENDPOINTS)
# The policy at a glance. Tenancy endpoints aim at council A's tenancies (owned by E09000012):
# a role that may never call an endpoint gets 403 first; a role that may, but whose scope does
# not cover the tenancy, gets 404 as if it did not exist.
#                      svc  reg  join list show retry leave brand usage inv audit verify
POLICY: dict[str, tuple[int, ...]] = {
    "operator":       (200, 201, 202, 200, 200, 202, 202, 202, 200, 200, 403, 403),
    "operator@owner": (200, 201, 202, 200, 200, 202, 202, 202, 200, 200, 403, 403),
    "operator@other": (200, 403, 403, 200, 404, 404, 404, 404, 404, 200, 403, 403),
    "admin-A":        (200, 403, 202, 200, 200, 403, 202, 202, 200, 200, 403, 403),
    "admin-B":        (200, 403, 403, 200, 404, 403, 404, 404, 404, 200, 403, 403),
    "finance":        (200, 403, 403, 200, 200, 403, 403, 403, 200, 200, 403, 403),
    "auditor":        (200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 200, 200),
    "no token":       NO,
    "revoked":        NO,
    "unknown":        NO,
}  # fmt: skip
assert set(POLICY) == set(CALLERS)
assert all(len(row) == len(ENDPOINTS) for row in POLICY.values())


@dataclass
class World:
    headers: dict[str, dict[str, str]]  # caller -> Authorization header (or none)
    main: dict[str, str]  # council -> its active bin-collections tenancy
    leaving: dict[str, str]  # council -> its active api-access-leave tenancy
    broken: dict[str, str]  # council -> its failed api-access-broken tenancy


async def onboarded(platform: Client, service: str, councils: tuple[str, ...]) -> dict[str, str]:
    return {council: await platform.onboard(council, service=service) for council in councils}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(platform: Client, api: Api) -> World:
    async with api.pool.acquire() as conn:
        for manifest in (JOIN, LEAVE, BROKEN):
            await CatalogueRepository(conn).upsert(ServiceManifest.model_validate(manifest))
        revoked, principal = await create(conn, Role.OPERATOR, None, None, "tests: revoked")
        assert await revoke(conn, principal.token_id)
    headers: dict[str, dict[str, str]] = {
        "no token": {},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "unknown": {"Authorization": f"Bearer tny_{uuid.uuid4().hex}"},
    }
    for caller, scope in CALLERS.items():
        if scope is not None:
            headers[caller] = await api.token(scope[0], council=scope[1])
    main = await onboarded(platform, "bin-collections", (A, B))
    leaving = await onboarded(platform, "api-access-leave", (A, C, D))
    broken = await onboarded(platform, "api-access-broken", (A, C, D))
    # Provisioning runs in parallel on the workers; wait for all of it at once.
    ends = await asyncio.gather(
        *(platform.wait_for(t) for t in [*main.values(), *leaving.values(), *broken.values()])
    )
    assert [e["state"] for e in ends] == ["active"] * 5 + ["failed"] * 3, ends
    return World(headers, main, leaving, broken)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


# The allowed operators and council A's admin act on tenancies of their own, so that each
# retry and offboarding in the table meets a tenancy in the state it needs.
OWN_COUNCIL = {"operator": C, "operator@owner": D}


def request(world: World, caller: str, endpoint: str) -> tuple[str, str, dict[str, Any] | None]:
    council = OWN_COUNCIL.get(caller, A)
    main = world.main[A]
    joining = {
        "council": council,
        "service": "api-access-join",
        "acceptance": {"agreement_version": "1", "name": "Alex Kay", "role": "Head of IT"},
    }
    return {
        "GET /services": ("GET", "/services", None),
        "POST /services": ("POST", "/services", JOIN),
        "POST /tenancies": ("POST", "/tenancies", joining),
        "GET /tenancies": ("GET", "/tenancies", None),
        "GET /tenancies/{id}": ("GET", f"/tenancies/{main}", None),
        "POST retry": ("POST", f"/tenancies/{world.broken[council]}/retry", None),
        "POST offboard": ("POST", f"/tenancies/{world.leaving[council]}/offboard", {}),
        "POST brand": ("POST", f"/tenancies/{main}/brand", BRAND),
        "GET usage": ("GET", f"/tenancies/{main}/usage", None),
        "GET /invoices": ("GET", "/invoices", None),
        "GET /audit": ("GET", "/audit", None),
        "GET /audit/verify": ("GET", "/audit/verify", None),
    }[endpoint]


@pytest.mark.parametrize(
    ("caller", "endpoint", "expected"),
    [
        pytest.param(caller, endpoint, status, id=f"{caller}-{endpoint}")
        for caller, row in POLICY.items()
        for endpoint, status in zip(ENDPOINTS, row, strict=True)
    ],
)
async def test_the_access_matrix(
    world: World, http: httpx.AsyncClient, caller: str, endpoint: str, expected: int
) -> None:
    method, path, body = request(world, caller, endpoint)
    answer = await http.request(method, path, json=body, headers=world.headers[caller])
    assert answer.status_code == expected, f"{caller} {method} {path}: {answer.text}"
    if expected >= 400:
        assert answer.headers["content-type"] == "application/problem+json"
    if expected == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def anonymised(answer: httpx.Response, tenancy_id: str) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()
    return {k: v.replace(tenancy_id, "<id>") if isinstance(v, str) else v for k, v in body.items()}


async def test_another_councils_tenancy_looks_exactly_like_a_missing_one(
    world: World, http: httpx.AsyncClient
) -> None:
    admin = world.headers["admin-A"]
    theirs, missing = world.main[B], str(uuid.uuid4())
    actions: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "", None),
        ("GET", "/usage", None),
        ("POST", "/offboard", {"reason": "guessing"}),
        ("POST", "/brand", BRAND),
        ("POST", "/retry", None),  # not a council admin's action: 403 for both, before lookup
    ]
    for method, suffix, body in actions:
        answers = [
            await http.request(method, f"/tenancies/{t}{suffix}", json=body, headers=admin)
            for t in (theirs, missing)
        ]
        assert [a.status_code for a in answers] == [403 if suffix == "/retry" else 404] * 2
        assert anonymised(answers[0], theirs) == anonymised(answers[1], missing), suffix
        assert without_date(answers[0]) == without_date(answers[1]), suffix
    assert await state_of(http, world, theirs) == "active"  # nothing happened to it

    mine = (await http.get("/tenancies", headers=admin)).json()
    assert {t["council"] for t in mine} == {A}
    assert {world.main[A], world.leaving[A], world.broken[A]} <= {t["id"] for t in mine}
    assert all(t["council_gss"] == A for t in (await http.get("/invoices", headers=admin)).json())

    joining = {
        "council": B,
        "service": "bin-collections",
        "acceptance": {"agreement_version": "1", "name": "Alex Kay", "role": "Head of IT"},
    }
    refused = await http.post("/tenancies", json=joining, headers=admin)
    assert refused.status_code == 403, refused.text
    assert A in refused.json()["detail"]


def without_date(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k != "date"}


async def state_of(http: httpx.AsyncClient, world: World, tenancy_id: str) -> str:
    answer = await http.get(f"/tenancies/{tenancy_id}", headers=world.headers["operator"])
    assert answer.status_code == 200, answer.text
    state: str = answer.json()["state"]
    return state


async def test_an_operator_of_another_council_neither_sees_nor_takes_over_its_services(
    world: World, http: httpx.AsyncClient, api: Api
) -> None:
    other = world.headers["operator@other"]
    assert (await http.get(f"/tenancies/{world.main[A]}", headers=other)).status_code == 404
    listed = (await http.get("/tenancies", headers=other)).json()
    assert not {t["service"] for t in listed} & {"bin-collections", "api-access-leave"}

    async with api.pool.acquire() as conn:
        original = await CatalogueRepository(conn).get("bin-collections")
    assert original is not None
    as_is = original.model_dump(mode="json")
    hijack = {**as_is, "owner_council": OTHER_OWNER, "name": "Not Hackney's any more"}
    try:
        for manifest in (as_is, hijack):
            answer = await http.post("/services", json=manifest, headers=other)
            assert answer.status_code == 403, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
    finally:
        # Were the hijack let through, every other test's bin-collections would be broken.
        async with api.pool.acquire() as conn:
            if await CatalogueRepository(conn).get("bin-collections") != original:
                await CatalogueRepository(conn).upsert(original)
    shown = {s["id"]: s for s in (await http.get("/services", headers=other)).json()}
    assert shown["bin-collections"]["owner"]["gss"] == OWNER


PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}
ACCEPTANCE = {"agreement_version": "1", "name": "Alex Kay", "role": "Head of IT"}
# (caller, method, path, body, status, words the detail must contain)
PROBLEMS: list[tuple[str, str, str, Any, int, tuple[str, ...]]] = [
    ("no token", "GET", "/tenancies", None, 401, ("Bearer",)),
    ("unknown", "GET", "/services", None, 401, ("not known",)),
    ("auditor", "POST", "/tenancies", {}, 403, ("auditor",)),
    ("operator", "GET", f"/tenancies/{uuid.UUID(int=7)}", None, 404, (str(uuid.UUID(int=7)),)),
    ("operator", "GET", "/tenancies/not-a-uuid", None, 422, ("tenancy_id",)),
    ("operator", "DELETE", "/services", None, 405, ()),
    ("operator", "POST", "/tenancies", {"council": JOINER, "service": "bin-collections"}, 422,
     ("acceptance", "required")),
    ("operator", "POST", "/tenancies",
     {"council": JOINER, "service": "bin-collections",
      "acceptance": {**ACCEPTANCE, "agreement_version": "2"}}, 422,
     ("acceptance.agreement_version", "version 1", "'2'")),
    ("operator", "POST", "/tenancies",
     {"council": "X123", "service": "bin-collections", "acceptance": ACCEPTANCE}, 422,
     ("council", "not a GSS code")),
    ("operator", "POST", "/tenancies",
     {"council": "E99999999", "service": "bin-collections", "acceptance": ACCEPTANCE}, 422,
     ("council", "not a known")),
    ("operator", "POST", "/tenancies",
     {"council": JOINER, "service": "no-such-service", "acceptance": ACCEPTANCE}, 422,
     ("service", "not in the catalogue")),
    ("operator", "POST", "/tenancies",
     {"council": JOINER, "service": "bin-collections", "acceptance": ACCEPTANCE, "sneaky": 1},
     422, ("sneaky", "xtra")),
    ("operator", "POST", "/tenancies",
     {"council": JOINER, "service": "bin-collections", "acceptance": ACCEPTANCE,
      "brand": {"name": "X", "colours": {"primary": "#FFFF00"}}}, 422,
     ("brand.",)),
    ("operator", "GET", "/tenancies", {"limit": 0}, 422, ("limit",)),
    ("finance", "GET", "/invoices?period=2026-13", None, 422, ("2026-13",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("caller", "method", "path", "body", "status", "words"),
    [pytest.param(*p, id=f"{p[4]}-{p[1]} {p[2]}-{i}") for i, p in enumerate(PROBLEMS)],
)
async def test_errors_are_problem_details_that_name_the_field_and_rule(
    world: World,
    http: httpx.AsyncClient,
    caller: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    words: tuple[str, ...],
) -> None:
    headers = world.headers[caller]
    if method == "GET" and isinstance(body, dict):
        answer = await http.get(path, params=body, headers=headers)
    else:
        answer = await http.request(method, path, json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert set(problem) >= PROBLEM_KEYS, problem
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    assert problem["instance"] == path.split("?")[0]
    assert problem["title"]
    assert problem["detail"]
    for word in words:
        assert word in problem["detail"], problem
    if status == 422 and "errors" in problem:
        # Each error names where it is ("field: rule"), and the detail is all of them.
        assert all(": " in e for e in problem["errors"]), problem
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_a_refused_request_leaves_nothing_behind(
    world: World, http: httpx.AsyncClient, api: Api
) -> None:
    wrong = {
        "council": JOINER,
        "service": "bin-collections",
        "acceptance": {**ACCEPTANCE, "agreement_version": "0.9"},
    }
    count = "SELECT count(*) FROM onboarding.tenancies WHERE council_gss = $1"
    before = await api.pool.fetchval(count, JOINER)
    answer = await http.post("/tenancies", json=wrong, headers=world.headers["operator"])
    assert answer.status_code == 422, answer.text
    assert await api.pool.fetchval(count, JOINER) == before


async def test_an_acknowledged_request_is_never_lost(
    world: World, http: httpx.AsyncClient, api: Api, platform: Client
) -> None:
    joining = {"council": JOINER, "service": "bin-collections", "acceptance": ACCEPTANCE}
    answer = await http.post("/tenancies", json=joining, headers=world.headers["operator"])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert answer.headers["location"] == body["status_url"] == f"/tenancies/{body['id']}"
    # The 202 is sent after the commit: the row and its event are stored before anything runs.
    row = await api.pool.fetchrow(
        "SELECT council_gss, service_id, state FROM onboarding.tenancies WHERE id = $1",
        body["id"],
    )
    assert row is not None
    assert (row["council_gss"], row["service_id"]) == (JOINER, "bin-collections")
    queued = await api.pool.fetchval(
        "SELECT count(*) FROM onboarding.outbox WHERE key = $1", body["id"]
    )
    assert queued >= 1
    found = await platform.wait_for(body["id"])
    assert found["state"] == "active", found
    assert await state_of(http, world, body["id"]) == "active"
