"""Tenancies: join a service, follow it, retry it, change its brand, leave, read its usage."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.access import TenancyScope, allow, runs, sees, sql_scope
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.reorganised import reorganisation_of
from api.schemas import BrandIn, OffboardIn, OnboardIn
from api.tokens import Principal, Role
from services.branding.brand_file import BrandRefused, validate_brand
from services.branding.repository import Requests
from services.metering.periods import Period
from services.metering.repository import Billing, usage_of
from services.onboarding import service as onboarding
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from shared import audit
from shared.assets import AssetStore
from shared.db import Connection
from shared.events import Brand, BrandChangeRequested, BrandChangeRequestedData
from shared.text import PlainText

router = APIRouter(tags=["tenancies"])
TenancyId = Annotated[uuid.UUID, "a tenancy id"]


async def scope_of(conn: Connection, tenancy_id: str) -> TenancyScope | None:
    row = await conn.fetchrow(
        "SELECT t.council_gss, t.service_id, s.owner_council FROM onboarding.tenancies t"
        " JOIN onboarding.services s ON s.id = t.service_id WHERE t.id = $1",
        tenancy_id,
    )
    return TenancyScope(row[0], row[1], row[2]) if row else None


async def visible(conn: Connection, who: Principal, tenancy_id: uuid.UUID) -> str:
    """The tenancy's id if the caller may see it; otherwise 404, as if it did not exist."""
    found = await scope_of(conn, str(tenancy_id))
    if found is None or not sees(who, found):
        raise Problem(404, f"no tenancy {tenancy_id}")
    return str(tenancy_id)


def with_timeline(status: dict[str, Any]) -> dict[str, Any]:
    """Each step with the seconds it came after the request, for people following it."""
    start = datetime.fromisoformat(status["requested_at"])
    events = [("requested", "done", status["requested_at"])]
    events += [("registered", "done", status["registered_at"])] if status["registered_at"] else []
    events += [(s["step"], s["status"], s["at"]) for s in status["steps"]]
    for key in ("active", "failed", "offboarding", "offboarded", "reorganised"):
        if status.get(f"{key}_at"):
            events.append((key, "done", status[f"{key}_at"]))
    status["timeline"] = [
        {
            "step": step,
            "status": state,
            "at": at,
            "after_seconds": round((datetime.fromisoformat(at) - start).total_seconds(), 3),
        }
        for step, state, at in sorted(events, key=lambda e: e[2])
    ]
    return status


def accepted(response: Response, tenancy_id: str, state: str, **extra: Any) -> dict[str, Any]:
    url = f"/tenancies/{tenancy_id}"
    response.headers["Location"] = url
    return {"id": tenancy_id, "state": state, "status_url": url, **extra}


@router.post("/tenancies", status_code=202, responses=documented(401, 403, 422, 429))
async def onboard(
    body: OnboardIn,
    response: Response,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.COUNCIL_ADMIN))],
) -> dict[str, Any]:
    """Ask for a council to join a service, accepting its agreement; ``202`` with the status
    URL once the request is stored. The workers do the rest."""
    check_onboarding_scope(who, body.council, body.service)
    brand = build_brand(deps, body.brand) if body.brand else None
    tenancy_id = await create_tenancy(deps, who, body, brand, source="tenancy/api")
    return accepted(response, tenancy_id, "requested")


def check_onboarding_scope(who: Principal, council: str, service: str) -> None:
    """``403`` unless the caller may ask for ``council`` to join ``service`` (so far as the
    request alone tells; the service's owner is checked once it is read)."""
    if who.role is Role.COUNCIL_ADMIN and council != who.council:
        raise Problem(403, f"this token acts for council {who.council} only")
    if who.service is not None and service != who.service:
        raise Problem(403, f"this token is for service {who.service} only")


async def create_tenancy(
    deps: Platform, who: Principal, body: OnboardIn, brand: Brand | None, *, source: str
) -> str:
    """Store a request to join, with its acceptance and audit entry; the tenancy's id.

    The one way the API and the web pages create a tenancy. ``brand`` has passed the branding
    rules already (``body.brand`` is not read); refusals are ``Problem`` 403 or 422."""
    check_onboarding_scope(who, body.council, body.service)
    attributes = {"council": body.council, "service": body.service}
    try:
        async with deps.request("onboarding", "POST /tenancies", attributes) as tx:
            manifest = await CatalogueRepository(tx.conn).get(body.service)
            if (
                who.role is Role.OPERATOR
                and manifest is not None
                and not runs(who, manifest.id, manifest.owner_council)
            ):
                raise Problem(403, f"this token does not run {body.service}")
            tenancy_id = await onboarding.accept_request(
                tx,
                deps.councils,
                council_code=body.council,
                service_id=body.service,
                contact=body.contact,
                brand=brand,
                source=source,
                accepted_by=onboarding.Person(body.acceptance.name, body.acceptance.role),
                agreement_version=body.acceptance.agreement_version,
                purchase_order=body.purchase_order,
            )
            await audit.append(
                tx.conn,
                actor=who.actor,
                action="onboard",
                tenancy_id=tenancy_id,
                detail={
                    "council": body.council,
                    "service": body.service,
                    "accepted_by": body.acceptance.name,
                    "agreement_version": body.acceptance.agreement_version,
                },
            )
    except onboarding.RequestRefused as refusal:
        raise Problem(422, str(refusal), [str(refusal)]) from None
    return tenancy_id


def build_brand(deps: Platform, body: BrandIn) -> Brand:
    raw = body.model_dump(mode="json", exclude={"logo_base64"})
    content = None
    if body.logo_base64 is not None:
        try:
            content = base64.b64decode(body.logo_base64, validate=True)
        except (binascii.Error, ValueError):
            raise Problem(422, "brand.logo_base64: not valid base64") from None
    try:
        return validate_brand(raw, content, AssetStore(deps.settings.assets_dir), [])
    except BrandRefused as refused:
        errors = [f"brand.{problem}" for problem in refused.problems]
        raise Problem(422, "; ".join(errors), errors) from None


@router.get("/tenancies", responses=documented(401, 403, 422, 429))
async def list_tenancies(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.COUNCIL_ADMIN, Role.FINANCE))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The tenancies this token may see, newest first."""
    clause, params = sql_scope(who, 2)
    async with deps.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT t.id::text, t.council_gss, t.council_name, t.service_id, t.state,"
            " t.requested_at FROM onboarding.tenancies t"
            f" JOIN onboarding.services s ON s.id = t.service_id WHERE {clause}"
            " ORDER BY t.requested_at DESC LIMIT $1",
            limit,
            *params,
        )
    return [
        {
            "id": r["id"],
            "council": r["council_gss"],
            "council_name": r["council_name"],
            "service": r["service_id"],
            "state": r["state"],
            "requested_at": r["requested_at"].isoformat(),
        }
        for r in rows
    ]


@router.get("/tenancies/{tenancy_id}", responses=documented(401, 403, 404, 422, 429))
async def tenancy_status(
    tenancy_id: uuid.UUID,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.COUNCIL_ADMIN, Role.FINANCE))],
) -> dict[str, Any]:
    """A tenancy's state, its steps and a timeline with the seconds each took."""
    async with deps.pool.acquire() as conn:
        found = await TenancyRepository(conn).status(await visible(conn, who, tenancy_id))
        if found is not None:
            found.update(await reorganisation_of(conn, found["id"]))
    if found is None:
        raise Problem(404, f"no tenancy {tenancy_id}")
    return with_timeline(found)


@router.post(
    "/tenancies/{tenancy_id}/retry",
    status_code=202,
    responses=documented(401, 403, 404, 409, 422, 429),
)
async def retry(
    tenancy_id: uuid.UUID,
    response: Response,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR))],
) -> dict[str, Any]:
    """Provision a failed tenancy again; what was done stays done."""
    try:
        async with deps.request("onboarding", "POST retry", {"tenancy.id": str(tenancy_id)}) as tx:
            found = await visible(tx.conn, who, tenancy_id)
            await onboarding.retry(tx, deps.councils, found)
            await audit.append(tx.conn, actor=who.actor, action="retry", tenancy_id=found)
    except onboarding.RequestRefused as refusal:
        raise Problem(409, str(refusal)) from None
    return accepted(response, str(tenancy_id), "registered")


@router.post(
    "/tenancies/{tenancy_id}/offboard",
    status_code=202,
    responses=documented(401, 403, 404, 409, 422, 429),
)
async def offboard(
    tenancy_id: uuid.UUID,
    body: OffboardIn,
    response: Response,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.COUNCIL_ADMIN))],
) -> dict[str, Any]:
    """Export the tenancy's data, then remove it; its meters close with a final invoice."""
    try:
        async with deps.request(
            "onboarding", "POST offboard", {"tenancy.id": str(tenancy_id)}
        ) as tx:
            found = await visible(tx.conn, who, tenancy_id)
            await onboarding.request_offboarding(tx, found, "tenancy/api", body.reason)
            await audit.append(
                tx.conn,
                actor=who.actor,
                action="offboard",
                tenancy_id=found,
                detail={"reason": body.reason},
            )
    except onboarding.RequestRefused as refusal:
        raise Problem(409, str(refusal)) from None
    return accepted(response, str(tenancy_id), "offboarding")


@router.post(
    "/tenancies/{tenancy_id}/brand",
    status_code=202,
    responses=documented(401, 403, 404, 409, 422, 429),
)
async def change_brand(
    tenancy_id: uuid.UUID,
    body: BrandIn,
    response: Response,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.COUNCIL_ADMIN))],
) -> dict[str, Any]:
    """Make a new theme version from a brand; the same rules as the CLI, every reason at once."""
    brand = build_brand(deps, body)
    async with deps.pool.acquire() as conn:
        found = await visible(conn, who, tenancy_id)
        status = await TenancyRepository(conn).status(found)
    if status is None or status["state"] != "active":
        raise Problem(409, f"tenancy {tenancy_id} is not active; only a live brand changes")
    event = BrandChangeRequested.new(
        source="tenancy/api", subject=found, data=BrandChangeRequestedData(brand=brand)
    )
    async with deps.request("branding", "POST brand", {"tenancy.id": found}) as tx:
        await Requests(tx.conn).record(str(event.id), found, "change")
        tx.emit(event)
        await audit.append(
            tx.conn,
            actor=who.actor,
            action="brand.set",
            tenancy_id=found,
            detail={"request": str(event.id), "colours": brand.colours.model_dump()},
        )
    return accepted(response, found, "active", brand_request=str(event.id))


@router.get("/tenancies/{tenancy_id}/usage", responses=documented(401, 403, 404, 422, 429))
async def usage(
    tenancy_id: uuid.UUID,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.COUNCIL_ADMIN, Role.FINANCE))],
    period: Annotated[
        PlainText | None,
        Query(max_length=9, description="a month (2026-11) or financial year (FY2026-27)"),
    ] = None,
) -> dict[str, Any]:
    """Live usage: each meter's value in the period (the current one if not given)."""
    try:
        chosen = Period.parse(period) if period else None
    except ValueError as error:
        raise Problem(422, str(error), [str(error)]) from None
    async with deps.pool.acquire() as conn:
        found = await visible(conn, who, tenancy_id)
        tenancy = await Billing(conn).tenancy(found)
        if tenancy is None:
            raise Problem(404, f"tenancy {tenancy_id} has no meters yet")
        shown = chosen or Period.containing(tenancy.period_kind, datetime.now(UTC))
        values = await usage_of(conn, found, [str(m) for m in shown.months()])
    return {"tenancy": found, "period": str(shown), "usage": {k: str(v) for k, v in values.items()}}
