"""Missed-bin reports: what a resident may send, and where it is kept.

Every query runs on a connection logged in as the council's own role, whose ``search_path`` is
the council's own schema: nothing here names a schema or a council, and no query can reach
another council's reports, whatever reference it is given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.db import Connection
from tenancy_sdk import record_usage

CONTAINERS = {
    "general": "General waste",
    "recycling": "Recycling",
    "food": "Food waste",
    "garden": "Garden waste",
}
ADDRESS_MAX = 200
DETAILS_MAX = 500
METER = "missed_bin_reports"
LONDON = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class ReportForm:
    address: str
    container: str
    details: str

    def problems(self) -> dict[str, str]:
        """Each field's problem, as the page shows it beside the field."""
        found: dict[str, str] = {}
        if not self.address.strip():
            found["address"] = "Enter the address where the bin was not collected"
        elif len(self.address) > ADDRESS_MAX:
            found["address"] = f"Address must be {ADDRESS_MAX} characters or fewer"
        if self.container not in CONTAINERS:
            found["container"] = "Select which bin was not collected"
        if len(self.details) > DETAILS_MAX:
            found["details"] = f"Details must be {DETAILS_MAX} characters or fewer"
        for name, value in (("address", self.address), ("details", self.details)):
            if "\x00" in value:
                found[name] = "Remove the NUL character"
        return found


@dataclass(frozen=True)
class Report:
    reference: uuid.UUID
    address: str
    container: str
    details: str
    reported_at: datetime

    @property
    def reported_in_london(self) -> str:
        return self.reported_at.astimezone(LONDON).strftime("%-d %B %Y at %H:%M")

    @property
    def container_name(self) -> str:
        return CONTAINERS.get(self.container, self.container)


async def add(conn: Connection, reference: uuid.UUID, form: ReportForm) -> None:
    """The report and its usage, in the caller's transaction; a repeat of the same reference
    (a retried request) adds neither again."""
    await conn.execute(
        "INSERT INTO missed_bin_reports (reference, address, container, details)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (reference) DO NOTHING",
        reference,
        form.address.strip(),
        form.container,
        form.details.strip(),
    )
    await record_usage(conn, METER, id=f"missed-bin-report-{reference}")


async def get(conn: Connection, reference: uuid.UUID) -> Report | None:
    row = await conn.fetchrow(
        "SELECT reference, address, container, coalesce(details, '') AS details, reported_at"
        " FROM missed_bin_reports WHERE reference = $1",
        reference,
    )
    return Report(**dict(row)) if row else None


async def count(conn: Connection) -> int:
    total: int = await conn.fetchval("SELECT count(*) FROM missed_bin_reports")
    return total
