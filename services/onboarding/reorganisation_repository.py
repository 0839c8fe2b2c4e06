"""The tenancies a reorganisation plan is made over, read from the tenancy registry, and the
plans applied with their moves."""

from __future__ import annotations

from datetime import date
from typing import Any

from asyncpg import Record

from services.onboarding.moves import Arrangement, Move, MoveStatus, shares_json, shares_read
from services.onboarding.reorganisation import LiveTenancy, Shares
from shared.catalogue import IsolationTier, PeriodKind
from shared.db import Connection
from shared.events import MoveRequestedData


async def live_tenancies(
    conn: Connection, scope: str = "true", params: list[str | None] | None = None
) -> list[LiveTenancy]:
    """Every tenancy that has not left its service, with its service's isolation tier and
    billing period. ``scope`` narrows it with a clause on ``t`` (tenancies) and ``s``
    (services), as :func:`api.access.sql_scope` writes one, its parameters numbered from 1."""
    rows = await conn.fetch(
        "SELECT t.id::text, t.council_gss, t.service_id, t.state,"
        " s.manifest->>'isolation' AS isolation, s.manifest->'pricing'->>'period' AS period,"
        " current_database() AS platform"
        " FROM onboarding.tenancies t JOIN onboarding.services s ON s.id = t.service_id"
        " WHERE t.state NOT IN ('offboarded', 'reorganised')"
        f" AND ({scope}) ORDER BY t.requested_at, t.id",
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
            platform=row["platform"],
        )
        for row in rows
    ]


async def service_ids(conn: Connection) -> set[str]:
    """The catalogue's services, which a per-service host must name."""
    return {r["id"] for r in await conn.fetch("SELECT id FROM onboarding.services")}


class MoveRepository:
    """Applied plans (``onboarding.reorganisations``) and their moves, one per predecessor."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def add_reorganisation(
        self,
        vesting: date,
        hosts: dict[str, str],
        plan: dict[str, Any],
        sha256: str,
        by: str,
        early: str | None = None,
    ) -> bool:
        """Record an applied plan, with the reason it was applied before vesting day if it was;
        False if one was applied for that day already."""
        added = await self.conn.fetchval(
            "INSERT INTO onboarding.reorganisations (vesting, hosts, plan, plan_sha256,"
            " applied_by, applied_early) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (vesting) DO NOTHING RETURNING true",
            vesting,
            hosts,
            plan,
            sha256,
            by,
            early,
        )
        return bool(added)

    async def applied_days(self) -> set[date]:
        rows = await self.conn.fetch("SELECT vesting FROM onboarding.reorganisations")
        return {r["vesting"] for r in rows}

    async def reorganisation(self, vesting: date) -> dict[str, Any] | None:
        row = await self.conn.fetchrow(
            "SELECT vesting, hosts, plan, plan_sha256, applied_by, applied_at, applied_early"
            " FROM onboarding.reorganisations WHERE vesting = $1 FOR UPDATE",
            vesting,
        )
        return dict(row) if row else None

    async def arrange(
        self,
        vesting: date,
        hosts: dict[str, str],
        shares: Shares,
        accepted_by: str,
        accepted_role: str,
        by: str,
    ) -> Arrangement | None:
        """Schedule the plan for ``vesting`` with these hosts and shares; returns the
        arrangement it replaces, if any."""
        previous = await self.arrangement(vesting, lock=True)
        await self.conn.execute(
            "INSERT INTO onboarding.reorganisation_arrangements (vesting, hosts, shares,"
            " accepted_by, accepted_role, arranged_by) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (vesting) DO UPDATE SET hosts = $2, shares = $3, accepted_by = $4,"
            " accepted_role = $5, arranged_by = $6, arranged_at = now()",
            vesting,
            hosts,
            shares_json(shares),
            accepted_by,
            accepted_role,
            by,
        )
        return previous

    async def cancel_arrangement(self, vesting: date) -> Arrangement | None:
        """Remove the plan scheduled for ``vesting``; returns it, or None if there was none."""
        previous = await self.arrangement(vesting, lock=True)
        await self.conn.execute(
            "DELETE FROM onboarding.reorganisation_arrangements WHERE vesting = $1", vesting
        )
        return previous

    async def arrangement(self, vesting: date, *, lock: bool = False) -> Arrangement | None:
        rows = await self._arrangements(
            "a.vesting = $1" + (" FOR UPDATE OF a" if lock else ""), vesting
        )
        return rows[0] if rows else None

    async def arrangements(self) -> dict[date, Arrangement]:
        """Every plan scheduled, by vesting day, whether its day is applied yet or not."""
        return {a.vesting: a for a in await self._arrangements("true")}

    async def _arrangements(self, where: str, *args: object) -> list[Arrangement]:
        rows = await self.conn.fetch(
            "SELECT a.vesting, a.hosts, a.shares, a.accepted_by, a.accepted_role, a.arranged_by,"
            " a.arranged_at, r.applied_at FROM onboarding.reorganisation_arrangements a"
            " LEFT JOIN onboarding.reorganisations r USING (vesting)"
            f" WHERE {where}",
            *args,
        )
        return [
            Arrangement(
                vesting=r["vesting"],
                hosts=dict(r["hosts"]),
                shares=shares_read(r["shares"]),
                accepted_by=r["accepted_by"],
                accepted_role=r["accepted_role"],
                arranged_by=r["arranged_by"],
                arranged_at=r["arranged_at"],
                applied_at=r["applied_at"],
            )
            for r in rows
        ]

    async def decided(self, vesting: date) -> str | None:
        """How the plan for ``vesting`` stands: ``applied``, ``scheduled`` or None."""
        found: str | None = await self.conn.fetchval(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM onboarding.reorganisations WHERE vesting = $1)"
            " THEN 'applied' WHEN EXISTS (SELECT 1 FROM onboarding.reorganisation_arrangements"
            " WHERE vesting = $1) THEN 'scheduled' END",
            vesting,
        )
        return found

    async def add(self, vesting: date, request: MoveRequestedData, target: str) -> None:
        await self.conn.execute(
            "INSERT INTO onboarding.reorganisation_moves (source_tenancy_id, vesting,"
            " target_tenancy_id, kind, service_id, tier, request, status)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            request.source,
            vesting,
            target,
            request.kind,
            request.service_id,
            request.tier.value,
            request.model_dump(mode="json"),
            MoveStatus.REQUESTED.value,
        )

    async def moved_elsewhere(self, sources: list[str]) -> list[str]:
        """Of ``sources``, the tenancies some earlier plan moves already."""
        rows = await self.conn.fetch(
            "SELECT source_tenancy_id::text AS id FROM onboarding.reorganisation_moves"
            " WHERE source_tenancy_id = ANY($1::uuid[])",
            sources,
        )
        return [r["id"] for r in rows]

    async def lock(self, source: str) -> Move | None:
        row = await self.conn.fetchrow(
            f"SELECT {_MOVE} FROM onboarding.reorganisation_moves"
            " WHERE source_tenancy_id = $1 FOR UPDATE",
            source,
        )
        return _move(row) if row else None

    async def lock_into(self, target: str, status: MoveStatus) -> list[Move]:
        rows = await self.conn.fetch(
            f"SELECT {_MOVE} FROM onboarding.reorganisation_moves"
            " WHERE target_tenancy_id = $1 AND status = $2"
            " ORDER BY updated_at, source_tenancy_id FOR UPDATE",
            target,
            status.value,
        )
        return [_move(r) for r in rows]

    async def lock_of_day(self, vesting: date) -> list[Move]:
        rows = await self.conn.fetch(
            f"SELECT {_MOVE} FROM onboarding.reorganisation_moves WHERE vesting = $1"
            " ORDER BY source_tenancy_id FOR UPDATE",
            vesting,
        )
        return [_move(r) for r in rows]

    async def request(self, source: str) -> MoveRequestedData:
        raw = await self.conn.fetchval(
            "SELECT request FROM onboarding.reorganisation_moves WHERE source_tenancy_id = $1",
            source,
        )
        return MoveRequestedData.model_validate(raw)

    async def in_progress(self, source: str) -> bool:
        """Whether a move of this tenancy is under way (neither failed nor finished)."""
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM onboarding.reorganisation_moves WHERE source_tenancy_id = $1"
                " AND status NOT IN ('failed', 'moved')",
                source,
            )
        )

    async def save(self, move: Move, tables: list[dict[str, Any]] | None = None) -> None:
        await self.conn.execute(
            "UPDATE onboarding.reorganisation_moves SET status = $2, failed_step = $3,"
            " reason = $4, attempts = $5, tables = coalesce($6, tables), updated_at = now()"
            " WHERE source_tenancy_id = $1",
            move.source,
            move.status.value,
            move.failed_step,
            move.reason,
            move.attempts,
            tables,
        )

    async def of_day(
        self, vesting: date, scope: str = "true", params: list[str | None] | None = None
    ) -> list[dict[str, Any]]:
        """Each move of a day's plan as people follow it. ``scope`` narrows it with a clause on
        ``t`` (the predecessor's tenancy), ``s`` (its service) and ``m`` (the move), its
        parameters numbered from 2."""
        rows = await self.conn.fetch(
            "SELECT m.source_tenancy_id::text AS source, m.target_tenancy_id::text AS target,"
            " m.kind, m.service_id, m.tier, m.status, m.failed_step, m.reason, m.attempts,"
            " m.tables, m.request->'successor'->>'name' AS successor,"
            " m.request->'successor'->>'gss' AS successor_gss, t.council_name AS council,"
            " t.council_gss, t.state AS source_state, m.updated_at,"
            # Its retirement, once settled: the export's archive, checksum and row counts.
            " m.retirement, m.retirement_reason, m.retired_at, m.archive, m.archive_sha256,"
            " m.exported"
            " FROM onboarding.reorganisation_moves m"
            " JOIN onboarding.tenancies t ON t.id = m.source_tenancy_id"
            " JOIN onboarding.services s ON s.id = m.service_id"
            f" WHERE m.vesting = $1 AND ({scope}) ORDER BY m.service_id, t.council_name",
            vesting,
            *(params or []),
        )
        return [dict(r) for r in rows]


_MOVE = (
    "source_tenancy_id::text AS source, target_tenancy_id::text AS target, status,"
    " failed_step, reason, attempts"
)


def _move(row: Record) -> Move:
    return Move(
        source=row["source"],
        target=row["target"],
        status=MoveStatus(row["status"]),
        failed_step=row["failed_step"],
        reason=row["reason"],
        attempts=row["attempts"],
    )
