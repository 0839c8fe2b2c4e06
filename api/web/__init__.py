"""The web pages: find a service, join it, follow it, and the operators' views.

Server-rendered with GOV.UK Frontend, by the API process itself and through its code: the same
tokens, roles and scopes, the same handlers for reading and changing tenancies. Every page works
without JavaScript; the script only initialises GOV.UK Frontend and keeps the status page fresh.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from api.problems import on_http as as_problem
from api.web.pages import ROUTERS
from api.web.routing import not_found
from shared import govuk_frontend
from shared.logging import get_logger

log = get_logger(__name__)
HERE = Path(__file__).parent


def install(app: FastAPI, api_roots: frozenset[str]) -> None:
    """Add the pages and their assets to the API's application. Every address whose first
    segment is not one of ``api_roots`` is the pages': one that does not exist is answered with
    GOV.UK's "Page not found", where the API's own keep their problem documents."""
    for router in ROUTERS:
        app.include_router(router)

    async def on_http(request: Request, error: Exception) -> Response:
        if not isinstance(error, HTTPException):
            raise error
        if request.url.path.lstrip("/").partition("/")[0] in api_roots:
            return await as_problem(request, error)
        return await not_found(request, error)

    app.add_exception_handler(HTTPException, on_http)
    govuk_frontend.mount(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")
