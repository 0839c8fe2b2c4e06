"""Retiring the predecessors of a reorganisation once settled (issue 18). Plain Python, free of
I/O.

A verified move leaves the predecessor's frozen data where they were, its role locked out.
Retiring it asks isolation to export them, as offboarding does, then drop its schema, database
or rows and its role. Only a predecessor whose move is ``moved`` (verified) is retired; one
retired stays so, and a retirement asked for before and not finished, or failed, is asked for
again, which isolation's recorded removal makes harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from services.onboarding.moves import MoveStatus


class RetirementStatus(StrEnum):
    REQUESTED = "requested"
    RETIRED = "retired"
    FAILED = "failed"


@dataclass
class Retirement:
    """One predecessor's move, as far as retiring it goes."""

    source: str
    target: str
    service_id: str
    move_status: MoveStatus
    status: RetirementStatus | None = None
    reason: str | None = None
    moved_at: datetime | None = None

    def refusal(self) -> str | None:
        """Why this predecessor is not retired now, or None."""
        if self.move_status is not MoveStatus.MOVED:
            return (
                f"its move is {self.move_status}, not verified: it is retired once"
                " `tenancy reorganise moves` shows it moved"
            )
        return None

    def request(self) -> bool:
        """True when its retirement is to be asked for now."""
        if self.refusal() is not None or self.status is RetirementStatus.RETIRED:
            return False
        self.status, self.reason = RetirementStatus.REQUESTED, None
        return True

    def retired(self) -> bool:
        if self.status is RetirementStatus.RETIRED:
            return False  # a repeated report of a retirement recorded already
        self.status, self.reason = RetirementStatus.RETIRED, None
        return True

    def fail(self, reason: str) -> bool:
        if self.status is not RetirementStatus.REQUESTED:
            return False  # a late failure of a retirement settled since
        self.status, self.reason = RetirementStatus.FAILED, reason
        return True


def due_for_retirement(found: list[Retirement], now: datetime, after_days: int) -> list[Retirement]:
    """The predecessors moved at least ``after_days`` ago and never asked to retire: the
    worker retires those itself. A failed or pending retirement waits for the operator."""
    cutoff = now - timedelta(days=after_days)
    return [
        r
        for r in found
        if r.refusal() is None
        and r.status is None
        and r.moved_at is not None
        and r.moved_at <= cutoff
    ]


@dataclass(frozen=True)
class Retired:
    """What ``tenancy reorganise retire`` did for a vesting day."""

    vesting: date
    requested: list[str]  # asked to retire now
    already: list[str]  # retired before
    refused: dict[str, str]  # predecessor tenancy -> why it is not retired
