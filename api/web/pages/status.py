"""A tenancy after the request: the confirmation, its status as it is provisioned, the theme
preview once its brand is applied, and the operator's retry of a failed one.

Every page reads the tenancy through the API's own handler (:func:`tenancy_status`), so a
tenancy outside the visitor's scope is "not found" here exactly as it is to the API.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from api.access import TenancyScope, runs, sees
from api.routes.tenancies import retry, tenancy_status
from api.tokens import Principal, Role
from api.web.pages.join import image
from api.web.presenters import FINISHED, STEPS, day, state_tag, when
from api.web.routing import Context, PageRoute, WebError, posted, see_other, signed_in
from services.branding.preview import render_preview
from services.onboarding.repository import CatalogueRepository
from shared.catalogue import ServiceManifest

router = APIRouter(route_class=PageRoute, include_in_schema=False)
READERS = (Role.OPERATOR, Role.COUNCIL_ADMIN, Role.FINANCE)
# How often the page's script asks again while the workers provision; without script the page
# offers a link to refresh, as an automatic reload would take the page away from its reader.
REFRESH_SECONDS = 2


async def read(ctx: Context, tenancy_id: uuid.UUID) -> tuple[Principal, dict[str, Any]]:
    who = await ctx.require(*READERS)
    return who, await tenancy_status(tenancy_id, ctx.deps, who)


async def manifest_of(ctx: Context, service_id: str) -> ServiceManifest | None:
    async with ctx.deps.pool.acquire() as conn:
        return await CatalogueRepository(conn).get(service_id)


@router.get("/joined/{tenancy_id}")
async def confirmation(
    tenancy_id: uuid.UUID, ctx: Annotated[Context, Depends(signed_in)]
) -> Response:
    _, found = await read(ctx, tenancy_id)
    manifest = await manifest_of(ctx, found["service"])
    return ctx.render(
        "joined.html",
        {"tenancy": found, "service": manifest, "tenancy_service_name": _name(manifest, found)},
    )


@router.get("/tenancy/{tenancy_id}")
async def status_page(
    tenancy_id: uuid.UUID, ctx: Annotated[Context, Depends(signed_in)]
) -> Response:
    who, found = await read(ctx, tenancy_id)
    manifest = await manifest_of(ctx, found["service"])
    timeline = [
        {
            "step": STEPS.get(item["step"], item["step"]),
            "done": item["status"] == "done",
            "status": item["status"],
            "at": when(item["at"]),
            "after": f"{item['after_seconds']:.1f} seconds",
        }
        for item in found["timeline"]
    ]
    may_retry = (
        found["state"] == "failed"
        and who.role is Role.OPERATOR
        and manifest is not None
        and runs(who, manifest.id, manifest.owner_council)
    )
    return ctx.render(
        "status.html",
        {
            "tenancy": found,
            "service": manifest,
            "tenancy_service_name": _name(manifest, found),
            "tag": state_tag(found["state"]),
            "timeline": timeline,
            "finished": found["state"] in FINISHED,
            "refresh_seconds": REFRESH_SECONDS,
            "may_retry": may_retry,
            "failed_step": STEPS.get(found["failed_step"] or "", found["failed_step"]),
            "moved_into": moved_into(who, found, manifest),
        },
    )


def moved_into(
    who: Principal, found: dict[str, Any], manifest: ServiceManifest | None
) -> dict[str, Any] | None:
    """Where a reorganised tenancy went, in words. The successor's tenancy is in the same
    service; it is linked only for those who may open it, by the same rule as any tenancy, so a
    predecessor's admin is told whose it is rather than sent to a page that is not found."""
    into = found.get("reorganised_into")
    if into is None:
        return None
    visible = manifest is not None and sees(
        who, TenancyScope(into["council"], found["service"], manifest.owner_council)
    )
    return {
        **into,
        "vesting": day(into["vesting"]),
        "moved": when(found["reorganised_at"]),
        "href": f"/tenancy/{into['id']}" if visible else None,
    }


@router.post("/tenancy/{tenancy_id}/retry")
async def retry_post(tenancy_id: uuid.UUID, request: Request) -> Response:
    await posted(request)
    ctx = await signed_in(request)
    who = await ctx.require(Role.OPERATOR)
    await retry(tenancy_id, Response(), ctx.deps, who)
    back = (await request.form()).get("back")
    return see_other("/manage" if back == "manage" else f"/tenancy/{tenancy_id}")


# -- the theme, as residents will see it ------------------------------------------------------


def theme_file(ctx: Context, found: dict[str, Any], part: str) -> Path:
    """A file of the tenancy's current theme, by the path its ``branding.applied`` recorded."""
    relative = (found.get("branding") or {}).get(part)
    if not relative:
        raise WebError(404, "")
    root = ctx.deps.settings.themes_dir.resolve()
    path = (root / str(relative)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise WebError(404, "")
    return path


@router.get("/tenancy/{tenancy_id}/preview")
async def preview(tenancy_id: uuid.UUID, ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    _, found = await read(ctx, tenancy_id)
    tokens = json.loads(theme_file(ctx, found, "tokens").read_text(encoding="utf-8"))
    manifest = await manifest_of(ctx, found["service"])
    has_logo = bool((found.get("branding") or {}).get("logo"))
    html = render_preview(
        tokens,
        css_href=f"/tenancy/{tenancy_id}/theme/css",
        logo_href=f"/tenancy/{tenancy_id}/theme/logo" if has_logo else None,
        service_name=_name(manifest, found),
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
                "frame-ancestors 'self'"
            ),
            # The status page shows it in a frame; no other site may.
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        },
    )


@router.get("/tenancy/{tenancy_id}/theme/{part}")
async def theme(
    tenancy_id: uuid.UUID, part: str, ctx: Annotated[Context, Depends(signed_in)]
) -> Response:
    if part not in ("css", "logo"):
        raise WebError(404, "")
    _, found = await read(ctx, tenancy_id)
    path = theme_file(ctx, found, part)
    kinds = {".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}
    return image(path.read_bytes(), kinds.get(path.suffix, "application/octet-stream"))


def _name(manifest: ServiceManifest | None, found: dict[str, Any]) -> str:
    return manifest.name if manifest is not None else str(found["service"])
