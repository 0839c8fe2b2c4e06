"""`tenancy reorganise plan` and the API's reorganisations, over tenancies onboarded for real
(Surrey councils, in a service of each isolation tier) and the register with Surrey's 2027
reorganisation added (tests.test_reorganisation.surrey_csv)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.tokens import Role, create
from stack.ports import free_port
from tests.harness import Client, WorkerProcess, cli, onboarded
from tests.test_reorganisation import ISSUED, SURREY_VESTING, surrey_csv
from tests.test_web_support import Browserless, text_of


@dataclass
class Surrey:
    csv: Path
    east: list[str]  # Elmbridge and Reigate and Banstead in bin-collections (schema)
    west: list[str]  # Guildford in planning-comments (pooled)
    county: list[str]  # Surrey County Council in parking-permits (database)


@pytest.fixture(scope="module")
async def surrey(platform: Client, tmp_path_factory: pytest.TempPathFactory) -> Surrey:
    return Surrey(
        surrey_csv(tmp_path_factory.mktemp("surrey"), ISSUED),
        await onboarded(platform, "bin-collections", ("E07000207", "E07000211")),
        await onboarded(platform, "planning-comments", ("E07000209",)),
        await onboarded(platform, "parking-permits", ("E10000030",)),
    )


async def reorganise(platform: Client, surrey: Surrey, *args: str) -> Any:
    env = {"COUNCILS_CSV": str(surrey.csv), "COLUMNS": "250"}
    return await cli(platform.slice, "reorganise", "plan", *args, env=env)


def ours(plan: dict[str, Any], surrey: Surrey) -> dict[str, dict[str, Any]]:
    """The plan's tenancies this module onboarded (other tests share the platform)."""
    mine = set(surrey.east + surrey.west + surrey.county)
    return {t["tenancy_id"]: t for t in plan["tenancies"] if t["tenancy_id"] in mine}


async def test_cli_plans_every_surrey_tenancy_in_each_tier(
    platform: Client, surrey: Surrey
) -> None:
    result = await reorganise(platform, surrey, "--on", "2027-04-01", "--host", "SRY=ESU", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["vesting"] == "2027-04-01"
    assert plan["predecessors_close_at"] == "2027-03-31T23:00:00+00:00"
    found = ours(plan, surrey)
    assert len(found) == 4
    elmbridge, reigate = (found[t] for t in surrey.east)
    guildford, county = found[surrey.west[0]], found[surrey.county[0]]
    assert {t["readiness"] for t in found.values()} == {"ready"}
    assert (elmbridge["kind"], elmbridge["successor"]["register_code"]) == ("merge", "ESU")
    # Both East districts land in the one tenancy made for East Surrey in bin-collections.
    assert elmbridge["target_tenancy_id"] == reigate["target_tenancy_id"]
    assert guildford["successor"]["register_code"] == "WSU"
    assert (county["kind"], county["successor"]["register_code"]) == ("split", "ESU")
    assert [p["register_code"] for p in county["served"]] == ["WSU"]
    isolation = {
        t["isolation"]: next(s["action"] for s in t["steps"] if s["worker"] == "isolation")
        for t in found.values()
    }
    assert isolation == {
        "schema": "copy-schema-rows",
        "pooled": "retag-pooled-rows",
        "database": "copy-database-rows",
    }

    shown = await reorganise(platform, surrey, "--on", "2027-04-01")
    assert shown.returncode == 0, shown.stderr
    assert "Elmbridge Borough Council (E07000207) in bin-collections (schema)" in shown.stdout
    assert "name a split's host with --host PREDECESSOR=SUCCESSOR" in shown.stdout


async def test_cli_refuses_what_it_cannot_plan_naming_the_rule(
    platform: Client, surrey: Surrey
) -> None:
    bad_day = await reorganise(platform, surrey, "--on", "1 April 2027")
    assert bad_day.returncode != 0
    assert "on: '1 April 2027' is not a date written YYYY-MM-DD" in bad_day.stderr
    bad_host = await reorganise(platform, surrey, "--on", "2027-04-01", "--host", "SRY=CBD")
    assert bad_host.returncode != 0
    assert "host: Cumberland Council (E06000063) does not succeed Surrey" in " ".join(
        bad_host.stderr.split()
    )
    quiet = await reorganise(platform, surrey, "--on", "2026-04-01")
    assert quiet.returncode == 0, quiet.stderr
    assert "no council is replaced on 2026-04-01" in quiet.stdout


@pytest.fixture(scope="module")
async def api_url(platform: Client, surrey: Surrey) -> AsyncIterator[str]:
    """The API as a process of its own, reading the register with Surrey reorganised."""
    port = free_port()
    env = {"API_PORT": str(port), "COUNCILS_CSV": str(surrey.csv)}
    process = WorkerProcess("api-surrey", platform.slice, env, module="api", ready="api ready")
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


async def bearer(platform: Client, role: Role, council: str | None = None) -> dict[str, str]:
    async with platform.pool.acquire() as conn:
        token, _ = await create(conn, role, council, None, "tests")
    return {"Authorization": f"Bearer {token}"}


async def test_api_shows_operators_the_coming_reorganisations_and_their_plan(
    platform: Client, surrey: Surrey, api_url: str
) -> None:
    operator = await bearer(platform, Role.OPERATOR)
    async with httpx.AsyncClient(base_url=api_url, headers=operator) as http:
        coming = await http.get("/reorganisations")
        assert coming.status_code == 200, coming.text
        expected = ["2027-04-01"] if date.today() <= SURREY_VESTING else []
        assert [p["vesting"] for p in coming.json()] == expected

        planned = await http.get("/reorganisations/2027-04-01", params={"host": "SRY=ESU"})
        assert planned.status_code == 200, planned.text
        found = ours(planned.json(), surrey)
        assert len(found) == 4
        assert {t["readiness"] for t in found.values()} == {"ready"}

        unhosted = await http.get("/reorganisations/2027-04-01")
        county = ours(unhosted.json(), surrey)[surrey.county[0]]
        assert county["readiness"] == "blocked"

        refused = await http.get("/reorganisations/2027-04-01", params={"host": "XYZ"})
        assert refused.status_code == 422
        assert "host: 'XYZ' is not a council in the register" in refused.json()["detail"]


async def test_api_shows_a_council_admin_only_the_plans_its_council_is_party_to(
    platform: Client, surrey: Surrey, api_url: str
) -> None:
    elmbridge = await bearer(platform, Role.COUNCIL_ADMIN, "E07000207")
    finance = await bearer(platform, Role.FINANCE)
    async with httpx.AsyncClient(base_url=api_url) as http:
        seen = await http.get("/reorganisations/2027-04-01", headers=elmbridge)
        assert seen.status_code == 200, seen.text
        plan = seen.json()
        assert [t["tenancy_id"] for t in plan["tenancies"]] == [surrey.east[0]]
        assert [c["successors"][0]["register_code"] for c in plan["changes"]] == ["ESU"]
        denied = await http.get("/reorganisations", headers=finance)
        assert denied.status_code == 403


async def test_the_web_page_lists_the_coming_reorganisations(
    platform: Client, surrey: Surrey, api_url: str
) -> None:
    operator = (await bearer(platform, Role.OPERATOR))["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=api_url) as http:
        web = Browserless(http)
        await web.sign_in(operator)
        page = await web.get("/manage/reorganisations")
    assert page.status_code == 200, page.text
    shown = text_of(page.text)
    if date.today() > SURREY_VESTING:
        assert "No reorganisation is coming" in shown
        return
    assert "Vesting day 1 April 2027" in shown
    assert "Elmbridge Borough Council (E07000207)" in shown
    assert "Surrey County Council (E10000030)" in shown
    assert "No host named yet" in shown  # the page names no host: the split waits for one


async def test_a_plan_scheduled_ahead_is_shown_by_plan_and_the_api_until_cancelled(
    platform: Client, surrey: Surrey, api_url: str
) -> None:
    if date.today() >= SURREY_VESTING:
        pytest.skip("scheduling is before vesting day; the CLI goes by the real day")
    env = {"COUNCILS_CSV": str(surrey.csv), "COLUMNS": "250"}
    day = ("--on", "2027-04-01")
    operator = await bearer(platform, Role.OPERATOR)
    scheduled = await cli(platform.slice, "reorganise", "apply", *day, "--host", "SRY=ESU", env=env)
    try:
        assert scheduled.returncode == 0, scheduled.stderr
        assert "scheduled, not applied" in scheduled.stdout
        planned = await reorganise(platform, surrey, *day, "--json")
        shown = json.loads(planned.stdout)
        assert shown["arrangement"]["hosts"] == {"SRY": "ESU"}
        # Its hosts are the plan's when none are given: the county's split is hosted.
        county = ours(shown, surrey)[surrey.county[0]]
        assert (county["readiness"], county["successor"]["register_code"]) == ("ready", "ESU")
        async with httpx.AsyncClient(base_url=api_url, headers=operator) as http:
            seen = (await http.get("/reorganisations/2027-04-01")).json()
        assert seen["arrangement"]["hosts"] == {"SRY": "ESU"}
        assert seen["arrangement"]["applied_at"] is None
        assert ours(seen, surrey)[surrey.county[0]]["readiness"] == "ready"
    finally:
        cancelled = await cli(platform.slice, "reorganise", "cancel", *day, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled: the plan scheduled for 2027-04-01" in " ".join(cancelled.stdout.split())
    async with platform.pool.acquire() as conn:
        audited = await conn.fetch(
            "SELECT action FROM audit.log WHERE action LIKE 'reorganise.schedul%' ORDER BY seq"
        )
    assert [a["action"] for a in audited][-2:] == [
        "reorganise.scheduled",
        "reorganise.schedule_cancelled",
    ]
    again = await reorganise(platform, surrey, *day, "--json")
    assert json.loads(again.stdout)["arrangement"] is None
