"""Council reorganisations (issue 18), read-only: the coming vesting days and, for each, what
happens to every tenancy of a council the reference data says is replaced; and, once a plan is
applied (``tenancy reorganise apply``), where each of its moves is.

An operator sees the tenancies of the services it runs. A council's admin sees its own
tenancies that are replaced and those its council inherits (as successor, host or a party
served by the host), each narrowed to its token's service if it has one.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.access import allow, sql_scope
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.tokens import Principal, Role
from services.onboarding.moves import Arrangement
from services.onboarding.reorganisation import (
    Plan,
    PlanInputInvalid,
    TenancyPlan,
    london_today,
    parse_hosts,
    plan,
)
from services.onboarding.reorganisation_repository import (
    MoveRepository,
    live_tenancies,
    service_ids,
)
from shared.text import PlainText

router = APIRouter(tags=["reorganisations"])
READERS = allow(Role.OPERATOR, Role.COUNCIL_ADMIN)
Hosts = Annotated[
    list[PlainText] | None,
    Query(
        description="A split's hosting successor, as PREDECESSOR=SUCCESSOR, SUCCESSOR or "
        "PREDECESSOR/SERVICE=SUCCESSOR for one service (register or GSS codes); repeatable. "
        "Default: the hosts of the plan scheduled for the day, if any"
    ),
]


async def plan_for(deps: Platform, who: Principal, vesting: date, hosts: list[str]) -> Plan:
    """The plan for ``vesting`` as ``who`` may see it."""
    return (await plan_and_arrangement(deps, who, vesting, hosts))[0]


async def plan_and_arrangement(
    deps: Platform, who: Principal, vesting: date, hosts: list[str]
) -> tuple[Plan, Arrangement | None]:
    """The plan for ``vesting`` as ``who`` may see it, made with ``hosts`` or else the hosts
    and shares of the plan scheduled for that day, and that arrangement if there is one."""
    if who.role is Role.OPERATOR:
        clause, params = sql_scope(who, 1)
    else:  # a council's admin: any council's tenancies, kept below to those it is party to
        clause, params = "($1::text IS NULL OR t.service_id = $1)", [who.service]
    async with deps.pool.acquire() as conn:
        tenancies = await live_tenancies(conn, clause, params)
        services = await service_ids(conn)
        arranged = await MoveRepository(conn).arrangement(vesting)
    try:
        chosen = parse_hosts(deps.councils, vesting, hosts, services=services, tenancies=tenancies)
    except PlanInputInvalid as error:
        raise Problem(422, str(error), [str(error)]) from None
    shares = None
    if arranged is not None and not hosts:
        chosen, shares = dict(arranged.hosts), arranged.shares
    found = plan(deps.councils, vesting, tenancies, chosen, shares)
    if who.role is Role.OPERATOR or who.council is None:
        return found, arranged
    council = who.council
    return dataclasses.replace(
        found,
        changes=tuple(
            c for c in found.changes if council in {p.gss for p in (*c.predecessors, *c.successors)}
        ),
        tenancies=tuple(t for t in found.tenancies if council in _parties(t)),
    ), arranged


def _parties(tenancy: TenancyPlan) -> set[str | None]:
    successor = tenancy.successor.gss if tenancy.successor else None
    return {tenancy.council.gss, successor, *(p.gss for p in tenancy.served)}


@router.get("/reorganisations", responses=documented(401, 403, 429))
async def coming(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(READERS)],
) -> list[dict[str, Any]]:
    """Every coming vesting day in the reference data, from today (London time), with its
    plan, made with the hosts and shares of the plan scheduled for that day if there is one;
    otherwise a split's tenancies show as blocked until its host is named."""
    today = london_today()
    return [
        (await plan_for(deps, who, vesting, [])).as_json()
        for vesting in deps.councils.vesting_days(today)
    ]


# What a council inherits: the moves into its tenancies (a merge's successor, a split's host)
# and into a host's tenancy that serves it.
_INHERITS = (
    "($1::text IS NULL OR m.service_id = $1) AND (m.request->'agreement'->'host'->>'gss' = $2"
    " OR m.request->'agreement'->'served' @> jsonb_build_array(jsonb_build_object('gss', $2)))"
)


async def inherited_by(deps: Platform, who: Principal) -> list[dict[str, Any]]:
    """Every move of any applied plan, past or coming, that brings a predecessor's tenancy to
    the caller's council, as successor, host, or a council the host serves."""
    async with deps.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.vesting, m.kind, m.source_tenancy_id::text AS source,"
            " m.target_tenancy_id::text AS target, m.service_id, m.tier, m.status,"
            " t.council_name AS council, t.council_gss, t.state AS source_state,"
            " m.request->'successor'->>'name' AS successor,"
            " m.request->'successor'->>'gss' AS successor_gss,"
            " m.request->'agreement'->'served' AS served"
            " FROM onboarding.reorganisation_moves m"
            " JOIN onboarding.tenancies t ON t.id = m.source_tenancy_id"
            f" WHERE {_INHERITS} ORDER BY m.vesting, m.service_id, t.council_name",
            who.service,
            who.council,
        )
    return [
        {
            **dict(row),
            "vesting": row["vesting"].isoformat(),
            "served": [{"gss": c["gss"], "name": c["name"]} for c in row["served"] or []],
        }
        for row in rows
    ]


@router.get("/reorganisations/inherited", responses=documented(401, 403, 429))
async def inherited(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.COUNCIL_ADMIN))],
) -> list[dict[str, Any]]:
    """For a council's admin: each tenancy its council inherits from a council replaced in a
    reorganisation, on any vesting day, with where its move is (``moved`` once its data are
    in the successor's tenancy, ``target``). ``served`` names the councils a split's host
    serves, sharing its cost."""
    return await inherited_by(deps, who)


@router.get("/reorganisations/{vesting}", responses=documented(401, 403, 422, 429))
async def on_day(
    vesting: date,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(READERS)],
    host: Hosts = None,
) -> dict[str, Any]:
    """The plan for one vesting day, past or coming: each tenancy whose council is replaced,
    what each worker does to it, and whether it is ready, waiting or blocked (and why); and
    ``arrangement``, the plan scheduled for that day (``tenancy reorganise apply`` before it:
    hosts, shares, when, and for operators who arranged it), whose hosts the plan is made
    with unless ``host`` is given, or null."""
    found, arranged = await plan_and_arrangement(deps, who, vesting, host or [])
    shown = arranged.as_json(who=who.role is Role.OPERATOR) if arranged else None
    return {**found.as_json(), "arrangement": shown}


# A council's admin follows the moves its council is party to: out of its tenancies, into
# them, or into a host's tenancy that serves it.
_PARTY = (
    "($2::text IS NULL OR t.service_id = $2) AND (t.council_gss = $3"
    " OR m.request->'agreement'->'host'->>'gss' = $3"
    " OR m.request->'agreement'->'served' @> jsonb_build_array(jsonb_build_object('gss', $3)))"
)


async def moves_for(deps: Platform, who: Principal, vesting: date) -> list[dict[str, Any]]:
    """The moves of the plan applied for ``vesting`` that ``who`` may see."""
    if who.role is Role.OPERATOR:
        clause, params = sql_scope(who, 2)
    else:
        clause, params = _PARTY, [who.service, who.council]
    async with deps.pool.acquire() as conn:
        found = await MoveRepository(conn).of_day(vesting, clause, params)
    return [{**move, "updated_at": move["updated_at"].isoformat()} for move in found]


@router.get("/reorganisations/{vesting}/moves", responses=documented(401, 403, 422, 429))
async def moves(
    vesting: date,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(READERS)],
) -> list[dict[str, Any]]:
    """Each move of the plan applied for ``vesting``: requested, target-provisioning, moving,
    moved (with every table's row counts and checksums before and after) or failed (with the
    step and the reason; the predecessor's tenancy is then as it was), and its retirement once
    settled (``retirement``: requested, retired with the export's ``archive``, ``archive_sha256``
    and row counts in ``exported``, or failed with ``retirement_reason``). Empty until
    applied."""
    return await moves_for(deps, who, vesting)
