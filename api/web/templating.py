"""Rendering pages: our templates beside the GOV.UK Frontend macros of ``govuk-frontend-jinja``."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader

from api.headers import page_policy
from api.tokens import Role
from api.web.session import CSRF_FIELD, Visitor, keep_seed
from shared.events import HEX_COLOUR

TEMPLATES = Path(__file__).parent / "templates"
SERVICE_NAME = "Join a shared council service"

environment = Environment(
    loader=ChoiceLoader(
        [
            FileSystemLoader(TEMPLATES),
            PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
        ]
    ),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _colour(value: object) -> str:
    # Only a colour reaches an SVG fill, whatever was typed.
    return value if isinstance(value, str) and re.fullmatch(HEX_COLOUR, value) else "transparent"


environment.filters["colour"] = _colour


def navigation(request: Request, who: Visitor) -> list[dict[str, Any]]:
    """The service navigation for this visitor's role: only places they may go."""
    if who.principal is None:
        return []
    role = who.principal.role
    items = [("Find a service", "/find-a-service")]
    if role in (Role.OPERATOR, Role.COUNCIL_ADMIN, Role.FINANCE):
        items.append(("Tenancies", "/manage"))
        items.append(("Usage and invoices", "/manage/billing"))
    path = request.url.path
    chosen = max(
        (href for _, href in items if path == href or path.startswith(href + "/")),
        key=len,
        default=None,
    )
    return [{"text": text, "href": href, "active": href == chosen} for text, href in items]


def page(
    request: Request,
    who: Visitor,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    # GOV.UK Frontend's template marks the body as scripted with one inline script; the
    # policy lets through only a script carrying this response's own nonce.
    nonce = secrets.token_urlsafe(18)
    values = {
        "cspNonce": nonce,
        "request": request,
        "who": who,
        "principal": who.principal,
        "csrf_field": CSRF_FIELD,
        "csrf_token": who.csrf_token,
        "service_name": SERVICE_NAME,
        "navigation": navigation(request, who),
        **(context or {}),
    }
    html = environment.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code)
    # Pages show what the visitor may see: never from a shared cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = page_policy(nonce)
    keep_seed(response, who)
    return response
