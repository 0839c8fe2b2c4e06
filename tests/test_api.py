"""The operator API as a new user meets it: an operator registers a service, a council admin
accepts its agreement and joins, follows it to active, sees no other council; an auditor
checks the chain, and a tampered entry is found."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.conftest import Api
from tests.harness import Client
from tests.harness import cli as tenancy

MANIFEST: dict[str, Any] = {
    "id": "street-lighting",
    "name": "Street lighting faults",
    "owner_council": "E06000047",
    "governance": "hosted",
    "isolation": "pooled",
    "agreement": {"version": "2", "title": "Street lighting data sharing agreement"},
    "migrations": [{"version": 1, "sql": "CREATE TABLE faults (id bigint PRIMARY KEY)"}],
    "meters": [{"key": "faults", "aggregation": "count", "unit": "fault"}],
}


async def follow(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(300):
        answer = await http.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        if found["state"] in {"active", "failed"}:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not finished: {found}")


async def test_a_council_joins_through_the_api_and_sees_only_its_own(
    platform: Client, api: Api
) -> None:
    operator = await api.token("operator", council="E06000047")
    admin = await api.token("council-admin", council="E06000049")
    async with httpx.AsyncClient(base_url=api.url) as http:
        registered = await http.post("/services", json=MANIFEST, headers=operator)
        assert registered.status_code == 201, registered.text
        listed = {s["id"]: s for s in (await http.get("/services", headers=admin)).json()}
        shown = listed["street-lighting"]
        assert shown["owner"] == {"gss": "E06000047", "name": "Durham County Council (E06000047)"}
        assert shown["governance"] == "hosted"
        assert shown["agreement"]["version"] == "2"

        request = {
            "council": "E06000049",
            "service": "street-lighting",
            "acceptance": {"agreement_version": "2", "name": "Sam Patel", "role": "Head of IT"},
        }
        without = await http.post(
            "/tenancies", json={k: v for k, v in request.items() if k != "acceptance"},
            headers=admin,
        )  # fmt: skip
        assert without.status_code == 422
        assert without.headers["content-type"] == "application/problem+json"
        assert "acceptance" in without.json()["detail"]

        joined = await http.post("/tenancies", json=request, headers=admin)
        assert joined.status_code == 202, joined.text
        body = joined.json()
        assert joined.headers["location"] == body["status_url"]
        found = await follow(http, body["status_url"], admin)
        assert found["state"] == "active", found
        steps = [t["step"] for t in found["timeline"]]
        assert steps[0] == "requested"
        assert steps[-1] == "active"
        assert {"isolation", "branding", "metering"} <= set(steps)
        assert all(t["after_seconds"] >= 0 for t in found["timeline"])

        stored = await platform.pool.fetchval(
            "SELECT acceptance FROM onboarding.tenancies WHERE id = $1", body["id"]
        )
        assert stored["name"] == "Sam Patel"
        assert stored["agreement_version"] == "2"

        other = await platform.onboard("E06000050", service="street-lighting")
        await platform.wait_for(other)
        mine = [t["id"] for t in (await http.get("/tenancies", headers=admin)).json()]
        assert mine == [body["id"]]
        hidden = await http.get(f"/tenancies/{other}", headers=admin)
        assert hidden.status_code == 404


async def test_every_change_is_in_the_audit_trail_and_tampering_is_found(
    platform: Client, api: Api
) -> None:
    operator = await api.token("operator")
    auditor = await api.token("auditor")
    async with httpx.AsyncClient(base_url=api.url) as http:
        joined = await http.post(
            "/tenancies",
            json={
                "council": "E06000051",
                "service": "bin-collections",
                "acceptance": {"agreement_version": "1", "name": "Ola Ade", "role": "CDO"},
            },
            headers=operator,
        )
        assert joined.status_code == 202, joined.text
        tenancy_id = joined.json()["id"]
        await follow(http, f"/tenancies/{tenancy_id}", operator)
        forbidden = await http.get("/audit", headers=operator)
        assert forbidden.status_code == 403
        trail = await http.get("/audit", params={"tenancy": tenancy_id}, headers=auditor)
        actions = [e["action"] for e in trail.json()]
        assert actions[0] == "onboard"
        assert "tenancy.registered" in actions
        assert actions[-1] == "tenancy.active"
        first = trail.json()[0]
        assert first["actor"].startswith("token:")
        assert first["trace_id"]
        verified = (await http.get("/audit/verify", headers=auditor)).json()
        assert verified["ok"], verified

        # A superuser quietly rewrites history: the chain names the entry.
        seq = first["seq"]
        async with platform.pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE audit.log DISABLE TRIGGER log_append_only")
            await conn.execute("UPDATE audit.log SET actor = 'someone else' WHERE seq = $1", seq)
            await conn.execute("ALTER TABLE audit.log ENABLE TRIGGER log_append_only")
        try:
            broken = (await http.get("/audit/verify", headers=auditor)).json()
            assert not broken["ok"]
            assert broken["broken_seq"] == seq
            checked = await tenancy(platform.slice, "audit", "verify", "--json")
            assert checked.returncode == 1
            assert json.loads(checked.stdout)["broken_seq"] == seq
        finally:
            async with platform.pool.acquire() as conn, conn.transaction():
                await conn.execute("ALTER TABLE audit.log DISABLE TRIGGER log_append_only")
                await conn.execute(
                    "UPDATE audit.log SET actor = $2 WHERE seq = $1", seq, first["actor"]
                )
                await conn.execute("ALTER TABLE audit.log ENABLE TRIGGER log_append_only")
        assert (await http.get("/audit/verify", headers=auditor)).json()["ok"]


async def test_the_cli_calls_the_api_with_a_token(platform: Client, api: Api) -> None:
    header = await api.token("operator")
    token = header["Authorization"].removeprefix("Bearer ")
    env = {"API_URL": api.url, "TENANCY_TOKEN": token}
    listed = await tenancy(platform.slice, "api", "GET", "/services", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "bin-collections" in {s["id"] for s in json.loads(listed.stdout)}
    refused = await tenancy(platform.slice, "api", "GET", "/audit", env=env)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["status"] == 403


async def test_a_token_is_never_stored_logged_or_audited(platform: Client, api: Api) -> None:
    """Promise 5: the token is shown once, to whoever made it; the platform keeps its hash."""
    header = await api.token("council-admin", council="E06000052")
    token = header["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=api.url) as http:
        await http.get("/tenancies", headers=header)
        await http.post(
            "/tenancies",
            json={
                "council": "E06000052",
                "service": "bin-collections",
                "acceptance": {"agreement_version": "1", "name": "Kim Lee", "role": "CIO"},
            },
            headers=header,
        )
        await http.get("/audit", headers=header)  # refused, and logged as such if at all
    async with platform.pool.acquire() as conn:
        audited = await conn.fetchval("SELECT string_agg(t::text, '') FROM audit.log t")
        stored = await conn.fetchval("SELECT string_agg(t::text, '') FROM api.tokens t")
    assert token not in audited
    assert token not in stored
    assert token not in api.process.output()
    assert token not in (platform.slice.root / "spans.jsonl").read_text()
