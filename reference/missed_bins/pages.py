"""The resident's pages: start, report, confirmation, and the report looked up by reference."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader

from api.headers import IMAGE_POLICY, page_policy
from reference.missed_bins import reports
from reference.missed_bins.routing import COUNCIL_PATH, NOT_SERVED_PATH
from tenancy_sdk import Resolved, TenancyClient, Theme

SERVICE_NAME = "Report a missed bin"
CSRF_COOKIE = "missed_bins_csrf"
HERE = Path(__file__).parent

environment = Environment(
    loader=ChoiceLoader(
        [
            FileSystemLoader(HERE / "templates"),
            PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
        ]
    ),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
router = APIRouter()
council = APIRouter(prefix=COUNCIL_PATH)  # a council's pages, after routing took its slug off


def client_of(request: Request) -> TenancyClient:
    client: TenancyClient = request.app.state.tenancy
    return client


def resolved(request: Request) -> Resolved:
    found: Resolved = request.state.resolved
    return found


Here = Annotated[Resolved, Depends(resolved)]
Client = Annotated[TenancyClient, Depends(client_of)]


def _report_page(
    request: Request,
    here: Resolved,
    theme: Theme | None,
    form: reports.ReportForm,
    errors: dict[str, str],
    csrf: str,
) -> HTMLResponse:
    context = {
        "form": form,
        "errors": errors,
        "error_list": [{"text": text, "href": f"#{field}"} for field, text in errors.items()],
        "csrf": csrf,
        "containers": [
            {"value": key, "text": text, "checked": form.container == key}
            for key, text in reports.CONTAINERS.items()
        ],
    }
    return page(request, "report.html", context, 400 if errors else 200, here, theme)


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    here: Resolved | None = None,
    theme: Theme | None = None,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    html = environment.get_template(template).render(
        cspNonce=nonce,
        service_name=SERVICE_NAME,
        here=here,
        prefix=here.prefix if here else "",
        theme=theme,
        council=here.tenancy.council if here else None,
        **(context or {}),
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Security-Policy"] = page_policy(nonce)
    return response


@router.get("/", response_class=HTMLResponse)
async def councils(request: Request, client: Client) -> HTMLResponse:
    """Outside any council: which councils offer the service here."""
    served = sorted(
        (t.council for t in client.tenancies() if t.council and t.council.slug),
        key=lambda c: c.name,
    )
    return page(request, "councils.html", {"councils": served})


@council.get("/", response_class=HTMLResponse)
async def start(request: Request, here: Here, client: Client) -> HTMLResponse:
    return page(request, "start.html", here=here, theme=client.theme(here.tenancy))


@council.get("/report", response_class=HTMLResponse)
async def report_form(request: Request, here: Here, client: Client) -> HTMLResponse:
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    form = reports.ReportForm("", "", "")
    response = _report_page(request, here, client.theme(here.tenancy), form, {}, token)
    _keep_csrf(response, token, here)
    return response


@council.post("/report", response_model=None)
async def send_report(
    request: Request,
    here: Here,
    client: Client,
    address: Annotated[str, Form()] = "",
    container: Annotated[str, Form()] = "",
    details: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected or not secrets.compare_digest(expected, csrf):
        return page(
            request,
            "problem.html",
            {"title": "Your form expired"},
            403,
            here,
            client.theme(here.tenancy),
        )
    form = reports.ReportForm(address, container, details)
    if problems := form.problems():
        return _report_page(request, here, client.theme(here.tenancy), form, problems, expected)
    reference = uuid.uuid4()
    await client.run(here.tenancy, lambda conn: reports.add(conn, reference, form))
    return RedirectResponse(here.url(f"/reports/{reference}?new=1"), status_code=303)


@council.get("/reports/{reference}", response_class=HTMLResponse)
async def report(
    request: Request, here: Here, client: Client, reference: str, new: bool = False
) -> HTMLResponse:
    found: reports.Report | None = None
    try:
        wanted = uuid.UUID(reference)
    except ValueError:
        wanted = None
    if wanted is not None:
        found = await client.run(here.tenancy, lambda conn: reports.get(conn, wanted))
    theme = client.theme(here.tenancy)
    if found is None:
        return page(request, "problem.html", {"title": "Page not found"}, 404, here, theme)
    return page(request, "confirmation.html", {"report": found, "new": new}, here=here, theme=theme)


@council.get("/theme.css")
async def theme_css(here: Here, client: Client) -> Response:
    theme = client.theme(here.tenancy)
    return Response(theme.css if theme else "", media_type="text/css")


@council.get("/logo", response_model=None)
async def logo(here: Here, client: Client) -> Response:
    theme = client.theme(here.tenancy)
    if theme is None or theme.logo is None or theme.logo_media_type is None:
        return Response(status_code=404)
    # A council's SVG is sanitised by the branding worker; served as a file, never inline.
    response = FileResponse(theme.logo, media_type=theme.logo_media_type)
    response.headers["Content-Security-Policy"] = IMAGE_POLICY
    return response


@router.api_route(NOT_SERVED_PATH, methods=["GET", "POST"], include_in_schema=False)
async def not_served(request: Request) -> HTMLResponse:
    tenancy = getattr(request.state, "not_served", None)
    if tenancy is not None and tenancy.council is not None and tenancy.state in ("leaving", "gone"):
        # 410: the council was here and has left; say so rather than "not found".
        return page(request, "left.html", {"left": tenancy.council}, 410)
    return page(request, "problem.html", {"title": "Page not found"}, 404)


@router.get("/healthz", include_in_schema=False)
async def healthz(client: Client) -> dict[str, int]:
    return {"tenancies": len(client.tenancies())}


def _keep_csrf(response: Response, token: str, here: Resolved) -> None:
    response.set_cookie(
        CSRF_COOKIE, token, httponly=True, samesite="strict", path=here.prefix or "/"
    )
