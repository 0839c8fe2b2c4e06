"""What every page handler shares: the visitor, sign-in and role checks, CSRF, and errors
answered as GOV.UK-style pages instead of the API's problem documents."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from api.access import allow
from api.platform import Platform, platform
from api.problems import Problem
from api.tokens import Principal, Role
from api.web.session import CSRF_FIELD, Visitor, csrf_ok, visitor
from api.web.templating import page
from shared.logging import get_logger

log = get_logger(__name__)

TITLES = {
    400: "There is a problem with the request",
    403: "You cannot do this",
    404: "Page not found",
    405: "There is a problem with the request",
    409: "This cannot be done now",
    422: "There is a problem with the request",
}


class WebError(Exception):
    def __init__(self, status: int, message: str, title: str | None = None) -> None:
        self.status = status
        self.message = message
        self.title = title or TITLES.get(status, "Sorry, there is a problem with the service")
        super().__init__(message)


class SignInRequired(Exception):
    pass


@dataclass(frozen=True)
class Context:
    request: Request
    deps: Platform
    who: Visitor

    @property
    def principal(self) -> Principal:
        if self.who.principal is None:
            raise SignInRequired
        return self.who.principal

    async def require(self, *roles: Role) -> Principal:
        """The signed-in principal if its role is one of ``roles``: the API's own rule."""
        return await allow(*roles)(self.principal)

    def render(
        self, template: str, context: dict[str, Any] | None = None, status_code: int = 200
    ) -> Response:
        values = {"signed_in_as": self.signed_in_as(), **(context or {})}
        return page(self.request, self.who, template, values, status_code)

    def signed_in_as(self) -> str:
        found = self.who.principal
        if found is None:
            return "You are not signed in."
        role = found.role.value.replace("-", " ")
        scope = f" for {self.deps.councils.name_of(found.council)}" if found.council else ""
        service = f", service {found.service}" if found.service else ""
        return f"Signed in as {role}{scope}{service}."


async def context(request: Request) -> Context:
    found: Context | None = getattr(request.state, "web_context", None)
    if found is None:
        deps = platform(request)
        found = Context(request, deps, await visitor(request, deps))
        request.state.web_context = found
    return found


async def signed_in(request: Request) -> Context:
    found = await context(request)
    _ = found.principal
    return found


async def posted(request: Request) -> FormData:
    """The form, once its CSRF value is checked: 403 with a page saying what to do if not."""
    form = await request.form()
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        raise WebError(
            403,
            "The form could not be sent because it was missing its security code or the code "
            "had expired. Go back, reload the page and try again.",
            "Your form could not be sent",
        )
    return form


def local_path(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site; never a redirect elsewhere."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target:
        return default
    return target


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class PageRoute(APIRoute):
    """A route whose failures are pages: the API's problems (403, 404, 409, 422) become
    GOV.UK-style error pages, and a visitor who is not signed in is sent to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                if request.method != "GET":
                    target = "/"
                return see_other("/sign-in?next=" + quote(target, safe="/"))
            except WebError as error:
                return await _error_page(request, error.status, error.title, error.message)
            except Problem as error:
                return await _error_page(
                    request, error.status, TITLES.get(error.status), _sentence(error.detail)
                )
            except RequestValidationError:
                return await _error_page(request, 404, None, "Check the web address is correct.")
            except HTTPException as error:
                return await _error_page(request, error.status_code, None, str(error.detail))

        return answer


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


async def not_found(request: Request, error: HTTPException) -> Response:
    """A page for an address no page or file answers (or a method none takes there)."""
    message = "Check the web address is correct." if error.status_code != 404 else ""
    response = await _error_page(request, error.status_code, None, message)
    for name, value in (error.headers or {}).items():
        response.headers.setdefault(name, value)
    return response


async def _error_page(request: Request, status: int, title: str | None, message: str) -> Response:
    found = await context(request)
    if status == 404:
        # As the API does: no hint whether the thing exists but belongs to someone else.
        message = "If you typed the web address, check it is correct. " + (
            "If you followed a link, it may be for something you cannot see."
        )
    return found.render(
        "error.html",
        {"title": title or TITLES.get(status, "Sorry, there is a problem"), "message": message},
        status_code=status,
    )
