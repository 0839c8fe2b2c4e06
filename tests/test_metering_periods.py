"""Billing periods: parsing, and boundaries at midnight in London across both clock changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.metering.periods import Period
from shared.catalogue import PeriodKind

MONTH = PeriodKind.MONTH
FY = PeriodKind.FINANCIAL_YEAR


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11", Period(MONTH, 2026, 11)),
        ("2026-01", Period(MONTH, 2026, 1)),
        ("2026-12", Period(MONTH, 2026, 12)),
        ("FY2026-27", Period(FY, 2026)),
        ("FY1999-00", Period(FY, 1999)),
    ],
)
def test_parse_and_format_are_inverse(text: str, expected: Period) -> None:
    assert Period.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "2026-13",
        "2026-00",
        "2026-1",
        "FY2026-28",
        "FY2026-26",
        "FY26-27",
        "fy2026-27",
        "",
        "2026-11-01",
        " 2026-11",
        "2026-11\n",
        "२०२६-११",  # Devanagari digits: int() reads them, a period must not
        "FY2026",
    ],
)
def test_parse_refuses_what_is_not_a_period(text: str) -> None:
    with pytest.raises(ValueError, match=r"^period: .* is not a period"):
        Period.parse(text)


def test_parse_names_the_accepted_forms() -> None:
    with pytest.raises(
        ValueError, match="write a month as 2026-11 or a financial year as FY2026-27"
    ):
        Period.parse("November")


def test_a_financial_year_must_end_in_the_next_year() -> None:
    with pytest.raises(ValueError, match="FY2026-27"):
        Period.parse("FY2026-28")


@pytest.mark.parametrize(
    ("instant", "month", "financial_year"),
    [
        # Clocks go forward at 01:00 UTC on Sunday 29 March 2026: April starts in BST.
        ("2026-03-31T23:30:00", "2026-04", "FY2026-27"),  # 00:30 BST, 1 April
        ("2026-03-31T23:00:00", "2026-04", "FY2026-27"),  # midnight BST exactly
        ("2026-03-31T22:59:59", "2026-03", "FY2025-26"),  # 23:59:59 BST, 31 March
        ("2026-03-29T00:59:59", "2026-03", "FY2025-26"),  # the last second of GMT
        ("2026-03-29T01:00:00", "2026-03", "FY2025-26"),  # the first second of BST
        ("2026-02-28T23:59:59", "2026-02", "FY2025-26"),  # GMT: UTC and local agree
        ("2026-03-01T00:00:00", "2026-03", "FY2025-26"),
        # Clocks go back at 01:00 UTC on Sunday 25 October 2026: November starts in GMT.
        ("2026-10-31T23:30:00", "2026-10", "FY2026-27"),  # 23:30 GMT, 31 October
        ("2026-11-01T00:00:00", "2026-11", "FY2026-27"),
        ("2026-11-30T23:59:59", "2026-11", "FY2026-27"),
        ("2026-09-30T23:00:00", "2026-10", "FY2026-27"),  # midnight BST, 1 October
        ("2026-09-30T22:59:59", "2026-09", "FY2026-27"),
        ("2026-10-25T00:30:00", "2026-10", "FY2026-27"),  # 01:30 BST, the first time
        ("2026-10-25T01:30:00", "2026-10", "FY2026-27"),  # 01:30 GMT, the second time
        ("2026-12-31T23:59:59", "2026-12", "FY2026-27"),
        ("2027-01-01T00:00:00", "2027-01", "FY2026-27"),
        ("2027-03-31T22:59:59", "2027-03", "FY2026-27"),
        ("2027-03-31T23:00:00", "2027-04", "FY2027-28"),
    ],
)
def test_containing_goes_by_london_time(instant: str, month: str, financial_year: str) -> None:
    at = utc(instant)
    assert str(Period.containing(MONTH, at)) == month
    assert str(Period.containing(FY, at)) == financial_year
    assert Period.parse(month).contains(at)
    assert Period.parse(financial_year).contains(at)


def test_containing_takes_any_offset() -> None:
    # 01:30 at +02:00 on 1 April is 23:30 UTC on 31 March, which is already April in London.
    at = datetime(2026, 4, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert Period.containing(MONTH, at) == Period(MONTH, 2026, 4)


def test_a_naive_instant_is_refused() -> None:
    naive = datetime(2026, 11, 22, 10, 0)
    with pytest.raises(ValueError, match="no time zone"):
        Period.containing(MONTH, naive)
    with pytest.raises(ValueError, match="no time zone"):
        Period.parse("2026-11").contains(naive)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-03", "2026-03-01T00:00:00", "2026-03-31T23:00:00"),
        ("2026-04", "2026-03-31T23:00:00", "2026-04-30T23:00:00"),
        ("2026-10", "2026-09-30T23:00:00", "2026-11-01T00:00:00"),
        ("2026-11", "2026-11-01T00:00:00", "2026-12-01T00:00:00"),
        ("2026-12", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("FY2026-27", "2026-03-31T23:00:00", "2027-03-31T23:00:00"),
        ("FY2025-26", "2025-03-31T23:00:00", "2026-03-31T23:00:00"),
    ],
)
def test_start_and_end_are_london_midnights_in_utc(text: str, start: str, end: str) -> None:
    period = Period.parse(text)
    assert period.start == utc(start)
    assert period.end == utc(end)
    assert period.start.tzinfo is UTC
    assert period.end.tzinfo is UTC
    assert period.contains(period.start)
    assert not period.contains(period.end)
    assert not period.contains(period.start - timedelta(microseconds=1))
    assert period.contains(period.end - timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("text", "following"),
    [
        ("2026-11", "2026-12"),
        ("2026-12", "2027-01"),
        ("2026-03", "2026-04"),
        ("FY2026-27", "FY2027-28"),
        ("FY1999-00", "FY2000-01"),
    ],
)
def test_next_and_previous(text: str, following: str) -> None:
    period, after = Period.parse(text), Period.parse(following)
    assert period.next() == after
    assert after.previous() == period
    assert period.end == after.start
    assert period < after


def test_a_financial_year_spans_april_to_march() -> None:
    months = Period.parse("FY2026-27").months()
    assert [str(m) for m in months] == [
        "2026-04",
        "2026-05",
        "2026-06",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
        "2026-11",
        "2026-12",
        "2027-01",
        "2027-02",
        "2027-03",
    ]
    assert months[0].start == Period.parse("FY2026-27").start
    assert months[-1].end == Period.parse("FY2026-27").end


def test_a_month_spans_itself() -> None:
    assert Period.parse("2026-11").months() == [Period(MONTH, 2026, 11)]


def test_months_tile_a_span_of_years_without_gaps() -> None:
    # Stands in for a property test: every month over a decade starts where the last ended,
    # holds its own first and last instants, and parses back from its text.
    month = Period(MONTH, 2020, 1)
    for _ in range(120):
        following = month.next()
        assert month.end == following.start
        assert Period.containing(MONTH, month.start) == month
        assert Period.containing(MONTH, month.end - timedelta(microseconds=1)) == month
        assert Period.parse(str(month)) == month
        assert following.previous() == month
        month = following


@pytest.mark.parametrize(
    ("kind", "year", "month"),
    [(MONTH, 2026, None), (MONTH, 2026, 13), (MONTH, 2026, 0), (FY, 2026, 4), (MONTH, 999, 1)],
)
def test_a_period_is_checked_when_made(kind: PeriodKind, year: int, month: int | None) -> None:
    with pytest.raises(ValueError, match="period:"):
        Period(kind, year, month)
