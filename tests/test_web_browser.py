"""The web pages in a real browser (headless Chromium from the system packages): a council admin
finds a service, joins it with a logo and follows it to active through the real workers; every
page is checked by axe-core and photographed; the keyboard alone gets around; another council's
browser cannot reach the tenancy; an operator sees failures and usage."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.web import HERE as WEB
from tests.conftest import Api
from tests.harness import Client
from tests.test_web_support import png_logo, token

CHROMIUM = shutil.which("chromium")
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("TENANCY_REQUIRE_BROWSER"),
    reason="needs Chromium from the system packages (apt-get install chromium)",
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert AXE.is_file(), f"axe-core is missing at {AXE}: run make install (npm ci)"
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield found
        finally:
            await found.close()


class Visit:
    """One person's browser: every page it lands on is checked by axe and photographed."""

    def __init__(self, page: Any, shots: Path, name: str) -> None:
        self.page = page
        self.shots = shots
        self.name = name
        self.count = 0

    async def check(self, label: str) -> None:
        """axe-core on the page as it is, iframes included; any violation fails the test."""
        for frame in self.page.frames:
            await frame.add_script_tag(path=str(AXE))
        violations = await self.page.evaluate(
            """async () => {
                const result = await axe.run(document, {resultTypes: ["violations"]});
                return result.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => n.target.join(" ") + " :: " + n.failureSummary),
                }));
            }"""
        )
        self.count += 1
        path = self.shots / f"{self.name}-{self.count:02d}-{label}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        assert not violations, f"axe on {label} ({self.page.url}): {violations}"


async def visit(
    browser: Any, api: Api, shots: Path, name: str, signed_in: str | None, script: bool = True
) -> Visit:
    # bypass_csp: axe is injected into every frame, and the theme preview's policy forbids
    # scripts, as it should.
    context = await browser.new_context(
        base_url=api.url,
        viewport={"width": 1024, "height": 768},
        bypass_csp=True,
        java_script_enabled=script,
    )
    page = await context.new_page()
    page.set_default_timeout(15_000)
    found = Visit(page, shots, name)
    if signed_in is not None:
        await page.goto("/sign-in")
        await page.get_by_label("Sign-in token").fill(signed_in)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await page.wait_for_url("**/find-a-service")
    return found


async def test_a_council_admin_finds_joins_and_follows_a_service_to_active(
    browser: Any, platform: Client, api: Api, tmp_path: Path
) -> None:
    admin = await token(api, "council-admin", council="E08000010")
    you = await visit(browser, api, tmp_path, "journey", None)
    page = you.page

    await page.goto("/")
    await you.check("start")
    # The keyboard alone: the first Tab reaches the skip link, which moves focus to the content.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == (
        "Skip to main content"
    )
    await page.keyboard.press("Enter")
    # Following the link is a navigation within the page, done after the key press returns.
    await page.wait_for_url(lambda url: url.endswith("#main-content"))
    await page.get_by_role("button", name="Start now").click()

    await page.wait_for_url(lambda url: "/sign-in" in url)
    await you.check("sign-in")
    await page.get_by_label("Sign-in token").fill(admin)
    await page.get_by_label("Sign-in token").press("Enter")  # submits, as a keyboard user would
    await page.wait_for_url("**/find-a-service")
    # The Secure session cookie stuck over http://127.0.0.1: Chromium counts it as secure.
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["tenancy_session"]["secure"]
    assert cookies["tenancy_session"]["httpOnly"]
    await you.check("find-a-service")

    await page.get_by_label("Search").fill("bins")
    await page.get_by_label("Hosted").check()
    await page.get_by_role("button", name="Apply filters").click()
    await page.wait_for_url(lambda url: "q=bins" in url)
    results = page.locator(".app-result")
    assert await results.count() == 1
    await you.check("search-results")
    await page.get_by_role("link", name="Bin collections").click()

    await page.get_by_role("heading", name="Bin collections", level=1).wait_for()
    assert "London Borough of Hackney" in await page.inner_text("main")
    assert "£50 a month to take part" in await page.inner_text("main")
    await you.check("service")
    await page.get_by_role("button", name="Ask to join").click()

    await page.wait_for_url("**/council")
    assert await page.get_by_label("Which council is joining?").input_value() == "E08000010"
    await you.check("join-council")
    await page.get_by_role("button", name="Continue").click()

    await page.wait_for_url("**/contact")
    await page.get_by_role("button", name="Continue").click()  # nothing filled in
    summary = page.locator(".govuk-error-summary")
    await summary.wait_for()
    # GOV.UK Frontend moves focus to the summary, so a screen reader reads it first.
    assert await summary.evaluate("e => e === document.activeElement")
    await you.check("join-contact-errors")
    await page.get_by_label("Full name").fill("Dana Okafor")
    await page.get_by_label("Email address").fill("dana.okafor@wigan.gov.uk")
    await page.get_by_role("button", name="Continue").click()

    await page.wait_for_url("**/brand")
    assert await page.get_by_label("Council name residents will see").input_value() == (
        "Wigan Metropolitan Borough Council"
    )
    await page.get_by_label("Main colour").fill("#00664F")
    logo = tmp_path / "wigan.png"
    logo.write_bytes(png_logo())
    await page.get_by_label("Upload your logo").set_input_files(str(logo))
    await page.get_by_label("Text alternative for the logo").fill("Wigan Council")
    await you.check("join-brand")
    await page.get_by_role("button", name="Continue").click()

    await page.wait_for_url("**/agreement")
    await you.check("join-agreement")
    await page.get_by_label("I accept").check()
    assert await page.get_by_label("Your full name").input_value() == "Dana Okafor"
    await page.get_by_label("Your role at the council").fill("Head of Digital")
    await page.get_by_role("button", name="Continue").click()

    await page.wait_for_url("**/check")
    shown = page.get_by_role("img", name="Wigan Council")
    assert await shown.evaluate("img => img.complete && img.naturalWidth > 0")
    await you.check("join-check")
    await page.get_by_role("button", name="Accept and send").click()

    await page.wait_for_url("**/joined/*")
    tenancy_id = page.url.rsplit("/", 1)[1]
    assert tenancy_id in await page.inner_text(".govuk-panel")
    await you.check("joined")
    # The workers may finish before the page loads; to see the page's script at work whatever
    # the timing, its first load is shown as still being set up.
    loads: list[str] = []

    async def first_load_still_provisioning(route: Any) -> None:
        if loads:
            await route.continue_()
            return
        loads.append(route.request.url)
        answer = await route.fetch()
        body = (await answer.text()).replace(
            'data-state="active"', 'data-state="registered" data-refresh="1"'
        )
        await route.fulfill(response=answer, body=body)

    await page.route(f"**/tenancy/{tenancy_id}", first_load_still_provisioning)
    await page.get_by_role("button", name="Follow its progress").click()

    await page.wait_for_url(f"**/tenancy/{tenancy_id}")
    await page.evaluate("window.notReloaded = true")
    await you.check("status-while-provisioning")
    # The page's own script keeps it fresh: no reload, no click; the change is announced.
    await page.locator('#tenancy-status[data-state="active"]').wait_for(timeout=30_000)
    assert await page.evaluate("window.notReloaded === true")
    assert await page.inner_text("#status-announcer") == "Status: Active"
    preview = page.frame_locator("iframe.app-preview")
    await preview.get_by_role("img", name="Wigan Council").wait_for()
    header = preview.get_by_test_id("header")
    assert await header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(0, 102, 79)"
    assert "Meters opened" in await page.inner_text("#tenancy-status")
    await you.check("status-active")
    await page.get_by_role("link", name="Open the preview on its own page").click()
    await page.wait_for_url(f"**/tenancy/{tenancy_id}/preview")
    await you.check("preview")
    stored = await platform.status(tenancy_id)
    assert stored is not None
    assert stored["state"] == "active"
    assert stored["branding"]["logo"]

    # Another council's admin, in their own browser: as if the tenancy did not exist.
    other = await visit(
        browser, api, tmp_path, "other-council", await token(api, "council-admin", "E08000011")
    )
    answer = await other.page.goto(f"/tenancy/{tenancy_id}")
    assert answer is not None
    assert answer.status == 404
    assert "Wigan" not in await other.page.inner_text("main")
    await other.check("not-found")
    preview_answer = await other.page.goto(f"/tenancy/{tenancy_id}/preview")
    assert preview_answer is not None
    assert preview_answer.status == 404
    await other.page.context.close()
    await page.context.close()


async def test_an_operator_sees_failures_retries_and_reads_usage(
    browser: Any, platform: Client, api: Api, tmp_path: Path
) -> None:
    failed = await platform.onboard("E08000015", service="broken-migration")
    assert (await platform.wait_for(failed))["state"] == "failed"
    operator = await token(api, "operator", council="E09000012")
    you = await visit(browser, api, tmp_path, "operator", operator)
    page = you.page

    await page.get_by_role("link", name="Tenancies").click()
    await page.wait_for_url("**/manage")
    row = page.locator("tr", has_text="Wirral Borough Council (E08000015)")
    assert "no_such_table" in await row.inner_text()
    await you.check("tenancies")
    await row.get_by_role("button", name="Retry").click()
    await page.wait_for_url("**/manage")

    await page.goto(f"/tenancy/{failed}")
    await page.locator('#tenancy-status[data-state="failed"]').wait_for(timeout=30_000)
    await page.get_by_role("button", name="Retry setting up").wait_for()
    await you.check("status-failed")

    await page.get_by_role("link", name="Usage and invoices").click()
    await page.wait_for_url("**/manage/billing")
    await you.check("usage-and-invoices")
    await page.get_by_label("Billing period").fill("last month")
    await page.get_by_role("button", name="Show period").click()
    await page.locator(".govuk-error-summary").wait_for()
    await you.check("usage-error")
    await page.context.close()


async def test_the_pages_work_without_javascript(browser: Any, api: Api, tmp_path: Path) -> None:
    admin = await token(api, "council-admin", council="E08000013")
    you = await visit(browser, api, tmp_path, "no-script", admin, script=False)
    page = you.page
    await page.get_by_label("Joint (costs shared)").check()
    await page.get_by_role("button", name="Apply filters").click()
    await page.wait_for_url(lambda url: "governance=joint" in url)
    await page.locator(".app-result a").first.click()
    await page.get_by_role("button", name="Ask to join").click()
    await page.wait_for_url("**/council")
    await page.get_by_label("Which council is joining?").fill("")
    await page.get_by_role("button", name="Continue").click()
    await page.locator(".govuk-error-summary").wait_for()
    assert "Enter your council's name or GSS code" in await page.inner_text(".govuk-error-summary")
    await page.get_by_label("Which council is joining?").fill("St Helens")
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url("**/contact")
    assert "St Helens Council (E08000013)" in await page.inner_text("main")
    await page.context.close()


async def test_the_pages_and_docs_keep_to_their_content_security_policy(
    browser: Any, platform: Client, api: Api
) -> None:
    # The other tests bypass the policy to inject axe; here it is enforced, and any violation
    # (an inline script without the nonce, an inline style, anything from elsewhere) fails.
    tenancy_id = await platform.onboard("E06000019")
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    admin = await token(api, "council-admin", council="E06000019")
    context = await browser.new_context(base_url=api.url, viewport={"width": 1024, "height": 768})
    await context.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page = await context.new_page()
    page.set_default_timeout(15_000)
    logged: list[str] = []
    page.on("console", lambda m: logged.append(m.text) if "Security Policy" in m.text else None)

    async def no_violations(where: str) -> None:
        found = await page.evaluate("window.violations")
        assert not found, f"{where}: {found}"
        assert not logged, f"{where}: {logged}"

    await page.goto("/sign-in")
    # GOV.UK Frontend's inline script ran (it carries the nonce), so its components start.
    assert "govuk-frontend-supported" in (await page.get_attribute("body", "class") or "")
    await page.get_by_label("Sign-in token").fill(admin)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url("**/find-a-service")
    await no_violations("find a service")
    await page.goto("/join/planning-comments/council")  # it is in bin collections already
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url("**/contact")
    await page.goto("/join/planning-comments/brand")
    await page.locator(".app-swatch").first.wait_for()
    await no_violations("brand")
    await page.goto(f"/tenancy/{tenancy_id}")
    await page.frame_locator("iframe.app-preview").get_by_test_id("header").wait_for()
    await no_violations("status with its preview")
    await page.goto("/docs")
    await page.locator(".opblock").first.wait_for()
    await page.get_by_role("button", name="Authorize").wait_for()
    await no_violations("docs")
    await context.close()
