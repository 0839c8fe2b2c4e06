"""Security headers on every response the API process sends: its JSON, its pages, its files.

A response that sets a header itself keeps it: pages carry a policy with their own nonce, the
theme preview may be framed by the status page, a logo has a policy of its own.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing may load, run or frame: right for JSON, files and anything not written as a page.
NOTHING = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
DEFAULTS = {
    "Content-Security-Policy": NOTHING,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Addresses hold tenancy ids: other sites (an agreement, a council's links) get none.
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


# A logo served as a file: nothing may load or run, only the SVG's own inline styles apply.
IMAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


def page_policy(nonce: str) -> str:
    """The GOV.UK Frontend pages' policy: scripts, styles, images and fonts from this site
    only, plus the one inline script holding ``nonce``; no inline styles; framed by nobody."""
    return (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; "
        "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: adds each of :data:`DEFAULTS` that a response has not set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULTS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
