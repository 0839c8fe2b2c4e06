"""Persistence of the tenancy registry and the service catalogue (schema ``onboarding``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.onboarding.domain import State, StepStatus, Tenancy
from shared.catalogue import ServiceManifest
from shared.db import Connection
from shared.events import OnboardingRequestedData


class CatalogueRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def upsert(self, manifest: ServiceManifest) -> None:
        await self.conn.execute(
            "INSERT INTO onboarding.services (id, name, owner_council, manifest)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
            " owner_council = EXCLUDED.owner_council, manifest = EXCLUDED.manifest,"
            " updated_at = now()",
            manifest.id,
            manifest.name,
            manifest.owner_council,
            manifest.model_dump(mode="json"),
        )

    async def get(self, service_id: str) -> ServiceManifest | None:
        raw = await self.conn.fetchval(
            "SELECT manifest FROM onboarding.services WHERE id = $1", service_id
        )
        return ServiceManifest.model_validate(raw) if raw is not None else None

    async def list(self) -> list[ServiceManifest]:
        rows = await self.conn.fetch("SELECT manifest FROM onboarding.services ORDER BY id")
        return [ServiceManifest.model_validate(r["manifest"]) for r in rows]


class TenancyRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def add_request(
        self,
        tenancy_id: str,
        council_gss: str,
        council_name: str,
        service_id: str,
        request: OnboardingRequestedData,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO onboarding.tenancies (id, council_gss, council_name, service_id, state,"
            " contact, brand, acceptance, purchase_order)"
            " VALUES ($1, $2, $3, $4, 'requested', $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            tenancy_id,
            council_gss,
            council_name,
            service_id,
            request.contact.model_dump(mode="json") if request.contact else {},
            request.brand.model_dump(mode="json") if request.brand else None,
            request.acceptance.model_dump(mode="json") if request.acceptance else None,
            request.purchase_order,
        )

    async def registration(self, tenancy_id: str) -> dict[str, Any] | None:
        """What a retry needs to register the tenancy again."""
        row = await self.conn.fetchrow(
            "SELECT council_gss, brand, purchase_order FROM onboarding.tenancies WHERE id = $1",
            tenancy_id,
        )
        return dict(row) if row else None

    async def count_retry(self, tenancy_id: str) -> None:
        await self.conn.execute(
            "UPDATE onboarding.tenancies SET retries = retries + 1, redrive_attempts = 0,"
            " updated_at = now() WHERE id = $1",
            tenancy_id,
        )

    async def live_tenancy_of(self, council_gss: str, service_id: str) -> str | None:
        value = await self.conn.fetchval(
            "SELECT id::text FROM onboarding.tenancies WHERE council_gss = $1"
            " AND service_id = $2 AND state NOT IN ('failed', 'offboarded', 'reorganised')",
            council_gss,
            service_id,
        )
        return str(value) if value is not None else None

    async def lock(self, tenancy_id: str) -> Tenancy | None:
        """Load a tenancy for change; the row lock serialises step results arriving together."""
        row = await self.conn.fetchrow(
            "SELECT id::text, council_gss, service_id, state, failed_step, reason, archive,"
            " archive_sha256 FROM onboarding.tenancies WHERE id = $1 FOR UPDATE",
            tenancy_id,
        )
        if row is None:
            return None
        steps = await self.conn.fetch(
            "SELECT step, status FROM onboarding.tenancy_steps WHERE tenancy_id = $1", tenancy_id
        )
        return Tenancy(
            id=row["id"],
            council_gss=row["council_gss"],
            service_id=row["service_id"],
            state=State(row["state"]),
            steps={s["step"]: StepStatus(s["status"]) for s in steps},
            failed_step=row["failed_step"],
            reason=row["reason"],
            archive=row["archive"],
            archive_sha256=row["archive_sha256"],
        )

    async def save(
        self,
        tenancy: Tenancy,
        changed_step: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """The tenancy's row and its changed step (all its steps, without one), in one
        statement: a round trip per step result rather than two."""
        asked = [changed_step] if changed_step else list(tenancy.steps)
        steps = [step for step in asked if step in tenancy.steps]
        await self.conn.execute(
            f"WITH tenancy AS ({_SAVE_STATE} RETURNING id)"
            " INSERT INTO onboarding.tenancy_steps (tenancy_id, step, status, detail)"
            " SELECT tenancy.id, s.step, s.status, $9::jsonb"
            " FROM tenancy, unnest($7::text[], $8::text[]) AS s (step, status)"
            " ON CONFLICT (tenancy_id, step) DO UPDATE"
            " SET status = EXCLUDED.status, detail = EXCLUDED.detail, updated_at = now()",
            *_state_arguments(tenancy),
            steps,
            [tenancy.steps[step].value for step in steps],
            detail or {},
        )

    async def save_state(self, tenancy: Tenancy) -> None:
        """The tenancy's own row only: its steps, their details and times stay as they were."""
        await self.conn.execute(_SAVE_STATE, *_state_arguments(tenancy))

    async def status(self, tenancy_id: str) -> dict[str, Any] | None:
        row = await self.conn.fetchrow(
            "SELECT id::text, council_gss, council_name, service_id, state, failed_step, reason,"
            " requested_at, registered_at, active_at, failed_at, offboarding_at, offboarded_at,"
            " archive, archive_sha256, updated_at FROM onboarding.tenancies WHERE id = $1",
            tenancy_id,
        )
        if row is None:
            return None
        steps = await self.conn.fetch(
            "SELECT step, status, detail, updated_at FROM onboarding.tenancy_steps"
            " WHERE tenancy_id = $1 ORDER BY updated_at",
            tenancy_id,
        )

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": row["id"],
            "council": row["council_gss"],
            "council_name": row["council_name"],
            "service": row["service_id"],
            "state": row["state"],
            "failed_step": row["failed_step"],
            "reason": row["reason"],
            "requested_at": iso(row["requested_at"]),
            "registered_at": iso(row["registered_at"]),
            "active_at": iso(row["active_at"]),
            "failed_at": iso(row["failed_at"]),
            "offboarding_at": iso(row["offboarding_at"]),
            "offboarded_at": iso(row["offboarded_at"]),
            "archive": row["archive"],
            "archive_sha256": row["archive_sha256"],
            "steps": [
                {
                    "step": s["step"],
                    "status": s["status"],
                    "at": iso(s["updated_at"]),
                    "detail": s["detail"],
                }
                for s in steps
            ],
            "branding": next(
                (
                    theme_of(s["detail"])
                    for s in steps
                    if s["step"] == "branding" and s["status"] == "done"
                ),
                None,
            ),
        }


def theme_of(applied: dict[str, Any]) -> dict[str, Any]:
    """The current theme as the last ``branding.applied`` described it."""
    paths = applied.get("paths") or {}
    return {
        "version": applied.get("version"),
        "content_hash": applied.get("content_hash"),
        "css": paths.get("css"),
        "tokens": paths.get("tokens"),
        "logo": paths.get("logo"),
        "domain": applied.get("domain"),
    }


# Each state's time is set when the tenancy first enters it.
_SAVE_STATE = (
    "UPDATE onboarding.tenancies SET state = $2, failed_step = $3, reason = $4,"
    " registered_at = CASE WHEN $2 = 'registered'"
    "   THEN coalesce(registered_at, now()) ELSE registered_at END,"
    " active_at = CASE WHEN $2 = 'active'"
    "   THEN coalesce(active_at, now()) ELSE active_at END,"
    " failed_at = CASE WHEN $2 = 'failed'"
    "   THEN coalesce(failed_at, now()) ELSE failed_at END,"
    " offboarding_at = CASE WHEN $2 = 'offboarding'"
    "   THEN coalesce(offboarding_at, now()) ELSE offboarding_at END,"
    " offboarded_at = CASE WHEN $2 = 'offboarded'"
    "   THEN coalesce(offboarded_at, now()) ELSE offboarded_at END,"
    " reorganised_at = CASE WHEN $2 = 'reorganised'"
    "   THEN coalesce(reorganised_at, now()) ELSE reorganised_at END,"
    " archive = $5, archive_sha256 = $6,"
    " updated_at = now() WHERE id = $1"
)


def _state_arguments(tenancy: Tenancy) -> tuple[Any, ...]:
    return (
        tenancy.id,
        tenancy.state.value,
        tenancy.failed_step,
        tenancy.reason,
        tenancy.archive,
        tenancy.archive_sha256,
    )
