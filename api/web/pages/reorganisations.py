"""For operators and council admins: the coming council reorganisations, what happens to each
tenancy of a replaced council and, once a plan is applied, where each move is, by the API's own
rule (:mod:`api.routes.reorganisations`). A council's admin also sees the tenancies its council
inherits, on any vesting day."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from api.routes.reorganisations import inherited_by, moves_for, plan_for
from api.tokens import Role
from api.web.routing import Context, PageRoute, signed_in
from services.onboarding.reorganisation import Plan, Readiness, london_today
from services.onboarding.reorganisation_repository import MoveRepository

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MOVE_TAGS = {
    "requested": {"text": "Requested", "classes": "govuk-tag--grey"},
    "target-provisioning": {"text": "Successor's tenancy being made", "classes": "govuk-tag--blue"},
    "moving": {"text": "Moving", "classes": "govuk-tag--blue"},
    "moved": {"text": "Moved", "classes": "govuk-tag--green"},
    "failed": {"text": "Failed", "classes": "govuk-tag--red"},
}
TAGS = {
    Readiness.READY: {"text": "Ready", "classes": "govuk-tag--green"},
    Readiness.WAITING: {"text": "Waiting", "classes": "govuk-tag--yellow"},
    Readiness.BLOCKED: {"text": "Blocked", "classes": "govuk-tag--red"},
}


@router.get("/manage/reorganisations")
async def reorganisations(ctx: Annotated[Context, Depends(signed_in)]) -> Response:
    who = await ctx.require(Role.OPERATOR, Role.COUNCIL_ADMIN)
    today = london_today()
    async with ctx.deps.pool.acquire() as conn:
        applied = await MoveRepository(conn).applied_days()
    # Coming days, and days gone whose plan was applied: their moves and their predecessors'
    # retirement go on being followed here after the day.
    days = sorted(set(ctx.deps.councils.vesting_days(today)) | {d for d in applied if d < today})
    plans = []
    for vesting in days:
        moves = [_move(m) for m in await moves_for(ctx.deps, who, vesting)]
        if vesting < today and not moves:
            continue  # none of its moves is this admin's to see
        plans.append({**_shown(await plan_for(ctx.deps, who, vesting, [])), "moves": moves})
    inherited = (
        [_inherited(m) for m in await inherited_by(ctx.deps, who)]
        if who.role is Role.COUNCIL_ADMIN
        else None
    )
    return ctx.render("reorganisations.html", {"plans": plans, "inherited": inherited})


def _shown(plan: Plan) -> dict[str, Any]:
    return {
        "vesting": f"{plan.vesting.day} {plan.vesting:%B %Y}",
        "changes": [
            {
                "kind": change.kind.value.capitalize(),
                "predecessors": [p.label for p in change.predecessors],
                "successors": [s.label for s in change.successors],
                "problems": list(change.problems),
            }
            for change in plan.changes
        ],
        "tenancies": [
            {
                "id": t.tenancy_id,
                "council": t.council.label,
                "service": t.service_id,
                "isolation": t.tier.value,
                "into": t.successor.label if t.successor else "No host named yet",
                "served": [p.label for p in t.served],
                "tag": TAGS[t.readiness],
                "reasons": list(t.reasons),
                "steps": [s.detail for s in t.steps],
            }
            for t in plan.tenancies
        ],
    }


def _inherited(move: dict[str, Any]) -> dict[str, Any]:
    vesting = date.fromisoformat(move["vesting"])
    return {
        "source": move["source"],
        "target": move["target"],
        "council": f"{move['council']} ({move['council_gss']})",
        "service": f"{move['service_id']} ({move['tier']})",
        "vesting": f"{vesting.day} {vesting:%B %Y}",
        "kind": move["kind"].capitalize(),
        "successor": move["successor"],
        "served": [c["name"] for c in move["served"]],
        "tag": MOVE_TAGS.get(move["status"], {"text": move["status"], "classes": ""}),
    }


def _move(move: dict[str, Any]) -> dict[str, Any]:
    tables = move["tables"] or []
    return {
        "source": move["source"],
        "target": move["target"],
        "council": move["council"],
        "successor": move["successor"],
        "service": f"{move['service_id']} ({move['tier']})",
        "tag": MOVE_TAGS.get(move["status"], {"text": move["status"], "classes": ""}),
        "rows": sum(t["source_rows"] for t in tables) if move["tables"] is not None else None,
        "reason": f"{move['failed_step']}: {move['reason']}" if move["reason"] else None,
        "retirement": _retirement(move),
    }


def _retirement(move: dict[str, Any]) -> str:
    """What became of the predecessor's frozen data once the move settled."""
    state = move.get("retirement")
    if state == "retired":
        at = move["retired_at"]
        return f"Exported and dropped{f' on {at:%-d %B %Y}' if at else ''}: {move['archive']}"
    if state == "failed":
        return f"Retirement failed: {move['retirement_reason']}"
    if state:
        return "Retirement requested"
    return "Kept, locked out" if move["status"] == "moved" else ""
