"""The audit trail, for auditors: read it, and check that nothing in it was changed."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.access import allow
from api.platform import Platform, platform
from api.problems import documented
from api.tokens import Principal, Role
from shared import audit

router = APIRouter(tags=["audit"])
AUDITOR = allow(Role.AUDITOR)


@router.get("/audit", responses=documented(401, 403, 422, 429))
async def entries(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(AUDITOR)],
    since: Annotated[int, Query(ge=0, le=2**62, description="entries after this seq")] = 0,
    tenancy: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Entries in order: who did what to which tenancy, when, in which trace, chained by hash."""
    async with deps.pool.acquire() as conn:
        found = await audit.entries(
            conn, since_seq=since, limit=limit, tenancy_id=str(tenancy) if tenancy else None
        )
    return [e.as_json() for e in found]


@router.get("/audit/verify", responses=documented(401, 403, 429))
async def verify(
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(AUDITOR)],
) -> dict[str, Any]:
    """Walk the chain and name the first entry that was changed or removed."""
    async with deps.pool.acquire() as conn:
        result = await audit.verify(conn)
        seq, head = await audit.head(conn)
    return {
        "ok": result.ok,
        "checked": result.checked,
        "broken_seq": result.broken_seq,
        "reason": result.reason,
        "head": {"seq": seq, "hash": head},
    }
