"""Council reorganisations (issue 18), read-only: the coming vesting days and, for each, what
happens to every tenancy of a council the reference data says is replaced.

An operator sees the tenancies of the services it runs. A council's admin sees its own
tenancies that are replaced and those its council inherits (as successor, host or a party
served by the host), each narrowed to its token's service if it has one.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.access import allow, sql_scope
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.tokens import Principal, Role
from services.onboarding.reorganisation import (
    LONDON,
    Plan,
    PlanInputInvalid,
    TenancyPlan,
    parse_hosts,
    plan,
)
from services.onboarding.reorganisation_repository import live_tenancies
from shared.text import PlainText

router = APIRouter(tags=["reorganisations"])
READERS = allow(Role.OPERATOR, Role.COUNCIL_ADMIN)
Hosts = Annotated[
    list[PlainText] | None,
    Query(
        description="A split's hosting successor, as PREDECESSOR=SUCCESSOR or SUCCESSOR "
        "(register or GSS codes); repeatable"
    ),
]


async def plan_for(deps: Platform, who: Principal, vesting: date, hosts: list[str]) -> Plan:
    """The plan for ``vesting`` as ``who`` may see it."""
    try:
        chosen = parse_hosts(deps.councils, vesting, hosts)
    except PlanInputInvalid as error:
        raise Problem(422, str(error), [str(error)]) from None
    if who.role is Role.OPERATOR:
        clause, params = sql_scope(who, 1)
    else:  # a council's admin: any council's tenancies, kept below to those it is party to
        clause, params = "($1::text IS NULL OR t.service_id = $1)", [who.service]
    async with deps.pool.acquire() as conn:
        found = plan(deps.councils, vesting, await live_tenancies(conn, clause, params), chosen)
    if who.role is Role.OPERATOR or who.council is None:
        return found
    council = who.council
    return dataclasses.replace(
        found,
        changes=tuple(
            c for c in found.changes if council in {p.gss for p in (*c.predecessors, *c.successors)}
        ),
        tenancies=tuple(t for t in found.tenancies if council in _parties(t)),
    )


def _parties(tenancy: TenancyPlan) -> set[str | None]:
    successor = tenancy.successor.gss if tenancy.successor else None
    return {tenancy.council.gss, successor, *(p.gss for p in tenancy.served)}


@router.get("/reorganisations", responses=documented(401, 403, 429))
async def coming(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(READERS)],
) -> list[dict[str, Any]]:
    """Every coming vesting day in the reference data, from today (London time), with its
    plan; a split's host is not named here, so its tenancies show as blocked until it is."""
    today = datetime.now(LONDON).date()
    return [
        (await plan_for(deps, who, vesting, [])).as_json()
        for vesting in deps.councils.vesting_days(today)
    ]


@router.get("/reorganisations/{vesting}", responses=documented(401, 403, 422, 429))
async def on_day(
    vesting: date,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(READERS)],
    host: Hosts = None,
) -> dict[str, Any]:
    """The plan for one vesting day, past or coming: each tenancy whose council is replaced,
    what each worker does to it, and whether it is ready, waiting or blocked (and why)."""
    return (await plan_for(deps, who, vesting, host or [])).as_json()
