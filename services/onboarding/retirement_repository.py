"""Where each reorganised predecessor's retirement stands, beside its move
(``onboarding.reorganisation_moves``)."""

from __future__ import annotations

from datetime import date

from asyncpg import Record

from services.onboarding.moves import MoveStatus
from services.onboarding.retirement import Retirement, RetirementStatus
from shared.db import Connection
from shared.events import IsolationRemovedData

# A moved move is not updated again, so its last update is when its data were verified.
_RETIREMENT = (
    "source_tenancy_id::text AS source, target_tenancy_id::text AS target, service_id,"
    " status, retirement, retirement_reason, updated_at AS moved_at"
)


def _retirement(row: Record) -> Retirement:
    return Retirement(
        source=row["source"],
        target=row["target"],
        service_id=row["service_id"],
        move_status=MoveStatus(row["status"]),
        status=RetirementStatus(row["retirement"]) if row["retirement"] else None,
        reason=row["retirement_reason"],
        moved_at=row["moved_at"],
    )


class RetirementRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def lock_of_day(self, vesting: date) -> list[Retirement]:
        rows = await self.conn.fetch(
            f"SELECT {_RETIREMENT} FROM onboarding.reorganisation_moves WHERE vesting = $1"
            " ORDER BY source_tenancy_id FOR UPDATE",
            vesting,
        )
        return [_retirement(r) for r in rows]

    async def lock_moved(self) -> list[Retirement]:
        """Every verified move never asked to retire, for the worker's own round."""
        rows = await self.conn.fetch(
            f"SELECT {_RETIREMENT} FROM onboarding.reorganisation_moves"
            " WHERE status = 'moved' AND retirement IS NULL"
            " ORDER BY updated_at, source_tenancy_id FOR UPDATE SKIP LOCKED"
        )
        return [_retirement(r) for r in rows]

    async def lock(self, source: str) -> Retirement | None:
        row = await self.conn.fetchrow(
            f"SELECT {_RETIREMENT} FROM onboarding.reorganisation_moves"
            " WHERE source_tenancy_id = $1 FOR UPDATE",
            source,
        )
        return _retirement(row) if row else None

    async def save(self, retirement: Retirement) -> None:
        # Not updated_at: it keeps saying when the move was verified.
        status = retirement.status.value if retirement.status else None
        await self.conn.execute(
            "UPDATE onboarding.reorganisation_moves SET retirement = $2,"
            " retirement_reason = $3, retirement_requested_at = CASE WHEN $2 = 'requested'"
            " THEN now() ELSE retirement_requested_at END WHERE source_tenancy_id = $1",
            retirement.source,
            status,
            retirement.reason,
        )

    async def record_retired(self, source: str, removed: IsolationRemovedData) -> None:
        exported = [t.model_dump(mode="json") for t in removed.tables]
        await self.conn.execute(
            "UPDATE onboarding.reorganisation_moves SET retired_at = now(), archive = $2,"
            " archive_sha256 = $3, exported = $4 WHERE source_tenancy_id = $1",
            source,
            removed.archive,
            removed.archive_sha256,
            exported,
        )
        # The predecessor's own record names its archive, as an offboarded tenancy's does.
        await self.conn.execute(
            "UPDATE onboarding.tenancies SET archive = $2, archive_sha256 = $3, updated_at = now()"
            " WHERE id = $1",
            source,
            removed.archive,
            removed.archive_sha256,
        )
