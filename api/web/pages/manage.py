"""For the people who run services and pay for them: the tenancies of each service by state,
failed ones with their reason and a retry, and usage and invoices per billing period.

Everything is narrowed by the API's own scope rule (:func:`api.access.sql_scope`), so each role
sees here exactly what it sees through the API.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.access import TenancyScope, runs, sees, sql_scope
from api.problems import Problem
from api.routes.billing import invoices
from api.tokens import Role
from api.web.forms import Errors
from api.web.presenters import STATES, day, pounds, state_tag, when
from api.web.routing import Context, PageRoute, signed_in
from services.metering.periods import Period
from services.metering.repository import usage_of
from services.onboarding.reorganisation import share_text
from services.onboarding.repository import CatalogueRepository
from shared.catalogue import PeriodKind

router = APIRouter(route_class=PageRoute, include_in_schema=False)
READERS = (Role.OPERATOR, Role.COUNCIL_ADMIN, Role.FINANCE)
# Failed first: those are the ones someone has to act on; those that ended last.
STATE_ORDER = [
    "failed",
    "requested",
    "registered",
    "active",
    "offboarding",
    "offboarded",
    "reorganised",
]


@router.get("/manage")
async def tenancies(ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    who = await ctx.require(*READERS)
    clause, params = sql_scope(who, 1)
    async with ctx.deps.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT t.id::text, t.council_gss, t.council_name, t.service_id, t.state,"
            " t.failed_step, t.reason, t.requested_at, t.updated_at,"
            " r.council_name || ' (' || r.council_gss || ')' AS moved_into,"
            " r.id::text AS moved_into_id, r.council_gss AS moved_into_gss, s.owner_council,"
            " m.vesting"
            " FROM onboarding.tenancies t JOIN onboarding.services s ON s.id = t.service_id"
            " LEFT JOIN onboarding.tenancies r ON r.id = t.reorganised_into"
            " LEFT JOIN onboarding.reorganisation_moves m ON m.source_tenancy_id = t.id"
            f" WHERE {clause} ORDER BY t.council_name",
            *params,
        )
        catalogue = await CatalogueRepository(conn).list()
    names = {m.id: m.name for m in catalogue}
    # An operator also sees the services it runs that nobody has joined yet.
    run_here = [
        m.id for m in catalogue if who.role is Role.OPERATOR and runs(who, m.id, m.owner_council)
    ]
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in run_here}
    for row in rows:
        # The successor's tenancy is linked only for those who may open it: a predecessor's
        # admin is told whose it is instead.
        successor = TenancyScope(row["moved_into_gss"], row["service_id"], row["owner_council"])
        linked = row["moved_into_id"] is not None and sees(who, successor)
        by_state = grouped.setdefault(row["service_id"], {})
        by_state.setdefault(row["state"], []).append(
            {
                "id": row["id"],
                "council": f"{row['council_name']} ({row['council_gss']})",
                "failed_step": row["failed_step"],
                "reason": row["reason"],
                "moved_into": row["moved_into"],
                "moved_into_href": f"/tenancy/{row['moved_into_id']}" if linked else None,
                "vesting": day(row["vesting"]) if row["moved_into"] else "",
                "requested": when(row["requested_at"]),
                "updated": when(row["updated_at"]),
            }
        )
    services = [
        {
            "id": service_id,
            "name": names.get(service_id, service_id),
            "states": [
                {
                    "state": state,
                    "label": STATES.get(state, (None, state))[1],
                    "tag": state_tag(state),
                    "tenancies": by_state[state],
                }
                for state in STATE_ORDER + sorted(set(by_state) - set(STATE_ORDER))
                if state in by_state
            ],
            "count": sum(len(found) for found in by_state.values()),
            "may_retry": who.role is Role.OPERATOR,
        }
        for service_id, by_state in sorted(grouped.items(), key=lambda s: names.get(s[0], s[0]))
    ]
    return ctx.render("manage.html", {"services": services})


@router.get("/manage/billing")
async def billing(
    ctx: Annotated[Context, Depends(signed_in)],
    period: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    who = await ctx.require(*READERS)
    errors = Errors()
    typed = period.strip()
    chosen = Period.containing(PeriodKind.MONTH, datetime.now(UTC))
    if typed:
        try:
            chosen = Period.parse(typed)
        except ValueError:
            errors.add("period", "Enter a month like 2026-11 or a financial year like FY2026-27")
    clause, params = sql_scope(who, 1)
    async with ctx.deps.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT t.id::text, t.council_gss, t.council_name, t.service_id"
            " FROM onboarding.tenancies t JOIN onboarding.services s ON s.id = t.service_id"
            f" WHERE {clause} AND t.state IN ('active', 'offboarding', 'offboarded', 'reorganised')"
            " ORDER BY t.service_id, t.council_name",
            *params,
        )
        months = [str(m) for m in chosen.months()]
        usage: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            values = await usage_of(conn, row["id"], months)
            usage[row["service_id"]].append(
                {
                    "council": f"{row['council_name']} ({row['council_gss']})",
                    "id": row["id"],
                    "meters": [f"{key}: {value:,}" for key, value in sorted(values.items())],
                }
            )
    try:
        issued = await invoices(ctx.deps, who, None, str(chosen), 200) if not errors else []
    except Problem as problem:
        errors.add("period", problem.detail)
        issued = []
    shown = [
        {
            "council": f"{i['council_name']} ({i['council_gss']})",
            "service": i["service_id"],
            "period": i["period"],
            "total": pounds(i["total"]),
            "issued": when(i["issued_at"]),
            "final": i["final"],
            "purchase_order": i["purchase_order"],
            "lines": _lines(i["lines"]),
            "parties": [
                f"{p['council']['name']} {share_text(Fraction(p['share']))}: {pounds(p['amount'])}"
                for p in i["parties"]
            ],
            "id": i["id"],
        }
        for i in issued
    ]
    return ctx.render(
        "billing.html",
        {
            "period": typed if errors else str(chosen),
            "errors": errors,
            "usage": sorted(usage.items()),
            "invoices": shown,
        },
        status_code=400 if errors else 200,
    )


def _lines(raw: Any) -> list[dict[str, str]]:
    return [
        {
            "description": str(line.get("description", "")),
            "amount": pounds(Decimal(int(line.get("amount_pence", 0))) / 100),
        }
        for line in raw or []
    ]
