"""Reorganisations applied on vesting day by the onboarding worker (issue 18): which vesting days
are due, and which of their plans go ahead by themselves. Plain Python over the real register
(Cumbria's split, 2023) and a copy with Surrey's 2027 reorganisation added."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from services.onboarding import moves
from services.onboarding.app import build
from services.onboarding.councils import CouncilRegister
from services.onboarding.reorganisation import Kind, Readiness, london_day
from services.onboarding.settings import OnboardingSettings
from services.onboarding.vesting_day import Watch, due
from tests.test_reorganisation import ISSUED, SURREY_VESTING, surrey_csv, tenancy

CUMBRIA_VESTING = date(2023, 4, 1)
ELMBRIDGE, CUMBRIA = "E07000207", "E10000006"


@pytest.fixture
def register(tmp_path: Path) -> CouncilRegister:
    return CouncilRegister.from_csv(surrey_csv(tmp_path, ISSUED))


def test_a_vesting_day_is_due_from_london_midnight_until_its_plan_is_applied(
    register: CouncilRegister,
) -> None:
    live = [tenancy(ELMBRIDGE, n=1), tenancy(CUMBRIA, n=2)]
    # Days that moved none of these tenancies (2019 to 2021) have no plan to apply.
    before = due(register, SURREY_VESTING.replace(day=1, month=3), set(), live)
    assert [p.vesting for p in before] == [CUMBRIA_VESTING]
    on_the_day = due(register, london_day(datetime(2027, 3, 31, 23, tzinfo=UTC)), set(), live)
    assert [p.vesting for p in on_the_day] == [CUMBRIA_VESTING, SURREY_VESTING]
    assert [p.readiness for p in on_the_day] == [Readiness.BLOCKED, Readiness.READY]
    # Applied once, by anyone, a day is never due again: its failed moves are the operator's.
    assert [p.vesting for p in due(register, date(2030, 1, 1), {SURREY_VESTING}, live)] == [
        CUMBRIA_VESTING
    ]
    assert due(register, date(2030, 1, 1), {SURREY_VESTING, CUMBRIA_VESTING}, live) == []


def test_a_split_waits_for_its_host_and_a_successor_for_its_gss_code(
    register: CouncilRegister, tmp_path: Path
) -> None:
    [split] = due(register, CUMBRIA_VESTING, set(), [tenancy(CUMBRIA)])
    assert split.tenancies[0].kind is Kind.SPLIT
    assert split.readiness is Readiness.BLOCKED
    assert "the operator must name the successor that hosts bin-collections" in moves.not_ready(
        split
    )

    (tmp_path / "unissued").mkdir()
    unissued = CouncilRegister.from_csv(surrey_csv(tmp_path / "unissued"))
    [merge] = due(unissued, SURREY_VESTING, set(), [tenancy(ELMBRIDGE)])
    assert merge.readiness is Readiness.WAITING
    assert "East Surrey Council (register code ESU, no GSS code yet) waits for its GSS code" in (
        moves.not_ready(merge)
    )


def test_vesting_day_starts_at_midnight_in_london() -> None:
    assert london_day(datetime(2027, 3, 31, 22, 59, tzinfo=UTC)) == date(2027, 3, 31)
    assert london_day(datetime(2027, 3, 31, 23, 0, tzinfo=UTC)) == SURREY_VESTING  # BST
    assert london_day(datetime(2028, 1, 1, 0, 0, tzinfo=UTC)) == date(2028, 1, 1)  # GMT


def test_a_plan_not_applied_is_warned_of_once_a_day() -> None:
    watch = Watch()
    day = SURREY_VESTING
    assert watch.first_today(day, day)
    assert not watch.first_today(day, day)
    assert watch.first_today(CUMBRIA_VESTING, day)  # each vesting day its own
    assert watch.first_today(day, date(2027, 4, 2))


def test_the_worker_applies_on_vesting_day_unless_told_not_to(tmp_path: Path) -> None:
    def loops(automatically: bool) -> int:
        settings = OnboardingSettings(_env_file=None, reorganise_automatically=automatically)  # type: ignore[call-arg]
        return len(build(settings).background)

    assert loops(True) == loops(False) + 1


def test_a_plan_is_applied_before_vesting_day_only_with_a_reason() -> None:
    day_before = date(2027, 3, 31)
    with pytest.raises(moves.BeforeVestingDay, match="on: 2027-04-01 is vesting day, 1 day away"):
        moves.early_reason(SURREY_VESTING, day_before, None)
    with pytest.raises(moves.PlanNotApplicable, match=r"early: the reason .* is blank"):
        moves.early_reason(SURREY_VESTING, day_before, "  ")
    assert moves.early_reason(SURREY_VESTING, day_before, " rehearsal ") == "rehearsal"
    # From vesting day on the councils have changed: no reason is needed, nor kept.
    assert moves.early_reason(SURREY_VESTING, SURREY_VESTING, None) is None
    assert moves.early_reason(SURREY_VESTING, date(2027, 4, 2), "late") is None
