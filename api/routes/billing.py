"""Invoices, for finance and for the operators of the services they bill."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.access import allow, sql_scope
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.tokens import Principal, Role
from services.metering.periods import Period
from services.metering.pricing import format_pounds
from shared.text import PlainText

router = APIRouter(tags=["billing"])


@router.get("/invoices", responses=documented(401, 403, 422, 429))
async def invoices(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.OPERATOR, Role.FINANCE, Role.COUNCIL_ADMIN))],
    service: Annotated[PlainText | None, Query(max_length=63)] = None,
    period: Annotated[
        PlainText | None, Query(max_length=9, description="2026-11 or FY2026-27")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Issued invoices the token may see, with their lines; money in pence and pounds. A
    council's admin and finance see their council's, and a split's host's invoices that their
    council shares under the hosting agreement (its `parties`)."""
    if period is not None:
        try:
            Period.parse(period)
        except ValueError as error:
            raise Problem(422, str(error), [str(error)]) from None
    clause, params = sql_scope(who, 4)
    if who.role in (Role.COUNCIL_ADMIN, Role.FINANCE) and who.council is not None:
        # A council a split's host serves pays its share of the host's invoices: it sees them.
        clause = (
            f"({clause} OR (($4::text IS NULL OR t.service_id = $4::text)"
            " AND i.parties @> jsonb_build_array(jsonb_build_object("
            "'council', jsonb_build_object('gss', $5::text)))))"
        )
    async with deps.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT i.id::text, i.tenancy_id::text, i.service_id, i.period, i.council_gss,"
            " i.council_name, i.purchase_order, i.lines, i.total_pence, i.final, i.parties,"
            " i.issued_at FROM metering.invoices i"
            " JOIN onboarding.tenancies t ON t.id = i.tenancy_id"
            " JOIN onboarding.services s ON s.id = t.service_id"
            " WHERE ($1::text IS NULL OR i.service_id = $1) AND ($2::text IS NULL OR i.period = $2)"
            f" AND {clause} ORDER BY i.issued_at DESC, i.council_gss LIMIT $3",
            service,
            period,
            limit,
            *params,
        )
    return [
        {
            **dict(row),
            "issued_at": row["issued_at"].isoformat(),
            "total": format_pounds(row["total_pence"]),
            # A split's host: who pays which part under the agreement (empty: the council alone).
            "parties": [
                {**party, "amount": format_pounds(party["amount_pence"])}
                for party in row["parties"]
            ],
        }
        for row in rows
    ]
