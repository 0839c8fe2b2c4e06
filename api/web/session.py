"""Who is using the pages, and proof that a form was sent from one of them.

Signing in stores the person's API token in a cookie the page's scripts cannot read
(``HttpOnly``), sent only over HTTPS (``Secure``; browsers also treat ``http://127.0.0.1`` and
``localhost`` as secure, which is what ``make run`` serves) and not on requests that other sites
start (``SameSite=Lax``). Every request checks the token again, as the API checks a bearer token
(:meth:`api.platform.Platform.authenticate`), so a revoked token stops working at once, the pages
have exactly the API's roles and scopes, and wrong tokens in cookies count against the client
as wrong bearer tokens do: a client that sent too many is signed out until it may try again.

CSRF: each browser gets a random seed in a cookie of its own; every form carries
HMAC(seed, the session token's hash) and a POST is refused unless it matches. Another site can
neither read the seed nor compute the value, and the value changes when someone signs in, so a
token issued before signing in (say, planted by an attacker) is worthless afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from api.platform import Platform, client_of
from api.throttle import TooManyFailures
from api.tokens import Principal, Role, digest

SESSION_COOKIE = "tenancy_session"
CSRF_COOKIE = "tenancy_csrf"
CSRF_FIELD = "csrf_token"
# A working day: a token left signed in on a shared computer does not stay usable for ever.
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Visitor:
    """The person at the browser: who they are signed in as (if anyone) and their CSRF value."""

    principal: Principal | None
    csrf_seed: str
    session_token: str | None
    new_seed: bool = False
    # The session cookie holds a token that is not known or was revoked: it goes, so that it
    # is not counted as a wrong token on every page.
    stale_session: bool = False

    @property
    def csrf_token(self) -> str:
        return csrf_value(self.csrf_seed, self.session_token)


def csrf_value(seed: str, session_token: str | None) -> str:
    bound_to = digest(session_token) if session_token else ""
    return hmac.new(seed.encode(), f"csrf|{bound_to}".encode(), hashlib.sha256).hexdigest()


def new_seed() -> str:
    return secrets.token_urlsafe(32)


async def visitor(request: Request, deps: Platform) -> Visitor:
    """The visitor of this request; a token that is unknown or revoked counts as signed out."""
    seed = request.cookies.get(CSRF_COOKIE) or ""
    fresh = not seed
    seed = seed or new_seed()
    token = request.cookies.get(SESSION_COOKIE)
    principal, stale = None, False
    if token:
        try:
            principal = await deps.authenticate(token, client_of(request))
            stale = principal is None
        except TooManyFailures:
            pass  # signed out for now, whether the token is right or not
        if principal is not None and not is_person(principal):
            principal, stale = None, True  # a service's software never signs in (see below)
    return Visitor(
        principal, seed, token if principal else None, new_seed=fresh, stale_session=stale
    )


def is_person(principal: Principal) -> bool:
    """Whether the token may sign in to the pages: a service token is its software's, which
    has the API's two endpoints for it and no use for pages made for people."""
    return principal.role is not Role.SERVICE


def csrf_ok(request: Request, sent: object) -> bool:
    seed = request.cookies.get(CSRF_COOKIE)
    if not seed or not isinstance(sent, str) or not sent:
        return False
    expected = csrf_value(seed, request.cookies.get(SESSION_COOKIE))
    return hmac.compare_digest(expected, sent)


def _set(response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )


def keep_seed(response: Response, who: Visitor) -> None:
    if who.new_seed:
        _set(response, CSRF_COOKIE, who.csrf_seed, None)
    if who.stale_session:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def sign_in(response: Response, token: str) -> None:
    _set(response, SESSION_COOKIE, token, SESSION_SECONDS)
    _set(response, CSRF_COOKIE, new_seed(), None)


def sign_out(response: Response, *also: str) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE, *also):
        response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")
