"""The start page, signing in with an API token, and signing out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.platform import client_of
from api.throttle import TooManyFailures
from api.web import drafts, session
from api.web.forms import Errors, text
from api.web.routing import Context, PageRoute, context, local_path, posted, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)
AFTER_SIGN_IN = "/find-a-service"


@router.get("/")
async def start(ctx: Annotated[Context, Depends(context)]) -> Response:
    return ctx.render("start.html")


@router.get("/sign-in")
async def sign_in_page(ctx: Annotated[Context, Depends(context)], next: str = "") -> Response:
    return ctx.render("sign_in.html", {"next": local_path(next, AFTER_SIGN_IN)})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await posted(request)
    ctx = await context(request)
    target = local_path(text(form, "next"), AFTER_SIGN_IN)
    token = text(form, "token")
    errors = Errors()
    principal = None
    if not token:
        errors.add("token", "Enter your sign-in token")
    else:
        try:
            principal = await ctx.deps.authenticate(token, client_of(request))
        except TooManyFailures as refused:
            minutes = -(-refused.retry_after // 60)
            errors.add(
                "token",
                "You have entered a sign-in token that was not recognised too many times. "
                f"Wait {minutes} minute{'s' if minutes != 1 else ''}, then try again",
            )
            page = ctx.render("sign_in.html", {"next": target, "errors": errors}, 429)
            page.headers["Retry-After"] = str(refused.retry_after)
            return page
        if principal is None:
            errors.add(
                "token",
                "The sign-in token was not recognised. Check you copied all of it, starting "
                "with tny_, or ask for a new one",
            )
        elif not session.is_person(principal):
            principal = None
            errors.add(
                "token",
                "This is a service token, for a shared service's software: it cannot sign in. "
                "Sign in with your own token",
            )
    if principal is None:
        # The token is never sent back into the page, not even to correct a typo.
        return ctx.render("sign_in.html", {"next": target, "errors": errors}, status_code=400)
    response = see_other(target)
    session.sign_in(response, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await posted(request)
    response = see_other("/")
    session.sign_out(response, drafts.COOKIE)
    return response
