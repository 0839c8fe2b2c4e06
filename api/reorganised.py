"""Where a reorganised tenancy went, as the API and ``tenancy status`` show it. Free of FastAPI,
so the CLI reads it without loading the web stack."""

from __future__ import annotations

from typing import Any

from shared.db import Connection


async def reorganisation_of(conn: Connection, tenancy_id: str) -> dict[str, Any]:
    """When a reorganised tenancy ended and the successor's tenancy that holds its data now,
    with the vesting day the councils changed (from which the successor's tenancy is billed:
    the data may have moved earlier); both None for any other tenancy."""
    row = await conn.fetchrow(
        "SELECT t.reorganised_at, s.id::text AS id, s.council_gss, s.council_name, m.vesting"
        " FROM onboarding.tenancies t JOIN onboarding.tenancies s ON s.id = t.reorganised_into"
        " LEFT JOIN onboarding.reorganisation_moves m ON m.source_tenancy_id = t.id"
        " WHERE t.id = $1",
        tenancy_id,
    )
    if row is None:
        return {"reorganised_at": None, "reorganised_into": None}
    return {
        "reorganised_at": row["reorganised_at"].isoformat() if row["reorganised_at"] else None,
        "reorganised_into": {
            "id": row["id"],
            "council": row["council_gss"],
            "council_name": row["council_name"],
            "vesting": row["vesting"].isoformat() if row["vesting"] else None,
        },
    }
