"""The catalogue: every provider council's services, and registering one from its manifest."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import ValidationError

from api.access import allow, may_register
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.tokens import PEOPLE, Principal, Role
from services.onboarding.repository import CatalogueRepository
from shared import audit
from shared.catalogue import ServiceManifest, describe_validation_error

router = APIRouter(tags=["catalogue"])
ANYONE = allow(*PEOPLE)  # not a service's software: it has its own two endpoints


def listing(deps: Platform, manifest: ServiceManifest) -> dict[str, Any]:
    return {
        "id": manifest.id,
        "name": manifest.name,
        "description": manifest.description,
        "owner": {
            "gss": manifest.owner_council,
            "name": deps.councils.name_of(manifest.owner_council),
        },
        "governance": manifest.governance.value,
        "isolation": manifest.isolation.value,
        "agreement": manifest.agreement.model_dump(mode="json"),
        "meters": [m.model_dump(mode="json") for m in manifest.meters],
        "pricing": manifest.pricing.model_dump(mode="json") if manifest.pricing else None,
    }


@router.get("/services", responses=documented(401, 429))
async def list_services(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(ANYONE)],
) -> list[dict[str, Any]]:
    """Every service councils can join: owner, governance and the agreement to accept."""
    async with deps.pool.acquire() as conn:
        return [listing(deps, m) for m in await CatalogueRepository(conn).list()]


@router.post("/services", status_code=201, responses=documented(401, 403, 422, 429))
async def register_service(
    manifest: ServiceManifest,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR))],
) -> dict[str, Any]:
    """Add a service to the catalogue, or update it, from its manifest."""
    try:  # what is stored must read back: the workers and every listing depend on it
        ServiceManifest.model_validate(manifest.model_dump(mode="json"))
    except ValidationError as error:
        errors = describe_validation_error(error)
        raise Problem(422, "; ".join(errors), errors) from None
    if not may_register(who, manifest):
        raise Problem(403, f"this token does not run services of {manifest.owner_council}")
    async with deps.pool.acquire() as conn, conn.transaction():
        catalogue = CatalogueRepository(conn)
        existing = await catalogue.get(manifest.id)
        if existing is not None and not may_register(who, existing):
            raise Problem(403, f"{manifest.id} is run by {existing.owner_council}")
        await catalogue.upsert(manifest)
        await audit.append(
            conn,
            actor=who.actor,
            action="service.update" if existing else "service.register",
            detail={"service": manifest.id, "agreement": manifest.agreement.version},
        )
    return listing(deps, manifest)
