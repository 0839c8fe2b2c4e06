"""Which council a request is for, decided once, before any page runs.

The SDK resolves the tenancy from the host (a council's own verified domain) or the path's first
segment (``/hackney/report``). The pages are written once, for paths without the council in them:
this middleware takes the segment off the path and keeps the tenancy and the prefix in the
request's state, so a page's links carry the prefix back.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tenancy_sdk import NotServed, TenancyClient

# Served the same for every council: GOV.UK Frontend's files and the service's own.
SHARED_PATHS = ("/assets/", "/frontend/", "/static/", "/healthz")
NOT_SERVED_PATH = "/_not-served"
# Where the council's own pages are mounted inside the application: never reachable from
# outside, as a first segment is always read as a council.
COUNCIL_PATH = "/_council"


class TenancyRouting:
    def __init__(self, app: ASGIApp, client: TenancyClient) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        if scope["type"] != "http" or path.startswith(SHARED_PATHS):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            found = self.client.resolve(Headers(scope=scope).get("host", ""), path)
        except NotServed as refused:
            if path == "/" and refused.tenancy is None:  # no council named: the index
                await self.app(scope, receive, send)
                return
            state["not_served"] = refused.tenancy
            scope = {**scope, "path": NOT_SERVED_PATH, "raw_path": NOT_SERVED_PATH.encode()}
        else:
            state["resolved"] = found
            inner = COUNCIL_PATH + (path[len(found.prefix) :] or "/")
            scope = {**scope, "path": inner, "raw_path": inner.encode()}
        await self.app(scope, receive, send)
