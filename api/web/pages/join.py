"""Join a service: council, contact, brand, agreement, then check the answers and send.

One question per page, each answer kept in the browser's draft (:mod:`api.web.drafts`) until
the last page, which checks them all again and stores the request through
:func:`api.routes.tenancies.create_tenancy`, the code path of ``POST /tenancies``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from api.access import runs
from api.headers import IMAGE_POLICY
from api.problems import Problem
from api.routes.tenancies import check_onboarding_scope, create_tenancy
from api.schemas import AcceptanceIn, OnboardIn
from api.tokens import Principal, Role
from api.web import drafts
from api.web.forms import (
    Errors,
    acceptance_answer,
    brand_fields,
    check_brand,
    contact_answer,
    find_council,
    keep_valid_logo,
    text,
    uploaded_logo,
)
from api.web.routing import Context, PageRoute, WebError, posted, see_other, signed_in
from services.branding.brand_file import BrandRefused, validate_brand
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from shared.assets import AssetMissing, AssetStore
from shared.catalogue import ServiceManifest
from shared.events import Contact
from shared.text import PlainText

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGES = ("council", "contact", "brand", "agreement", "check")
# Reaches the database: text it can hold, or the page is not found.
Service = Annotated[PlainText, "a service id"]


async def joining(ctx: Context, service_id: str) -> tuple[Principal, ServiceManifest]:
    """The service, if this visitor may ask to join it: the API's roles and scopes."""
    who = await ctx.require(Role.OPERATOR, Role.COUNCIL_ADMIN)
    async with ctx.deps.pool.acquire() as conn:
        manifest = await CatalogueRepository(conn).get(service_id)
    if manifest is None:
        raise WebError(404, "")
    check_onboarding_scope(who, who.council or "", manifest.id)
    if who.role is Role.OPERATOR and not runs(who, manifest.id, manifest.owner_council):
        raise Problem(403, f"your sign-in does not run {manifest.name}")
    return who, manifest


def after(page: str, service_id: str, form_return: str) -> str:
    if form_return == "check":
        return f"/join/{service_id}/check"
    return f"/join/{service_id}/{PAGES[PAGES.index(page) + 1]}"


def assets(ctx: Context) -> AssetStore:
    return AssetStore(ctx.deps.settings.assets_dir)


def step(
    ctx: Context,
    page: str,
    manifest: ServiceManifest,
    draft: drafts.JoinDraft,
    values: dict[str, Any],
    errors: Errors | None = None,
) -> Response:
    """A page of the form, showing what was typed and, after a post, what to fix."""
    back = f"/find-a-service/{manifest.id}" if page == "council" else None
    if back is None:
        back = f"/join/{manifest.id}/{PAGES[PAGES.index(page) - 1]}"
    return_to = ctx.request.query_params.get("return_to", "")
    response = ctx.render(
        f"join/{page}.html",
        {
            "service": manifest,
            "draft": draft,
            "values": values,
            "errors": errors or Errors(),
            "back": f"/join/{manifest.id}/check" if return_to == "check" else back,
            "return_to": "check" if return_to == "check" else "",
            "council_name": ctx.deps.councils.name_of(draft.council) if draft.council else "",
        },
        status_code=400 if errors else 200,
    )
    return response


# -- start and council ------------------------------------------------------------------------


@router.get("/join/{service_id}")
async def begin(service_id: Service, ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    return see_other(f"/join/{service_id}/{draft.first_missing() or 'check'}")


@router.get("/join/{service_id}/council")
async def council_page(
    service_id: Service, ctx: Annotated[Context, Depends(signed_in)]
) -> Response:
    who, manifest = await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    typed = draft.council or (who.council if who.role is Role.COUNCIL_ADMIN else "") or ""
    return step(ctx, "council", manifest, draft, {"council": typed})


@router.post("/join/{service_id}/council")
async def council_answer(service_id: Service, request: Request) -> Response:
    form = await posted(request)
    ctx = await signed_in(request)
    who, manifest = await joining(ctx, service_id)
    draft = drafts.load(request, service_id)
    typed = text(form, "council")
    errors = Errors.reading(form)
    record, problem = find_council(ctx.deps.councils, typed)
    if problem is not None:
        errors.add("council", problem)
    elif record is not None and who.role is Role.COUNCIL_ADMIN and record.gss != who.council:
        errors.add(
            "council",
            f"Your sign-in is for {ctx.deps.councils.name_of(who.council or '')}; you can only "
            "ask to join for that council",
        )
    elif record is not None:
        async with ctx.deps.pool.acquire() as conn:
            existing = await TenancyRepository(conn).live_tenancy_of(record.gss, manifest.id)
        if existing:
            errors.add(
                "council",
                f"{record.name} has already joined {manifest.name} (tenancy {existing})",
            )
    if errors or record is None:
        return step(ctx, "council", manifest, draft, {"council": typed}, errors)
    if draft.council != record.gss:
        # A brand made for another council must not carry over to this one.
        draft = drafts.JoinDraft(**{**draft.model_dump(), "brand": None, "brand_done": False})
    draft.council = record.gss
    response = see_other(after("council", service_id, text(form, "return_to")))
    drafts.save(response, draft)
    return response


# -- contact ----------------------------------------------------------------------------------


@router.get("/join/{service_id}/contact")
async def contact_page(
    service_id: Service, ctx: Annotated[Context, Depends(signed_in)]
) -> Response:
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    if draft.council is None:
        return see_other(f"/join/{service_id}/council")
    values = {
        "contact_name": draft.contact_name or "",
        "contact_email": draft.contact_email or "",
        "purchase_order": draft.purchase_order or "",
    }
    return step(ctx, "contact", manifest, draft, values)


@router.post("/join/{service_id}/contact")
async def contact_post(service_id: Service, request: Request) -> Response:
    form = await posted(request)
    ctx = await signed_in(request)
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(request, service_id)
    errors = Errors.reading(form)
    values = contact_answer(form, errors)
    if errors:
        return step(ctx, "contact", manifest, draft, values, errors)
    draft.contact_name = values["contact_name"]
    draft.contact_email = values["contact_email"]
    draft.purchase_order = values["purchase_order"] or None
    response = see_other(after("contact", service_id, text(form, "return_to")))
    drafts.save(response, draft)
    return response


# -- brand ------------------------------------------------------------------------------------


def brand_values(draft: drafts.JoinDraft, council_name: str) -> dict[str, Any]:
    brand = draft.brand or drafts.Brand(name=council_name, logo_alt=council_name)
    return {
        **brand.model_dump(),
        "welsh_name": brand.welsh_name or "",
        "domain": brand.domain or "",
    }


@router.get("/join/{service_id}/brand")
async def brand_page(service_id: Service, ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    if draft.council is None:
        return see_other(f"/join/{service_id}/council")
    record = ctx.deps.councils.resolve(draft.council)
    return step(ctx, "brand", manifest, draft, brand_values(draft, record.name))


@router.post("/join/{service_id}/brand")
async def brand_post(service_id: Service, request: Request) -> Response:
    form = await posted(request)
    ctx = await signed_in(request)
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(request, service_id)
    if draft.council is None:
        return see_other(f"/join/{service_id}/council")
    store = assets(ctx)
    errors = Errors.reading(form)
    raw = brand_fields(form, manifest.branding.custom_domain)
    content = await uploaded_logo(form, errors)
    fresh = content is not None
    if text(form, "remove-logo") == "yes" and not fresh:
        draft.logo = None
    if content is None and draft.logo is not None and errors.of("logo") is None:
        try:
            content = store.get(draft.logo)
        except AssetMissing:
            draft.logo = None
    brand = check_brand(raw, content, store, manifest, errors)
    colours = raw["colours"]
    draft.brand = drafts.Brand(
        name=raw["name"],
        welsh_name=raw["welsh_name"],
        logo_alt=raw["logo_alt"],
        primary=colours["primary"],
        secondary=colours["secondary"],
        link=colours["link"],
        domain=raw["domain"],
    )
    # The logo's own errors (size, an empty file) come before the branding rules, which then
    # see no logo and may well pass: the page must still say what is wrong with the file.
    if brand is None or errors:
        draft.brand_done = False
        if fresh and content is not None:
            draft.logo = keep_valid_logo(content, store, errors)
        values = {**raw, **colours, "welsh_name": raw["welsh_name"] or ""}
        values |= {"logo_alt": raw["logo_alt"] or "", "domain": raw["domain"] or ""}
        response = step(ctx, "brand", manifest, draft, values, errors)
    else:
        draft.logo = brand.logo
        draft.brand_done = True
        response = see_other(after("brand", service_id, text(form, "return_to")))
    drafts.save(response, draft)
    return response


@router.get("/join/{service_id}/logo")
async def draft_logo(service_id: Service, ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    """The logo chosen so far, to show on the form; only its own visitor's draft names it."""
    await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    if draft.logo is None:
        raise WebError(404, "")
    try:
        content = assets(ctx).get(draft.logo)
    except AssetMissing:
        raise WebError(404, "") from None
    return image(content, draft.logo.media_type)


def image(content: bytes, media_type: str) -> Response:
    # A council's SVG passed the logo rules; this keeps it inert even opened on its own.
    headers = {
        "Content-Security-Policy": IMAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
    }
    return Response(content, media_type=media_type, headers=headers)


# -- agreement --------------------------------------------------------------------------------


@router.get("/join/{service_id}/agreement")
async def agreement_page(
    service_id: Service, ctx: Annotated[Context, Depends(signed_in)]
) -> Response:
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    if draft.council is None:
        return see_other(f"/join/{service_id}/council")
    values = {
        "accepted_name": draft.accepted_name or draft.contact_name or "",
        "accepted_role": draft.accepted_role or "",
        "accept": draft.agreement_version == manifest.agreement.version,
    }
    return step(ctx, "agreement", manifest, draft, values)


@router.post("/join/{service_id}/agreement")
async def agreement_post(service_id: Service, request: Request) -> Response:
    form = await posted(request)
    ctx = await signed_in(request)
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(request, service_id)
    errors = Errors.reading(form)
    values: dict[str, Any] = acceptance_answer(form, errors)
    if errors:
        values["accept"] = text(form, "accept") == "yes"
        return step(ctx, "agreement", manifest, draft, values, errors)
    draft.accepted_name = values["accepted_name"]
    draft.accepted_role = values["accepted_role"]
    draft.agreement_version = manifest.agreement.version
    response = see_other(after("agreement", service_id, text(form, "return_to")))
    drafts.save(response, draft)
    return response


# -- check and send ---------------------------------------------------------------------------


@router.get("/join/{service_id}/check")
async def check_page(service_id: Service, ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    _, manifest = await joining(ctx, service_id)
    draft = drafts.load(ctx.request, service_id)
    if (missing := draft.first_missing()) is not None:
        return see_other(f"/join/{service_id}/{missing}")
    return step(ctx, "check", manifest, draft, {})


@router.post("/join/{service_id}/check")
async def send(service_id: Service, request: Request) -> Response:
    await posted(request)
    ctx = await signed_in(request)
    who, manifest = await joining(ctx, service_id)
    draft = drafts.load(request, service_id)
    missing = draft.first_missing()
    if missing is not None or draft.council is None or draft.brand is None:
        return see_other(f"/join/{service_id}/{missing or 'council'}")
    errors = Errors()
    # Everything again, through the same rules: the draft came back from the browser.
    store = assets(ctx)
    brand = None
    try:
        content = store.get(draft.logo) if draft.logo is not None else None
        brand = validate_brand(draft.brand.raw(), content, store, [])
    except AssetMissing:
        errors.add("brand", "The logo is no longer stored: choose it again")
    except BrandRefused as refused:
        for problem in refused.problems:
            errors.add("brand", "Your brand: " + problem.partition(": ")[2])
    try:
        body = OnboardIn(
            council=draft.council,
            service=manifest.id,
            acceptance=AcceptanceIn(
                agreement_version=draft.agreement_version or "",
                name=draft.accepted_name or "",
                role=draft.accepted_role or "",
            ),
            contact=Contact(name=draft.contact_name or "", email=draft.contact_email or ""),
            purchase_order=draft.purchase_order,
        )
    except ValidationError:
        errors.add("council", "Check the contact and agreement answers and send them again")
        body = None
    if body is not None and brand is not None and not errors:
        try:
            tenancy_id = await create_tenancy(ctx.deps, who, body, brand, source="tenancy/web")
        except Problem as problem:
            if problem.status != 422:
                raise
            where, _, message = problem.detail.partition(": ")
            page = "agreement" if where.startswith("acceptance") else "council"
            errors.add(page, message[:1].upper() + message[1:])
        else:
            response = see_other(f"/joined/{tenancy_id}")
            drafts.forget(response)
            return response
    return step(ctx, "check", manifest, draft, {}, errors)
