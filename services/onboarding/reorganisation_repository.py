"""The tenancies a reorganisation plan is made over, read from the tenancy registry."""

from __future__ import annotations

from services.onboarding.reorganisation import LiveTenancy
from shared.catalogue import IsolationTier, PeriodKind
from shared.db import Connection


async def live_tenancies(
    conn: Connection, scope: str = "true", params: list[str | None] | None = None
) -> list[LiveTenancy]:
    """Every tenancy that has not left its service, with its service's isolation tier and
    billing period. ``scope`` narrows it with a clause on ``t`` (tenancies) and ``s``
    (services), as :func:`api.access.sql_scope` writes one, its parameters numbered from 1."""
    rows = await conn.fetch(
        "SELECT t.id::text, t.council_gss, t.service_id, t.state,"
        " s.manifest->>'isolation' AS isolation, s.manifest->'pricing'->>'period' AS period"
        " FROM onboarding.tenancies t JOIN onboarding.services s ON s.id = t.service_id"
        f" WHERE t.state <> 'offboarded' AND ({scope}) ORDER BY t.requested_at, t.id",
        *(params or []),
    )
    return [
        LiveTenancy(
            id=row["id"],
            council_gss=row["council_gss"],
            service_id=row["service_id"],
            tier=IsolationTier(row["isolation"]),
            state=row["state"],
            billing_period=PeriodKind(row["period"]) if row["period"] else None,
        )
        for row in rows
    ]
