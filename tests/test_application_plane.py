"""The application plane end to end: the reference service "Report a missed bin", built on the
SDK alone, running on tenancies the real workers provisioned, driven through a real browser.

Two councils join ``bin-collections`` with their own brands; each council's pages show its own
brand; a report made at Hackney is invisible at Lambeth, even by its reference; reports become
usage and a line on Hackney's invoice; rotating Hackney's password does not break its pages;
offboarding ends them. One slice of its own (workers, API, the service) for the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from reference.missed_bins.app import build
from reference.missed_bins.reports import ReportForm
from reference.missed_bins.reports import add as add_report
from reference.missed_bins.settings import MissedBinsSettings
from shared import db
from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.events import Brand, Colours
from shared.topics import Topic
from stack.ports import free_port
from tenancy_sdk import TenancyClient
from tenancy_sdk.connections import TenantPools
from tenancy_sdk.credentials import PlatformCredentials
from tenancy_sdk.lifecycle import SAVE_EVERY_SECONDS
from tenancy_sdk.usage import usage_event
from tests.conftest import Servers, new_slice
from tests.harness import (
    WORKERS,
    Client,
    Slice,
    WorkerProcess,
    cli,
    load_example_catalogue,
    offboard,
)
from tests.test_web_browser import CHROMIUM, Visit, browser  # noqa: F401 (a fixture)
from tests.verified_domains import HACKNEY_DOMAIN

T = TypeVar("T")
HACKNEY, LAMBETH, ISLINGTON = "E09000012", "E09000022", "E09000019"
HACKNEY_GREEN, LAMBETH_RED = "#00664F", "#A4123F"


@dataclass
class PlaneSlice(Slice):
    def env(self) -> dict[str, str]:
        return {**super().env(), "DOMAIN_CHECK": "tests.verified_domains:verified"}


@dataclass
class Plane:
    slice: Slice
    client: Client
    api_url: str
    operator: dict[str, str]
    app_url: str
    sdk: TenancyClient
    service_token: str
    hackney: str
    lambeth: str

    def http(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.app_url, timeout=15, **options)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found is not None and found is not False:  # a count of 0 is an answer
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {timeout} s: {check}")
        await asyncio.sleep(0.1)


def brand(name: str, primary: str, domain: str | None = None) -> Brand:
    return Brand(name=name, colours=Colours(primary=primary), domain=domain)


@pytest.fixture(scope="module")
async def plane(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Plane]:
    base = new_slice(servers, tmp_path_factory.mktemp("plane"))
    slice_ = PlaneSlice(base.server_dsn, base.bootstrap, base.root)
    await db.ensure_database(slice_.database_url)
    async with contextlib.AsyncExitStack() as stack:
        # Processes, not in-process workers: each sets up and shuts down tracing of its own,
        # which in this process belongs to the session's platform.
        workers = [WorkerProcess(name, slice_) for name in WORKERS]
        for worker in workers:
            worker.start()
            stack.callback(worker.stop)
        for worker in workers:
            await asyncio.to_thread(worker.wait_ready)
        pool = await db.create_pool(slice_.database_url, max_size=4)
        stack.push_async_callback(pool.close)
        await load_example_catalogue(pool)
        client = await stack.enter_async_context(Client(slice_, pool))
        port = free_port()
        api = WorkerProcess("api", slice_, {"API_PORT": str(port)}, module="api", ready="api ready")
        api.start()
        stack.callback(api.stop)
        await asyncio.to_thread(api.wait_ready)

        from api.tokens import Role, create

        async with pool.acquire() as conn:
            service_token, _ = await create(conn, Role.SERVICE, None, "bin-collections", "plane")
            operator_token, _ = await create(conn, Role.OPERATOR, None, None, "plane")
        hackney = await client.onboard(
            HACKNEY, brand=brand("London Borough of Hackney", HACKNEY_GREEN, HACKNEY_DOMAIN)
        )
        lambeth = await client.onboard(
            LAMBETH, brand=brand("London Borough of Lambeth", LAMBETH_RED)
        )
        for tenancy_id in (hackney, lambeth):
            assert (await client.wait_for(tenancy_id))["state"] == "active"

        app_port = free_port()
        settings = MissedBinsSettings(
            _env_file=None,
            **{k.lower(): v for k, v in slice_.env().items()},
            tenancy_service_id="bin-collections",
            tenancy_api_url=f"http://127.0.0.1:{port}",
            tenancy_service_token=service_token,
            tenancy_state_file=slice_.root / "missed-bins" / "directory.json",
            tenancy_usage_sweep_seconds=1.0,
            missed_bins_port=app_port,
        )
        sdk = TenancyClient(settings)
        server = uvicorn.Server(
            uvicorn.Config(build(settings, sdk), port=app_port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        stack.push_async_callback(lambda: serving)
        stack.callback(setattr, server, "should_exit", True)
        while not server.started:
            assert not serving.done(), serving
            await asyncio.sleep(0.05)
        yield Plane(
            slice=slice_,
            client=client,
            api_url=f"http://127.0.0.1:{port}",
            operator={"Authorization": f"Bearer {operator_token}"},
            app_url=f"http://127.0.0.1:{app_port}",
            sdk=sdk,
            service_token=service_token,
            hackney=hackney,
            lambeth=lambeth,
        )


async def serving(plane: Plane, *tenancies: str) -> None:
    """Both councils are in the service's directory: the SDK read their lifecycle events."""

    async def known() -> bool:
        served = {t.id for t in plane.sdk.tenancies()}
        return all(t in served for t in tenancies)

    await eventually(known)


async def report(
    plane: Plane, slug: str, address: str = "1 Mare Street", host: str | None = None
) -> str:
    """A resident's report through the form over plain HTTP; the reference it was given."""
    headers = {"host": host} if host else {}
    prefix = "" if host else f"/{slug}"
    async with plane.http(headers=headers) as http:
        form = await http.get(f"{prefix}/report")
        assert form.status_code == 200, form.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        sent = await http.post(
            f"{prefix}/report",
            data={"address": address, "container": "recycling", "csrf": csrf.group(1)},
        )
        assert sent.status_code == 303, sent.text
        location = sent.headers["location"]
        assert location.startswith(f"{prefix}/reports/"), location
        return location.removeprefix(f"{prefix}/reports/").split("?")[0]


async def usage(plane: Plane, tenancy_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=plane.api_url, headers=plane.operator) as api:
        answer = await api.get(f"/tenancies/{tenancy_id}/usage")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


async def reports_counted(plane: Plane, tenancy_id: str) -> int:
    values = (await usage(plane, tenancy_id))["usage"]
    return int(values.get("missed_bin_reports", 0))


# -- each council's own pages, in a real browser ------------------------------------------------


def rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


async def test_each_council_sees_its_own_brand_and_its_reports_only(
    plane: Plane,
    browser: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    await serving(plane, plane.hackney, plane.lambeth)
    context = await browser.new_context(base_url=plane.app_url, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    visit = Visit(page, tmp_path, "missed-bins")

    await page.goto("/")
    await page.get_by_role("link", name="Hackney").click()
    await page.wait_for_url("**/hackney/")
    header = page.locator(".app-council-header")
    assert await header.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(HACKNEY_GREEN)
    assert "London Borough of Hackney" in await header.inner_text()
    await visit.check("hackney-start")

    await page.get_by_role("button", name="Start now").click()
    await page.get_by_role("button", name="Send report").click()
    assert "Enter the address where the bin was not collected" in await page.content()
    await visit.check("hackney-errors")
    await page.get_by_label("Address where the bin was not collected").fill("1 Mare Street")
    await page.get_by_label("Food waste").check()
    await page.get_by_role("button", name="Send report").click()
    await page.wait_for_url("**/hackney/reports/*")
    reference = (await page.locator("#reference").inner_text()).strip()
    assert "Report sent" in await page.content()
    await visit.check("hackney-sent")

    await page.goto("/lambeth/")
    header = page.locator(".app-council-header")
    assert await header.evaluate("e => getComputedStyle(e).backgroundColor") == rgb(LAMBETH_RED)
    assert "London Borough of Lambeth" in await header.inner_text()
    await visit.check("lambeth-start")
    # Hackney's reference, at Lambeth: Lambeth's login cannot see Hackney's reports at all.
    answer = await page.goto(f"/lambeth/reports/{reference}")
    assert answer is not None
    assert answer.status == 404
    assert "1 Mare Street" not in await page.content()
    await visit.check("lambeth-not-found")
    answer = await page.goto(f"/hackney/reports/{reference}")
    assert answer is not None
    assert answer.status == 200
    assert "1 Mare Street" in await page.content()
    await context.close()


async def test_a_council_on_its_own_verified_domain_is_served_at_the_root(plane: Plane) -> None:
    await serving(plane, plane.hackney)
    reference = await report(plane, "", "2 Reading Lane", host=HACKNEY_DOMAIN)
    async with plane.http(headers={"host": HACKNEY_DOMAIN}) as http:
        start = await http.get("/")
        assert start.status_code == 200
        assert "London Borough of Hackney" in start.text
        assert (await http.get(f"/reports/{reference}")).status_code == 200
    async with plane.http() as http:
        # The same report by path, and not from Lambeth's.
        assert (await http.get(f"/hackney/reports/{reference}")).status_code == 200
        assert (await http.get(f"/lambeth/reports/{reference}")).status_code == 404
        # An unverified name is no council's.
        assert (await http.get("/", headers={"host": "bins.lambeth.gov.uk"})).status_code == 200
        assert (await http.get("/nowhere/report")).status_code == 404


async def test_guessed_and_hostile_references_find_nothing(plane: Plane) -> None:
    await serving(plane, plane.hackney, plane.lambeth)
    async with plane.http() as http:
        for guess in ("1", "00000000-0000-0000-0000-000000000001", "' OR 1=1 --", "%00"):
            answer = await http.get(f"/lambeth/reports/{guess}")
            assert answer.status_code == 404, (guess, answer.status_code)
        # The internal mount of a council's pages is not an address: it is read as a council.
        assert (await http.get("/_council/report")).status_code == 404
        # A post without the form's code changes nothing.
        refused = await http.post("/lambeth/report", data={"address": "x", "container": "food"})
        assert refused.status_code == 403


async def settled(plane: Plane, tenancy_id: str) -> int:
    """Waits until every report of the council has been counted once, and nothing is left in
    its outbox; returns how many there are."""
    tenancy = plane.sdk.directory.get(tenancy_id)
    assert tenancy is not None

    async def counted() -> int | None:
        async with plane.sdk.connection(tenancy) as conn:
            pending = await conn.fetchval("SELECT count(*) FROM tenancy_usage_outbox")
            made: int = await conn.fetchval("SELECT count(*) FROM missed_bin_reports")
        return made if pending == 0 and await reports_counted(plane, tenancy_id) == made else None

    return await eventually(counted)


async def test_reports_become_usage_and_a_line_on_the_councils_invoice(plane: Plane) -> None:
    await serving(plane, plane.hackney)
    before = await settled(plane, plane.hackney)
    for number in range(3):
        await report(plane, "hackney", f"{number} Mare Street")
    reports_made = await settled(plane, plane.hackney)
    assert reports_made == before + 3

    period = datetime.now(UTC).strftime("%Y-%m")
    closed = await cli(plane.slice, "billing", "close", "bin-collections", period)
    assert closed.returncode == 0, closed.stderr

    async def invoice() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=plane.api_url, headers=plane.operator) as api:
            found = (await api.get("/invoices", params={"period": period})).json()
        mine = [i for i in found if i["tenancy_id"] == plane.hackney]
        return mine[0] if mine else None

    issued = await eventually(invoice)
    lines = {line.get("meter"): line for line in issued["lines"]}
    assert "missed_bin_reports" in lines, issued
    assert int(lines["missed_bin_reports"]["quantity"]) == reports_made


async def test_rotating_a_councils_password_does_not_break_its_pages(plane: Plane) -> None:
    await serving(plane, plane.hackney)
    first = await report(plane, "hackney", "3 Mare Street")
    role = plane.sdk.directory.get(plane.hackney)
    assert role is not None
    rotated = await cli(plane.slice, "credentials", plane.hackney, "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    # Straight away, before or after the service has read credentials.rotated: the sessions of
    # the old password were ended, and the next request logs in with the new one.
    second = await report(plane, "hackney", "4 Mare Street")
    async with plane.http() as http:
        for reference in (first, second):
            assert (await http.get(f"/hackney/reports/{reference}")).status_code == 200


async def test_a_login_refused_after_rotation_is_fetched_again_without_the_event(
    plane: Plane,
) -> None:
    """A pool that has not yet heard of a rotation (its tenancy as it was before) logs in again
    with the new password as soon as the old one is refused."""
    await serving(plane, plane.lambeth)
    before = plane.sdk.directory.get(plane.lambeth)
    assert before is not None
    credentials = PlatformCredentials(plane.api_url, "bin-collections", plane.service_token)
    pools = TenantPools(credentials, max_size=1)
    try:
        role = await pools.run(before, lambda conn: conn.fetchval("SELECT current_user"))
        assert role == before.isolation.role if before.isolation else False
        rotated = await cli(plane.slice, "credentials", plane.lambeth, "--rotate")
        assert rotated.returncode == 0, rotated.stderr
        again = await pools.run(before, lambda conn: conn.fetchval("SELECT current_user"))
        assert again == role
    finally:
        await pools.close()
        await credentials.close()


async def test_usage_a_crash_left_unsent_is_sent_once_by_the_sweep(plane: Plane) -> None:
    """A report committed whose usage was never sent (the process died before it woke the
    relay) is found by the sweep; the event sent again by hand still counts once."""
    await serving(plane, plane.lambeth)
    tenancy = plane.sdk.directory.get(plane.lambeth)
    assert tenancy is not None
    before = await settled(plane, plane.lambeth)
    reference = uuid.uuid4()
    form = ReportForm("9 Acre Lane", "general", "")
    # Through the pools, not client.run: nothing tells the relay.
    await plane.sdk.pools.run(tenancy, lambda conn: add_report(conn, reference, form))
    assert await settled(plane, plane.lambeth) == before + 1

    async with plane.sdk.connection(tenancy) as conn:
        made = await conn.fetchval(
            "SELECT reported_at FROM missed_bin_reports WHERE reference = $1", reference
        )
    # The row as it was: written in the report's transaction, so at the report's time.
    row = {
        "id": f"missed-bin-report-{reference}",
        "meter": "missed_bin_reports",
        "quantity": 1,
        "value": None,
        "occurred_at": made,
    }
    # The same event sent again (a relay that died before deleting the row) counts nothing:
    # once a later report is counted, the count still matches the reports.
    await plane.client.broker.publish(
        usage_event("bin-collections", plane.lambeth, row),
        topic=plane.slice.topic(Topic.USAGE_RECORDED),
        key=plane.lambeth.encode(),
        headers={"content-type": STRUCTURED_CONTENT_TYPE},
    )
    await report(plane, "lambeth", "10 Acre Lane")
    assert await settled(plane, plane.lambeth) == before + 2
    assert await reports_counted(plane, plane.lambeth) == before + 2
    # Recognised as the same event, not refused as one with other content under its id.
    async with plane.client.pool.acquire() as conn:
        refused = await conn.fetchval(
            "SELECT count(*) FROM metering.dead_letters WHERE key = $1", plane.lambeth
        )
    assert refused == 0


async def test_a_council_onboarded_while_the_service_runs_arrives_and_is_served(
    plane: Plane,
) -> None:
    arrived: list[str] = []
    plane.sdk.on_arrival(lambda tenancy: _note(arrived, tenancy.id))
    islington = await plane.client.onboard(ISLINGTON)
    assert (await plane.client.wait_for(islington))["state"] == "active"

    async def open_() -> bool:
        async with plane.http() as http:
            return (await http.get("/islington/")).status_code == 200

    await eventually(open_)
    assert arrived == [islington]
    await report(plane, "islington", "1 Upper Street")


async def test_a_restarted_service_knows_its_councils_from_its_state_file(plane: Plane) -> None:
    """A second client on the same state file starts from the snapshot's offsets: it knows
    every council at once, having read only what came after."""
    await serving(plane, plane.hackney, plane.lambeth)
    await asyncio.sleep(SAVE_EVERY_SECONDS * 1.5)  # the running client's snapshot is current
    restarted = TenancyClient(plane.sdk.settings)
    assert {t.id for t in restarted.tenancies()} >= {plane.hackney, plane.lambeth}
    async with restarted:
        assert restarted.resolve("127.0.0.1", "/lambeth/").tenancy.id == plane.lambeth
        theme = restarted.theme(restarted.resolve("127.0.0.1", "/hackney/").tenancy)
        assert theme is not None
        assert theme.colour("primary") == HACKNEY_GREEN


async def test_offboarding_ends_the_councils_pages_and_only_its_own(plane: Plane) -> None:
    await serving(plane, plane.hackney, plane.lambeth)
    left: list[str] = []
    plane.sdk.on_departure(lambda tenancy: _note(left, tenancy.id))
    await offboard(plane.client, plane.hackney, reason="leaves the shared service")
    await plane.client.wait_for(plane.hackney, frozenset({"offboarded"}), timeout=60)

    async def gone() -> bool:
        async with plane.http() as http:
            return (await http.get("/hackney/")).status_code == 410

    await eventually(gone)
    async with plane.http() as http:
        page = await http.get("/hackney/report")
        assert page.status_code == 410
        assert "London Borough of Hackney no longer offers" in page.text
        assert (await http.get("/", headers={"host": HACKNEY_DOMAIN})).status_code == 200
        index = await http.get("/")
        assert "Lambeth" in index.text
        assert "Hackney" not in index.text
        assert (await http.get("/lambeth/report")).status_code == 200
    assert left == [plane.hackney]


async def _note(into: list[str], tenancy_id: str) -> None:
    into.append(tenancy_id)
