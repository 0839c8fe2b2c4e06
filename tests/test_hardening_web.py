"""Hardening of the API and its pages (issue 15): text PostgreSQL cannot hold, untrusted
cookies, the logo's size rule on the form, the preview's in-page links, the OpenAPI document's
security and problem responses, security headers, "Page not found", a self-hosted /docs and a
bound on wrong tokens per client."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import ValidationError

from api.throttle import FailedTokens, TooManyFailures
from services.branding import logo
from services.branding.preview import render_preview
from services.branding.theme import design_tokens
from shared.catalogue import ServiceManifest, describe_validation_error
from shared.events import Brand, UsageRecorded
from stack.ports import free_port
from tests.conftest import Api
from tests.harness import Client, WorkerProcess
from tests.test_web_support import Browserless, png_logo, text_of, token

NUL = "\u0000"
RULE = "must not contain the NUL character"
ACCEPTANCE = {"agreement_version": "1", "name": "Sam Patel", "role": "Head of Digital"}

# -- 1. the NUL character ------------------------------------------------------------------


def test_the_event_contract_and_manifests_refuse_the_nul_character_naming_the_field() -> None:
    usage = {
        "specversion": "1.0",
        "id": "report-1",
        "source": "bin-collections",
        "type": "uk.gov.tenancy.usage.recorded.v1",
        "subject": str(uuid.uuid4()),
        "time": "2026-11-22T10:15:00Z",
        "data": {"meter": "missed_bin_reports", "value": f"user{NUL}1"},
    }
    with pytest.raises(ValidationError) as refused:
        UsageRecorded.model_validate_json(json.dumps(usage))
    [error] = refused.value.errors()
    assert (error["loc"], error["msg"]) == (("data", "value"), RULE)

    manifest = {
        "id": "nul-service",
        "name": "NUL",
        "owner_council": "E09000012",
        "meters": [{"key": "reports", "unit": f"re{NUL}port"}],
        "migrations": [{"version": 1, "sql": f"CREATE TABLE t (id int);{NUL}"}],
    }
    with pytest.raises(ValidationError) as refused:
        ServiceManifest.model_validate(manifest)
    assert describe_validation_error(refused.value) == [
        f"migrations.0.sql: {RULE}",
        f"meters.0.unit: {RULE}",
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def active_tenancy(platform: Client) -> str:
    tenancy_id = await platform.onboard("E06000010")
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    return tenancy_id


async def test_the_api_refuses_the_nul_character_wherever_text_enters(
    api: Api, active_tenancy: str
) -> None:
    joining = {"council": "E06000015", "service": "bin-collections", "acceptance": ACCEPTANCE}
    manifest = {"id": "nul-described", "name": "NUL", "owner_council": "E09000012"}
    cases: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None, str]] = [
        (
            "POST",
            "/tenancies",
            {**joining, "contact": {"name": f"Sam{NUL}", "email": "sam@hull.gov.uk"}},
            None,
            "contact.name",
        ),
        (
            "POST",
            "/tenancies",
            {**joining, "acceptance": {**ACCEPTANCE, "name": f"Sam{NUL}Patel"}},
            None,
            "acceptance.name",
        ),
        ("POST", "/services", {**manifest, "description": f"bins{NUL}"}, None, "description"),
        (
            "POST",
            f"/tenancies/{active_tenancy}/brand",
            {"name": f"Hull{NUL}", "colours": {"primary": "#00664F"}},
            None,
            "name",
        ),
        ("POST", f"/tenancies/{active_tenancy}/offboard", {"reason": NUL}, None, "reason"),
        ("GET", "/invoices", None, {"service": NUL}, "query.service"),
        ("GET", f"/tenancies/{active_tenancy}/usage", None, {"period": NUL}, "query.period"),
    ]
    operator = await api.token("operator")
    async with httpx.AsyncClient(base_url=api.url) as http:
        for method, path, body, params, field in cases:
            answer = await http.request(method, path, json=body, params=params, headers=operator)
            assert answer.status_code == 422, (path, field, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert f"{field}: {RULE}" in answer.json()["errors"], (path, answer.json())
        status = await http.get(f"/tenancies/{active_tenancy}", headers=operator)
    assert status.json()["state"] == "active"  # nothing was offboarded


async def signed_in_at_contact(http: httpx.AsyncClient, api: Api, council: str) -> Browserless:
    web = Browserless(http)
    await web.sign_in(await token(api, "council-admin", council=council))
    code = await web.csrf("/join/bin-collections/council")
    answer = await web.post(
        "/join/bin-collections/council", {"csrf_token": code, "council": council}
    )
    assert answer.headers["location"] == "/join/bin-collections/contact", answer.text
    return web


def error_on(page: str, field_id: str) -> str:
    """The GOV.UK error message shown on a field, which the summary must also link to."""
    assert f'href="#{field_id}"' in page.partition("govuk-error-summary")[2], field_id
    found = re.search(
        rf'<p id="{field_id}-error" class="govuk-error-message">(.*?)</p>', page, re.S
    )
    assert found, f"no error message on {field_id}"
    return text_of(found.group(1))


async def test_the_join_form_shows_the_nul_character_s_rule_on_its_field(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = await signed_in_at_contact(http, api, "E06000011")
        code = await web.csrf("/join/bin-collections/contact")
        contact = await web.post(
            "/join/bin-collections/contact",
            {"csrf_token": code, "contact-name": f"Ada{NUL}Jones", "contact-email": "a@b.gov.uk"},
        )
        assert contact.status_code == 400, contact.text
        assert error_on(contact.text, "contact-name") == f"Error: The full name {RULE}"
        assert "contact-email-error" not in contact.text

        fixed = await web.post(
            "/join/bin-collections/contact",
            {
                "csrf_token": code,
                "contact-name": "Ada Jones",
                "contact-email": "ada@eastriding.gov.uk",
            },
        )
        assert fixed.headers["location"] == "/join/bin-collections/brand"
        brand = await web.post(
            "/join/bin-collections/brand",
            {
                "csrf_token": code,
                "brand-name": f"East Riding{NUL}",
                "colour-primary": "#00664F",
                "logo-alt": "East Riding of Yorkshire Council",
            },
        )
        assert brand.status_code == 400, brand.text
        message = error_on(brand.text, "brand-name")
        assert message == f"Error: The council name residents will see {RULE}"

        # A service id in the address reaches the database: one it cannot hold is not found.
        missing = await web.get("/join/%00/council")
        assert missing.status_code == 404
        assert "Page not found" in missing.text


# -- 2. the join draft's cookie -----------------------------------------------------------


def cookie_of(document: bytes) -> str:
    return base64.urlsafe_b64encode(document).decode()


async def test_a_join_draft_cookie_that_does_not_read_back_starts_a_fresh_draft(api: Api) -> None:
    deep = b'{"service": "bin-collections", "brand": ' + b"[" * 1400 + b"]" * 1400 + b"}"
    started = {"service": "bin-collections", "council": "E06000014"}
    large = {**started, "contact_name": "x" * 4000, "contact_email": "a@b.gov.uk"}
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(await token(api, "council-admin", council="E06000014"))
        web.cookies["tenancy_join"] = cookie_of(json.dumps(started).encode())
        assert (await web.get("/join/bin-collections")).headers["location"].endswith("/contact")
        assert len(cookie_of(deep)) < 4096  # a cookie a browser would send
        for sent in (deep, json.dumps(large).encode()):
            web.cookies["tenancy_join"] = cookie_of(sent)
            again = await web.get("/join/bin-collections")
            assert again.status_code == 303, again.text
            assert again.headers["location"] == "/join/bin-collections/council"
            page = await web.get("/join/bin-collections/council")
            assert page.status_code == 200


# -- 3. the logo's size rule on the form ----------------------------------------------------


async def test_a_logo_too_large_or_empty_is_refused_on_its_field(api: Api) -> None:
    brand = {
        "brand-name": "City of York Council",
        "colour-primary": "#00664F",
        "colour-secondary": "#FFFFFF",
        "colour-link": "#1D70B8",
        "logo-alt": "City of York Council",
    }
    too_large = png_logo() + b"\0" * logo.MAX_LOGO_BYTES
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = await signed_in_at_contact(http, api, "E06000014")
        code = await web.csrf("/join/bin-collections/contact")
        contact = {"contact-name": "Ada Jones", "contact-email": "ada@york.gov.uk"}
        await web.post("/join/bin-collections/contact", {"csrf_token": code, **contact})
        for content, message in (
            (too_large, "The logo must be 1 MB or smaller"),
            (b"", "The selected file is empty"),
        ):
            answer = await web.post(
                "/join/bin-collections/brand",
                {"csrf_token": code, **brand},
                files={"logo": ("logo.png", content, "image/png")},
            )
            assert answer.status_code == 400, (message, answer.headers.get("location"))
            assert error_on(answer.text, "logo") == f"Error: {message}"
            assert 'value="City of York Council"' in answer.text  # what was typed is kept
        check = await web.get("/join/bin-collections/check")
        assert check.headers["location"] == "/join/bin-collections/brand"  # still to answer

        with_logo = await web.post(
            "/join/bin-collections/brand",
            {"csrf_token": code, **brand},
            files={"logo": ("logo.png", png_logo(), "image/png")},
        )
        assert with_logo.headers["location"] == "/join/bin-collections/agreement"


# -- 4. the theme preview's in-page links ---------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.in_page: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        href = found.get("href") or ""
        if tag == "a" and href.startswith("#"):
            self.in_page.append(href[1:])


def test_the_preview_s_skip_link_and_in_page_links_reach_their_targets() -> None:
    brand = Brand.model_validate(
        {"name": "City of York Council", "colours": {"primary": "#00664F"}}
    )
    tokens = design_tokens(brand, None, 1, "0" * 64, None)
    html = render_preview(tokens, css_href="theme.css", logo_href=None, service_name="Bins")
    links = Links()
    links.feed(html)
    assert links.in_page, "the preview has no in-page link"
    assert links.in_page[0] == "main-content"  # the first link skips to the content (WCAG 2.4.1)
    assert '<main id="main-content"' in html
    for target in links.in_page:
        assert target in links.ids, f"#{target} is not on the page"


# -- 5. the OpenAPI document ------------------------------------------------------------------


async def test_the_openapi_document_declares_the_token_and_the_problems(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        document = (await http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")]
    [name] = schemes
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["required"])
    expected = {
        ("get", "/tenancies/{tenancy_id}"): {401, 403, 404},
        ("post", "/tenancies/{tenancy_id}/retry"): {401, 403, 404, 409},
        ("post", "/tenancies/{tenancy_id}/offboard"): {401, 403, 404, 409},
        ("post", "/tenancies/{tenancy_id}/brand"): {401, 403, 404, 409},
        ("post", "/tenancies"): {401, 403, 422},
        ("get", "/services"): {401},
    }
    operations = [(m, p, op) for p, ops in document["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 12
    for method, path, operation in operations:
        assert operation["security"] == [{name: []}], (method, path)
        statuses = {int(s) for s in operation["responses"] if s[0] in "45"}
        assert expected.get((method, path), {401}) <= statuses, (method, path, statuses)
        for status in statuses:
            content = operation["responses"][str(status)]["content"]
            assert list(content) == ["application/problem+json"], (method, path, status)
            ref = content["application/problem+json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ProblemDetails"
        assert "Retry-After" in operation["responses"]["429"]["headers"]


async def test_docs_are_served_by_the_api_itself(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert "script-src 'self'" in docs.headers["content-security-policy"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
        assert "<script>" not in docs.text  # nothing inline, so no policy exception
        for asset in assets:
            assert re.match(r"/[^/]", asset), asset  # on this site, never another
            fetched = await http.get(asset)
            assert fetched.status_code == 200, asset
        start = await http.get("/docs/start.js")
        assert '"/openapi.json"' in start.text
        assert "validatorUrl: null" in start.text  # Swagger UI would call a public validator


# -- 6. headers, "Page not found", a bound on wrong tokens -----------------------------------

SAME_FOR_ALL = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def policy(answer: httpx.Response) -> dict[str, str]:
    found = answer.headers["content-security-policy"]
    return {part.split()[0]: part.strip() for part in found.split(";") if part.strip()}


async def test_pages_and_api_answers_carry_security_headers(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        web = Browserless(http)
        await web.sign_in(await token(api, "council-admin", council="E08000026"))
        code = await web.csrf("/join/bin-collections/council")
        await web.post(
            "/join/bin-collections/council", {"csrf_token": code, "council": "E08000026"}
        )
        pages = [await web.get(path) for path in ("/", "/sign-in", "/join/bin-collections/brand")]
        api_answers = [
            await http.get("/services"),
            await http.get("/services", headers=await api.token("auditor")),
            await http.get("/openapi.json"),
            await http.get("/static/tenancy.css"),
        ]
    for answer in pages + api_answers:
        assert answer.status_code in (200, 401), answer.url
        for name, value in SAME_FOR_ALL.items():
            assert answer.headers[name] == value, (answer.url, name)
        assert policy(answer)["frame-ancestors"] == "frame-ancestors 'none'", answer.url
    for answer in api_answers[:2]:
        assert policy(answer)["default-src"] == "default-src 'none'"
    for page in pages:
        rules = policy(page)
        assert rules["style-src"] == "style-src 'self'"  # no inline styles, so no style= either
        assert " style=" not in page.text, page.url
        [nonce] = re.findall(r"'nonce-([^']+)'", rules["script-src"])
        scripts = re.findall(r"<script([^>]*)>", page.text)
        assert scripts, page.url
        for attributes in scripts:
            # GOV.UK Frontend's inline script carries the response's nonce; the rest are files.
            assert f'nonce="{nonce}"' in attributes or 'src="/' in attributes, attributes
    assert "app-swatch" in pages[2].text  # the colour swatches, as SVG fills


async def test_an_unknown_address_is_page_not_found_on_the_web_and_a_problem_on_the_api(
    api: Api,
) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        page = await http.get("/no-such-page")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "Page not found" in page.text
        assert "govuk-template" in page.text
        for path in (f"/tenancies/{uuid.uuid4()}/nowhere", "/services/nowhere", "/audit/x/y"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"] == "application/problem+json", path


def test_wrong_tokens_are_bounded_per_client_in_a_sliding_window() -> None:
    now = [1000.0]
    failures = FailedTokens(3, 60, clock=lambda: now[0])
    for _ in range(3):
        failures.check("203.0.113.1")
        failures.failed("203.0.113.1")
        now[0] += 10
    with pytest.raises(TooManyFailures) as refused:
        failures.check("203.0.113.1")
    assert refused.value.retry_after == 30  # the first failure leaves the window at 1060
    failures.check("203.0.113.2")  # another client is not affected
    now[0] = 1060.0
    failures.check("203.0.113.1")  # the oldest has left the window: one more try
    failures.failed("203.0.113.1")
    with pytest.raises(TooManyFailures):
        failures.check("203.0.113.1")
    now[0] = 2000.0
    failures.check("203.0.113.1")
    for client in range(FailedTokens.MAX_CLIENTS + 5):
        failures.failed(f"10.0.{client // 256}.{client % 256}")
    assert len(failures._failures) == FailedTokens.MAX_CLIENTS


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def throttled(platform: Client) -> AsyncIterator[Api]:
    """An API of its own, with a low bound on wrong tokens; clients are told apart by the
    X-Forwarded-For header, which uvicorn trusts from 127.0.0.1 as from a local proxy."""
    port = free_port()
    env = {"API_PORT": str(port), "AUTH_FAILURE_LIMIT": "3", "AUTH_FAILURE_WINDOW_SECONDS": "60"}
    process = WorkerProcess("api-throttled", platform.slice, env, module="api", ready="api ready")
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready)
        yield Api(f"http://127.0.0.1:{port}", platform.pool, process)
    finally:
        await asyncio.to_thread(process.stop)


async def test_too_many_wrong_bearer_tokens_are_answered_429(throttled: Api) -> None:
    good = await throttled.token("auditor")
    wrong = {"Authorization": f"Bearer tny_{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(
        base_url=throttled.url, headers={"X-Forwarded-For": "203.0.113.10"}
    ) as http:
        for _ in range(3):
            assert (await http.get("/services", headers=wrong)).status_code == 401
        for sent in (wrong, good):  # right or wrong, the answer tells nothing now
            answer = await http.get("/services", headers=sent)
            assert answer.status_code == 429, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert (await http.get("/services")).status_code == 401  # no token: nothing guessed
        other = await http.get("/services", headers={**good, "X-Forwarded-For": "203.0.113.11"})
        assert other.status_code == 200


async def test_too_many_wrong_sign_ins_are_answered_429_on_the_page(throttled: Api) -> None:
    good = await token(throttled, "council-admin", council="E06000015")
    async with httpx.AsyncClient(
        base_url=throttled.url, headers={"X-Forwarded-For": "203.0.113.20"}
    ) as http:
        web = Browserless(http)
        code = await web.csrf("/sign-in")
        for _ in range(2):
            sent = {"csrf_token": code, "token": "tny_wrong", "next": "/"}
            assert (await web.post("/sign-in", sent)).status_code == 400
        # A session cookie with a wrong token counts too, and is thrown away.
        web.cookies["tenancy_session"] = "tny_planted"
        signed_out = await web.get("/sign-in")
        assert "tenancy_session" not in web.cookies
        code = await web.csrf("/sign-in")
        assert signed_out.status_code == 200
        for sent_token in ("tny_wrong", good):
            answer = await web.post(
                "/sign-in", {"csrf_token": code, "token": sent_token, "next": "/"}
            )
            assert answer.status_code == 429, answer.text
            assert 1 <= int(answer.headers["retry-after"]) <= 60
            assert "Wait 1 minute, then try again" in error_on(answer.text, "token")
