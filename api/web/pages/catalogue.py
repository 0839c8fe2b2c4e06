"""Find a service: the catalogue with search and filters, and each service's own page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.routes.catalogue import ANYONE, list_services
from api.tokens import Role
from api.web.presenters import GOVERNANCE, GOVERNANCE_SHORT, ISOLATION, pricing_lines
from api.web.routing import Context, PageRoute, WebError, signed_in

router = APIRouter(route_class=PageRoute, include_in_schema=False)
JOINERS = (Role.OPERATOR, Role.COUNCIL_ADMIN)


def matches(service: dict[str, Any], words: list[str]) -> bool:
    haystack = " ".join(
        [service["id"], service["name"], service["description"], service["owner"]["name"]]
    ).casefold()
    # "bins" finds "bin collections": people search in plurals, services are named either way.
    return all(word in haystack or word.removesuffix("s") in haystack for word in words)


@router.get("/find-a-service")
async def find(
    ctx: Annotated[Context, Depends(signed_in)],
    q: Annotated[str, Query(max_length=200)] = "",
    owner: Annotated[str, Query(max_length=20)] = "",
    governance: Annotated[list[str] | None, Query()] = None,
) -> Response:
    who = await ANYONE(ctx.principal)
    services = await list_services(ctx.deps, who)
    owners = sorted({(s["owner"]["gss"], s["owner"]["name"]) for s in services}, key=lambda o: o[1])
    chosen = [g for g in governance or [] if g in GOVERNANCE]
    words = q.casefold().split()
    shown = [
        s
        for s in services
        if matches(s, words)
        and (not owner or s["owner"]["gss"] == owner)
        and (not chosen or s["governance"] in chosen)
    ]
    return ctx.render(
        "find.html",
        {
            "services": sorted(shown, key=lambda s: s["name"].casefold()),
            "total": len(services),
            "q": q,
            "owner_items": [{"value": "", "text": "Any council"}]
            + [{"value": g, "text": name, "selected": g == owner} for g, name in owners],
            "governance_items": [
                {"value": value, "text": label, "checked": value in chosen}
                for value, label in GOVERNANCE_SHORT.items()
            ],
            "governance_names": GOVERNANCE_SHORT,
            "filtered": bool(words or owner or chosen),
        },
    )


@router.get("/find-a-service/{service_id}")
async def service_page(
    service_id: Annotated[str, "a service id"],
    ctx: Annotated[Context, Depends(signed_in)],
) -> Response:
    who = await ANYONE(ctx.principal)
    found = next((s for s in await list_services(ctx.deps, who) if s["id"] == service_id), None)
    if found is None:
        raise WebError(404, "")
    units = {m["key"]: m["unit"] for m in found["meters"]}
    return ctx.render(
        "service.html",
        {
            "service": found,
            "governance": GOVERNANCE.get(found["governance"], found["governance"]),
            "isolation": ISOLATION.get(found["isolation"], found["isolation"]),
            "pricing": pricing_lines(found["pricing"], units),
            "may_join": who.role in JOINERS,
        },
    )
