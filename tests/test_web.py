"""The web pages over plain HTTP, against the real API process: sign-in, CSRF, the join form's
errors, scopes and the operators' views. The browser tests (test_web_browser.py) walk the
journey itself in Chromium."""

from __future__ import annotations

import re
from typing import Any

import httpx

from api.routes import audit, billing, catalogue, tenancies
from api.web.pages import ROUTERS
from tests.conftest import Api
from tests.harness import Client
from tests.test_web_support import Browserless, csrf_of, png_logo, text_of, token


def test_pages_never_take_a_path_of_the_api() -> None:
    def paths(routers: object) -> set[str]:
        return {route.path for router in routers for route in router.routes}  # type: ignore[attr-defined]

    api_paths = paths([catalogue.router, tenancies.router, billing.router, audit.router])
    page_paths = paths(ROUTERS)
    assert page_paths
    reserved = {"services", "tenancies", "invoices", "audit", "docs", "openapi.json", "livez",
                "readyz", "metrics"}  # fmt: skip
    clashes = {p for p in page_paths if p in api_paths or p.split("/")[1] in reserved}
    assert not clashes


async def test_sign_in_says_how_to_get_a_token_and_keeps_it_in_a_safe_cookie(api: Api) -> None:
    admin = await token(api, "council-admin", council="E08000016")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        start = await web.get("/find-a-service")
        assert start.status_code == 303
        assert start.headers["location"] == "/sign-in?next=/find-a-service"

        page = await web.get("/sign-in", next="/find-a-service")
        words = text_of(page.text)
        assert "Ask the digital team that runs this service" in words
        assert "tenancy tokens create --role council-admin" in words
        seed_cookie = next(h for h in web.set_cookie_headers if h.startswith("tenancy_csrf="))
        assert {"secure", "httponly", "samesite=lax"} <= {
            part.strip().lower() for part in seed_cookie.split(";")
        }

        code = csrf_of(page.text)
        wrong = await web.post(
            "/sign-in", {"csrf_token": code, "token": "tny_not-a-real-token", "next": "/"}
        )
        assert wrong.status_code == 400
        assert "There is a problem" in wrong.text
        assert 'href="#token"' in wrong.text
        assert "tny_not-a-real-token" not in wrong.text  # never echoed back

        signed = await web.post(
            "/sign-in",
            {"csrf_token": code, "token": admin, "next": "//elsewhere.example/steal"},
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/find-a-service"  # no open redirect
        session = next(h for h in web.set_cookie_headers if h.startswith("tenancy_session="))
        assert {"secure", "httponly", "samesite=lax"} <= {
            part.strip().lower() for part in session.split(";")
        }
        found = await web.get("/find-a-service")
        assert found.status_code == 200
        assert "Bin collections" in found.text
        assert "Barnsley Metropolitan Borough Council" in text_of(found.text)

        # The code from before signing in is worthless after it.
        stale = await web.post("/sign-out", {"csrf_token": code})
        assert stale.status_code == 403
        out = await web.post("/sign-out", {"csrf_token": csrf_of(found.text)})
        assert out.status_code == 303
        assert (await web.get("/find-a-service")).status_code == 303


async def test_a_form_without_its_csrf_code_is_refused(api: Api) -> None:
    admin = await token(api, "council-admin", council="E08000017")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(admin)
        form = await web.get("/join/bin-collections/council")
        assert form.status_code == 200
        good = csrf_of(form.text)
        for sent in ({}, {"csrf_token": ""}, {"csrf_token": "0" * 64}):
            refused = await web.post("/join/bin-collections/council", {**sent, "council": "x"})
            assert refused.status_code == 403, sent
            assert "Your form could not be sent" in refused.text
            assert "govuk-template" in refused.text

        # A code from another browser (another seed) does not fit this one.
        other = Browserless(http)
        foreign = csrf_of((await other.get("/sign-in")).text)
        refused = await web.post(
            "/join/bin-collections/council", {"csrf_token": foreign, "council": "x"}
        )
        assert refused.status_code == 403
        assert (await other.post("/sign-in", {"token": admin})).status_code == 403

        accepted = await web.post(
            "/join/bin-collections/council", {"csrf_token": good, "council": "E08000017"}
        )
        assert accepted.status_code == 303


async def test_a_form_with_errors_says_what_to_fix_and_keeps_what_was_typed(api: Api) -> None:
    admin = await token(api, "council-admin", council="E08000012")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(admin)
        code = await web.csrf("/join/bin-collections/council")

        not_a_code = await web.post(
            "/join/bin-collections/council", {"csrf_token": code, "council": "E0800001X"}
        )
        assert not_a_code.status_code == 400
        assert "No current council is called 'E0800001X'" in text_of(not_a_code.text)
        assert 'value="E0800001X"' in not_a_code.text
        other = await web.post(
            "/join/bin-collections/council", {"csrf_token": code, "council": "E08000010"}
        )
        assert "you can only ask to join for that council" in other.text
        ok = await web.post(
            "/join/bin-collections/council",
            {"csrf_token": code, "council": "Liverpool City Council"},
        )
        assert ok.headers["location"] == "/join/bin-collections/contact"

        typed = {"contact-name": "Ada Jones", "contact-email": "ada@", "purchase-order": "PO 12"}
        contact = await web.post("/join/bin-collections/contact", {"csrf_token": code, **typed})
        assert contact.status_code == 400
        assert "Enter an email address in the correct format" in contact.text
        assert 'value="Ada Jones"' in contact.text
        assert 'value="PO 12"' in contact.text
        typed |= {"contact-email": "ada@liverpool.gov.uk", "purchase-order": ""}
        await web.post("/join/bin-collections/contact", {"csrf_token": code, **typed})

        brand = await web.post(
            "/join/bin-collections/brand",
            {
                "csrf_token": code,
                "brand-name": "Liverpool City Council",
                "colour-primary": "00664F",
                "colour-secondary": "#FFFFFF",
                "colour-link": "#FFDD00",
                "logo-alt": "Liverpool logo",
                "domain": "https://bins.liverpool.gov.uk/",
            },
            files={"logo": ("logo.png", b"this is not an image", "image/png")},
        )
        assert brand.status_code == 400
        words = text_of(brand.text)
        summary = words[words.index("There is a problem") : words.index("Residents will see")]
        # Contrast, with the nearest passing shade; logo type; alt text; domain; all at once.
        assert "#FFDD00 on #FFFFFF has contrast" in summary
        assert "WCAG 2.2 AA needs 4.5:1" in summary
        assert "nearest shade of #FFDD00 that passes" in summary
        assert "The logo must be a PNG or SVG file" in summary
        assert "must not say 'logo'" in summary
        assert "give the host name only" in summary
        for target in re.findall(r'href="#([a-z-]+)"', brand.text.split("govuk-error-summary")[1]):
            assert f'id="{target}"' in brand.text, target
        for kept in ('value="#00664F"', 'value="#FFDD00"', 'value="Liverpool logo"'):
            assert kept in brand.text, kept

        good = {
            "csrf_token": code,
            "brand-name": "Liverpool City Council",
            "colour-primary": "#00664F",
            "colour-secondary": "#FFFFFF",
            "colour-link": "#1D70B8",
            "logo-alt": "Liverpool City Council",
        }
        fixed = await web.post(
            "/join/bin-collections/brand",
            good,
            files={"logo": ("logo.png", png_logo(), "image/png")},
        )
        assert fixed.headers["location"] == "/join/bin-collections/agreement"
        agreement = await web.post(
            "/join/bin-collections/agreement",
            {"csrf_token": code, "accepted-name": "Ada Jones", "accepted-role": ""},
        )
        assert agreement.status_code == 400
        assert "Select that you accept the agreement" in agreement.text
        assert "Enter your role at the council" in agreement.text
        assert 'value="Ada Jones"' in agreement.text


async def test_a_council_admin_sees_only_its_own_council_as_the_api_does(
    platform: Client, api: Api
) -> None:
    theirs = await platform.onboard("E08000018")
    ours = await token(api, "council-admin", council="E08000019")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(ours)
        for path in (f"/tenancy/{theirs}", f"/joined/{theirs}", f"/tenancy/{theirs}/preview"):
            answer = await web.get(path)
            assert answer.status_code == 404, path
            assert "Page not found" in answer.text
        bearer = {"Authorization": f"Bearer {ours}"}
        api_answer = await http.get(f"/tenancies/{theirs}", headers=bearer)
        assert api_answer.status_code == 404
        listed = await web.get("/manage")
        assert theirs not in listed.text
        assert (await web.get("/tenancy/not-a-uuid")).status_code == 404


async def test_operators_see_failures_with_their_reason_and_retry_them(
    platform: Client, api: Api
) -> None:
    failed = await platform.onboard("E08000014", service="broken-migration")
    assert (await platform.wait_for(failed))["state"] == "failed"
    operator = await token(api, "operator", council="E09000012")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(operator)
        page = await web.get("/manage")
        assert page.status_code == 200
        words = text_of(page.text)
        assert "Broken migration (test)" in words
        assert "Sefton Metropolitan Borough Council (E08000014)" in words
        assert "no_such_table" in words
        assert f'action="/tenancy/{failed}/retry"' in page.text

        retried = await web.post(f"/tenancy/{failed}/retry", {"csrf_token": csrf_of(page.text)})
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/tenancy/{failed}"

        usage = await web.get("/manage/billing", period="2026-11")
        assert usage.status_code == 200
        assert "Usage in 2026-11" in text_of(usage.text)
        wrong = await web.get("/manage/billing", period="November")
        assert wrong.status_code == 400
        assert "Enter a month like 2026-11" in wrong.text

    admin = await token(api, "council-admin", council="E08000014")
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(admin)
        mine = await web.get("/manage")
        assert failed in mine.text
        assert "/retry" not in mine.text  # a council admin cannot retry, as in the API
        refused = await web.post(f"/tenancy/{failed}/retry", {"csrf_token": csrf_of(mine.text)})
        assert refused.status_code == 403


def test_an_overlong_name_is_the_name_s_error_not_the_email_s() -> None:
    from starlette.datastructures import FormData

    from api.web.forms import Errors, contact_answer

    errors = Errors()
    contact_answer(
        FormData({"contact-name": "x" * 201, "contact-email": "clerk@wigan.gov.uk"}), errors
    )
    assert errors.found == [("contact-name", "Name must be 200 characters or fewer")]


def test_a_reorganised_tenancy_has_a_state_of_its_own_everywhere() -> None:
    from api.web.pages.manage import STATE_ORDER
    from api.web.presenters import FINISHED, STEPS, state_tag
    from cli.common import TERMINAL_STATES

    assert state_tag("reorganised") == {"text": "Reorganised", "classes": "govuk-tag--purple"}
    assert STATE_ORDER[-1] == "reorganised"  # ended: after the ones still in use
    assert "reorganised" in FINISHED  # the status page stops asking again
    assert "reorganised" in TERMINAL_STATES  # and so does tenancy status --wait
    assert STEPS["reorganised"] == "Moved to the successor council"


def test_a_reorganised_tenancy_links_its_successor_only_for_those_who_may_open_it() -> None:
    from api.tokens import Principal, Role
    from api.web.pages.status import moved_into
    from shared.catalogue import ServiceManifest

    manifest = ServiceManifest.model_validate(
        {"id": "bins", "name": "Bins", "owner_council": "E09000012", "isolation": "pooled"}
    )
    into = {"id": "s-1", "council": "E06000065", "council_name": "East Surrey"}
    found: dict[str, Any] = {"service": "bins", "reorganised_at": None}

    def link(role: Role, council: str | None, vesting: str | None = None) -> Any:
        found["reorganised_into"] = {**into, "vesting": vesting}
        shown = moved_into(Principal("t", role, council, None), found, manifest)
        assert shown is not None
        return shown["href"], shown["vesting"]

    assert link(Role.COUNCIL_ADMIN, "E06000065") == ("/tenancy/s-1", "")  # the successor's
    assert link(Role.OPERATOR, "E09000012") == ("/tenancy/s-1", "")  # who runs the service
    # The predecessor's own admin and finance are told, not sent to a page not found.
    assert link(Role.COUNCIL_ADMIN, "E07000208", "2027-04-01") == (None, "1 April 2027")
    assert link(Role.FINANCE, "E07000208") == (None, "")
    assert moved_into(Principal("t", Role.OPERATOR, None, None), {"service": "bins"}, None) is None


def test_a_moves_predecessor_data_is_told_as_it_stands() -> None:
    from datetime import UTC, datetime

    from api.web.pages.reorganisations import _retirement

    moved = {"status": "moved", "retirement": None}
    assert _retirement(moved) == "Kept, locked out"
    assert _retirement({"status": "failed", "retirement": None}) == ""
    assert _retirement({**moved, "retirement": "requested"}) == "Retirement requested"
    failed = {**moved, "retirement": "failed", "retirement_reason": "disk full"}
    assert _retirement(failed) == "Retirement failed: disk full"
    retired = {
        **moved,
        "retirement": "retired",
        "retired_at": datetime(2027, 7, 1, 9, tzinfo=UTC),
        "archive": "bin-collections/x.zip",
    }
    assert _retirement(retired) == "Exported and dropped on 1 July 2027: bin-collections/x.zip"
