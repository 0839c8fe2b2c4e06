"""Billing periods: calendar months and UK financial years (1 April to 31 March).

Councils budget and are invoiced in UK local time, so a period starts at midnight in
Europe/London, whatever the clocks are doing: 2026-04 starts at 23:00 UTC on 31 March (BST),
2026-11 at 00:00 UTC on 1 November (GMT). Free of I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Self
from zoneinfo import ZoneInfo

from shared.catalogue import PeriodKind

LONDON = ZoneInfo("Europe/London")

# Four-digit years keep str() and parse() inverse.
MIN_YEAR = 1000
MAX_YEAR = 9999
FIRST_MONTH_OF_FINANCIAL_YEAR = 4

# Since 1900 Europe/London has changed its offset only by whole hours and only on the hour
# (UTC), so local midnight, where a period starts, is always on the hour too: every instant of
# one UTC hour lies in the same periods. Earlier, London kept its local mean time.
_HOURLY_SINCE = datetime(1900, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_FINANCIAL_YEAR = re.compile(r"FY([0-9]{4})-([0-9]{2})")


@dataclass(frozen=True, order=True)
class Period:
    kind: PeriodKind
    year: int  # the month's calendar year, or the calendar year the financial year starts in
    month: int | None = None  # 1..12 for a month; None for a financial year

    def __post_init__(self) -> None:
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise ValueError(f"period: year {self.year} is outside {MIN_YEAR}..{MAX_YEAR}")
        if self.kind is PeriodKind.MONTH:
            if self.month is None or not 1 <= self.month <= 12:
                raise ValueError(f"period: a month is numbered 1 to 12, not {self.month}")
        elif self.month is not None:
            raise ValueError("period: a financial year has no month")

    @classmethod
    def parse(cls, text: str) -> Self:
        accepted = "write a month as 2026-11 or a financial year as FY2026-27"
        if match := _MONTH.fullmatch(text):
            year, month = int(match[1]), int(match[2])
            if not 1 <= month <= 12:
                raise ValueError(f"period: {text!r} is not a period: there is no month {month}")
            return cls(PeriodKind.MONTH, year, month)
        if match := _FINANCIAL_YEAR.fullmatch(text):
            year, end = int(match[1]), int(match[2])
            if end != (year + 1) % 100:
                raise ValueError(
                    f"period: {text!r} is not a period: a financial year runs April to March, "
                    f"so the one starting in {year} is written {cls._fy_text(year)}"
                )
            return cls(PeriodKind.FINANCIAL_YEAR, year)
        raise ValueError(f"period: {text!r} is not a period; {accepted}")

    @classmethod
    def containing(cls, kind: PeriodKind, instant: datetime) -> Self:
        local = _aware(instant).astimezone(LONDON)
        if kind is PeriodKind.MONTH:
            return cls(kind, local.year, local.month)
        starts_in = local.year if local.month >= FIRST_MONTH_OF_FINANCIAL_YEAR else local.year - 1
        return cls(kind, starts_in)

    def of_month(self, kind: PeriodKind) -> Period:
        """The period of ``kind`` that this calendar month falls in."""
        assert self.month is not None, "a financial year is not a month"
        if kind is PeriodKind.MONTH:
            return self
        return Period(
            kind, self.year if self.month >= FIRST_MONTH_OF_FINANCIAL_YEAR else self.year - 1
        )

    def __str__(self) -> str:
        if self.month is None:
            return self._fy_text(self.year)
        return f"{self.year:04d}-{self.month:02d}"

    @staticmethod
    def _fy_text(year: int) -> str:
        return f"FY{year:04d}-{(year + 1) % 100:02d}"

    @property
    def start(self) -> datetime:
        """The instant the period starts, in UTC."""
        first_month = self.month if self.month is not None else FIRST_MONTH_OF_FINANCIAL_YEAR
        # UK clocks change at 01:00 UTC, so local midnight always exists and is never repeated.
        return datetime(self.year, first_month, 1, tzinfo=LONDON).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The instant the next period starts, in UTC: the end is exclusive."""
        return self.next().start

    def next(self) -> Period:
        if self.month is None:
            return Period(self.kind, self.year + 1)
        if self.month == 12:
            return Period(self.kind, self.year + 1, 1)
        return Period(self.kind, self.year, self.month + 1)

    def previous(self) -> Period:
        if self.month is None:
            return Period(self.kind, self.year - 1)
        if self.month == 1:
            return Period(self.kind, self.year - 1, 12)
        return Period(self.kind, self.year, self.month - 1)

    def months(self) -> list[Period]:
        """The calendar months the period spans, in order."""
        if self.month is not None:
            return [self]
        month = Period(PeriodKind.MONTH, self.year, FIRST_MONTH_OF_FINANCIAL_YEAR)
        spanned = []
        for _ in range(12):
            spanned.append(month)
            month = month.next()
        return spanned

    def contains(self, instant: datetime) -> bool:
        return self.start <= _aware(instant) < self.end


def period_of(kind: PeriodKind, instant: datetime) -> str:
    """``str(Period.containing(kind, instant))``, worked out once per hour of time: counting
    asks it of every event, and the time-zone conversion is most of what it costs."""
    hour = (_aware(instant) - _HOURLY_SINCE) // _HOUR
    if hour < 0:
        return str(Period.containing(kind, instant))
    return _period_of_hour(kind, hour)


@lru_cache(maxsize=4096)
def _period_of_hour(kind: PeriodKind, hour: int) -> str:
    return str(Period.containing(kind, _HOURLY_SINCE + hour * _HOUR))


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            f"period: {instant.isoformat()} has no time zone, so its period is ambiguous; "
            "give the instant with an offset, e.g. 2026-11-22T10:00:00Z"
        )
    return instant
