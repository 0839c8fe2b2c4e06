"""Council reorganisation (issue 18): the register's successors and dates, and the plan for each
tenancy of a replaced council. Plain Python over the real register (Cumbria, 2023) and a copy
of it with Surrey's 2027 reorganisation added as mySociety would publish it."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from services.onboarding.councils import (
    CouncilRecord,
    CouncilRefused,
    CouncilRegister,
    ReferenceDataInvalid,
)
from services.onboarding.reorganisation import (
    Kind,
    LiveTenancy,
    PlanInputInvalid,
    Readiness,
    TenancyPlan,
    parse_hosts,
    parse_shares,
    plan,
    replaced_refusal,
    successor_tenancy_id,
    vesting_instant,
)
from shared.catalogue import IsolationTier, PeriodKind
from shared.settings import DEFAULT_COUNCILS_CSV

CUMBRIA_VESTING = date(2023, 4, 1)
SURREY_VESTING = date(2027, 4, 1)
EAST_SURREY = {"Elmbridge", "Epsom and Ewell", "Mole Valley", "Reigate and Banstead", "Tandridge"}
WEST_SURREY = {"Guildford", "Runnymede", "Spelthorne", "Surrey Heath", "Waverley", "Woking"}
# Codes ONS would issue the two new councils, for the plan once the register has them.
ISSUED = {"ESU": "E06000067", "WSU": "E06000068"}

real = CouncilRegister.from_csv(DEFAULT_COUNCILS_CSV)


def surrey_csv(folder: Path, issued: dict[str, str] | None = None) -> Path:
    """The real register with Surrey reorganised on 1 April 2027: East and West Surrey listed
    ahead of vesting without GSS codes (unless ``issued``), the districts ended the day before
    vesting and the county on vesting day, the two ways the register writes an end."""
    with DEFAULT_COUNCILS_CSV.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    districts = [r for r in rows if r["county-la"] == "SRY" and r["current-authority"] == "True"]
    assert {r["nice-name"] for r in districts} == EAST_SURREY | WEST_SURREY
    for row in districts:
        row["end-date"] = "2027-03-31"
        row["replaced-by"] = "ESU" if row["nice-name"] in EAST_SURREY else "WSU"
    [county] = [r for r in rows if r["local-authority-code"] == "SRY"]
    county["end-date"] = "2027-04-01"
    county["replaced-by"] = "ESU,WSU"
    for code, name in (("ESU", "East Surrey"), ("WSU", "West Surrey")):
        rows.append(
            {
                **dict.fromkeys(fields, ""),
                "local-authority-code": code,
                "official-name": f"{name} Council",
                "nice-name": name,
                "gss-code": (issued or {}).get(code, ""),
                "start-date": "2027-04-01",
                "nation": "England",
                "region": "South East",
                "local-authority-type": "UA",
                "local-authority-type-name": "Unitary authority",
                "current-authority": "False",
            }
        )
    path = folder / "uk_local_authorities.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def surrey(tmp_path: Path) -> CouncilRegister:
    return CouncilRegister.from_csv(surrey_csv(tmp_path))


@pytest.fixture
def surrey_issued(tmp_path: Path) -> CouncilRegister:
    return CouncilRegister.from_csv(surrey_csv(tmp_path, ISSUED))


def tenancy(
    council: str,
    service: str = "bin-collections",
    tier: IsolationTier = IsolationTier.SCHEMA,
    state: str = "active",
    period: PeriodKind | None = PeriodKind.MONTH,
    n: int = 1,
) -> LiveTenancy:
    return LiveTenancy(f"5f0c7a3e-0000-4000-8000-{n:012d}", council, service, tier, state, period)


def gss(register: CouncilRegister, code: str) -> str:
    found = register.find(code)
    assert found is not None
    assert found.gss
    return found.gss


def surrey_tenancies(register: CouncilRegister, tier: IsolationTier) -> list[LiveTenancy]:
    """A tenancy of every Surrey council in one service of ``tier``."""
    service = f"svc-{tier.value}"
    codes = ["SRY"] + [
        r.register_code for r in register.replaced_on(SURREY_VESTING) if r.register_code != "SRY"
    ]
    return [
        tenancy(gss(register, code), service, tier, n=i) for i, code in enumerate(codes, start=1)
    ]


def by_council(found: tuple[TenancyPlan, ...]) -> dict[str, TenancyPlan]:
    return {t.council.register_code: t for t in found}


# -- the register -------------------------------------------------------------------------


def test_an_end_written_as_the_day_before_vesting_is_read_as_vesting_day() -> None:
    bournemouth, cumbria = real.find("BMH"), real.find("CMA")
    assert bournemouth is not None
    assert cumbria is not None
    assert bournemouth.end == date(2019, 4, 1)  # written 2019-03-31; BCP starts 2019-04-01
    assert bournemouth.exists_on(date(2019, 3, 31))
    assert not bournemouth.exists_on(date(2019, 4, 1))
    assert cumbria.end == CUMBRIA_VESTING  # written as vesting day already
    assert real.vesting_days(date(2019, 1, 1)) == [
        date(2019, 4, 1),
        date(2020, 4, 1),
        date(2021, 4, 1),
        date(2023, 4, 1),
    ]


def test_a_split_names_every_successor() -> None:
    cumbria = real.find("E10000006")
    assert cumbria is not None
    assert cumbria.replaced_by == ("CBD", "WAF")
    assert [s.name for s in real.successors_of(cumbria)] == [
        "Cumberland Council",
        "Westmorland and Furness Council",
    ]


def test_a_council_is_listed_before_it_has_a_gss_code(surrey: CouncilRegister) -> None:
    east = surrey.find("esu")
    assert east is not None
    assert east.gss == ""
    assert east.start == SURREY_VESTING
    assert east.label == "East Surrey Council (register code ESU, no GSS code yet)"
    # It is not a council anyone can join yet: today's councils are the same 397.
    assert len(surrey.current(date(2026, 11, 22))) == 397
    assert surrey.vesting_days(date(2026, 12, 4)) == [SURREY_VESTING]
    assert real.vesting_days(date(2026, 12, 4)) == []
    for code in ("E07000207", "E10000030"):  # Elmbridge, written the day before; the county
        record = surrey.find(code)
        assert record is not None
        assert record.end == SURREY_VESTING


def test_a_replaced_council_can_join_until_vesting_and_is_then_refused(
    surrey: CouncilRegister,
) -> None:
    assert surrey.resolve("E07000207", date(2027, 3, 31)).name == "Elmbridge Borough Council"
    with pytest.raises(CouncilRefused) as refusal:
        surrey.resolve("E10000030", SURREY_VESTING)
    message = str(refusal.value)
    assert "ceased to exist on 2027-04-01" in message
    assert "East Surrey Council (register code ESU, no GSS code yet)" in message
    assert "West Surrey Council (register code WSU, no GSS code yet)" in message


def test_reference_data_that_cannot_be_read_names_the_line_field_and_rule(
    tmp_path: Path,
) -> None:
    path = surrey_csv(tmp_path)
    path.write_text(path.read_text().replace("2027-03-31", "31/03/2027", 1))
    with pytest.raises(ReferenceDataInvalid, match=r"line \d+ \(\w+\): end-date: '31/03/2027'"):
        CouncilRegister.from_csv(path)


# -- Cumbria, 2023: a split and two merges, from the real register ---------------------------


@pytest.mark.parametrize(
    ("tier", "action"),
    [
        (IsolationTier.POOLED, "retag-pooled-rows"),
        (IsolationTier.SCHEMA, "copy-schema-rows"),
        (IsolationTier.DATABASE, "copy-database-rows"),
    ],
)
def test_cumbria_is_hosted_by_the_successor_the_operator_names(
    tier: IsolationTier, action: str
) -> None:
    tenancies = [
        tenancy("E10000006", tier=tier, n=1),  # Cumbria County Council
        tenancy("E07000028", tier=tier, n=2),  # Carlisle -> Cumberland
        tenancy("E07000030", tier=tier, n=3),  # Eden -> Westmorland and Furness
        tenancy("E06000063", tier=tier, n=4),  # Cumberland, already in the service
    ]
    hosts = parse_hosts(real, CUMBRIA_VESTING, ["CMA=WAF"])
    found = plan(real, CUMBRIA_VESTING, tenancies, hosts)

    assert found.readiness is Readiness.READY
    plans = by_council(found.tenancies)
    assert set(plans) == {"CMA", "CAR", "EDN"}  # Cumberland's own tenancy is not replaced
    county = plans["CMA"]
    assert county.kind is Kind.SPLIT
    assert county.successor is not None
    assert county.successor.register_code == "WAF"
    assert [p.register_code for p in county.served] == ["CBD"]
    # Westmorland and Furness has no tenancy in the service: one is made, Eden's data join it.
    assert county.creates_target
    assert county.target_tenancy_id == plans["EDN"].target_tenancy_id
    assert plans["CAR"].target_tenancy_id == tenancies[3].id
    assert not plans["CAR"].creates_target
    actions = [s.action for s in county.steps]
    assert actions[:2] == ["create-successor-tenancy", "novate-hosting-agreement"]
    assert action in actions
    assert "create-successor-tenancy" not in [s.action for s in plans["CAR"].steps]
    [split] = [c for c in found.changes if c.kind is Kind.SPLIT]
    assert split.host is not None
    assert split.host.register_code == "WAF"


def test_a_split_without_a_named_host_is_blocked_until_the_operator_names_one() -> None:
    found = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")])
    [county] = found.tenancies
    assert county.readiness is Readiness.BLOCKED
    assert county.successor is None
    assert county.steps == ()
    assert "the operator must name the successor that hosts bin-collections" in county.reasons[0]
    assert "(one of CBD, WAF)" in county.reasons[0]


def test_a_split_may_have_a_host_per_service_winning_for_that_service() -> None:
    tenancies = [
        tenancy("E10000006", "bin-collections", n=1),
        tenancy("E10000006", "parking-permits", IsolationTier.DATABASE, n=2),
    ]
    catalogue = {"bin-collections", "parking-permits", "planning-comments"}
    given = ["CMA=CBD", "E10000006/parking-permits=WAF"]
    hosts = parse_hosts(real, CUMBRIA_VESTING, given, services=catalogue, tenancies=tenancies)
    # Stored flat as ever: a plan applied with {"CMA": "CBD"} reads the same.
    assert hosts == {"CMA": "CBD", "CMA/parking-permits": "WAF"}
    found = plan(real, CUMBRIA_VESTING, tenancies, hosts)
    assert found.readiness is Readiness.READY
    hosted = {t.service_id: t.successor.register_code for t in found.tenancies if t.successor}
    assert hosted == {"bin-collections": "CBD", "parking-permits": "WAF"}
    [split] = [c for c in found.changes if c.kind is Kind.SPLIT]
    assert split.host is not None
    assert split.host.register_code == "CBD"
    assert split.as_json()["service_hosts"]["parking-permits"]["register_code"] == "WAF"

    def refused(entry: str) -> str:
        with pytest.raises(PlanInputInvalid) as refusal:
            parse_hosts(real, CUMBRIA_VESTING, [entry], services=catalogue, tenancies=tenancies)
        return str(refusal.value)

    assert "'parking' in 'CMA/parking=WAF' is not a service in the catalogue" in refused(
        "CMA/parking=WAF"
    )
    assert "Cumbria County Council (E10000006) has no tenancy in planning-comments" in refused(
        "CMA/planning-comments=WAF"
    )
    assert "Carlisle City Council (E07000028) is not split" in refused("CAR/bin-collections=CBD")
    assert "North Yorkshire Council (E06000065) does not succeed" in refused(
        "CMA/bin-collections=NYE"
    )
    assert "names a service but no council" in refused("/bin-collections=CBD")


def test_a_council_whose_replacement_is_decided_is_told_to_onboard_its_successor(
    surrey_issued: CouncilRegister,
) -> None:
    county = surrey_issued.find("SRY")
    elmbridge = surrey_issued.find("E07000207")
    assert county is not None
    assert elmbridge is not None
    before = date(2026, 12, 1)
    assert replaced_refusal(surrey_issued, county, None, before) is None
    assert replaced_refusal(surrey_issued, county, "scheduled", before) == (
        "council: Surrey County Council (E10000030) is replaced by East Surrey Council and West"
        " Surrey Council on 2027-04-01 and the plan for that day is scheduled: onboard East"
        " Surrey Council or West Surrey Council instead (from 2027-04-01, when they exist)"
    )
    told = replaced_refusal(surrey_issued, elmbridge, "applied", SURREY_VESTING)
    assert told is not None
    assert told.endswith(
        "is replaced by East Surrey Council on 2027-04-01 and the plan for that day is applied:"
        " onboard East Surrey Council instead"
    )


# -- Surrey, 2027: twelve councils into two, in every tier -----------------------------------


@pytest.mark.parametrize("tier", list(IsolationTier))
def test_surrey_waits_for_the_new_councils_gss_codes(
    surrey: CouncilRegister, tier: IsolationTier
) -> None:
    hosts = parse_hosts(surrey, SURREY_VESTING, ["ESU"])
    found = plan(surrey, SURREY_VESTING, surrey_tenancies(surrey, tier), hosts)
    assert found.readiness is Readiness.WAITING
    assert len(found.tenancies) == 12
    for planned in found.tenancies:
        assert planned.readiness is Readiness.WAITING
        assert any("waits for its GSS code" in r for r in planned.reasons)


@pytest.mark.parametrize("tier", list(IsolationTier))
def test_surrey_plan_once_the_codes_are_issued(
    surrey_issued: CouncilRegister, tier: IsolationTier
) -> None:
    register = surrey_issued
    hosts = parse_hosts(register, SURREY_VESTING, ["SRY=ESU"])
    found = plan(register, SURREY_VESTING, surrey_tenancies(register, tier), hosts)

    assert found.readiness is Readiness.READY
    summary = sorted(
        (c.kind.value, tuple(s.register_code for s in c.successors), len(c.predecessors))
        for c in found.changes
    )
    assert summary == [("merge", ("ESU",), 5), ("merge", ("WSU",), 6), ("split", ("ESU", "WSU"), 1)]
    into: dict[str, set[str]] = {}
    for planned in found.tenancies:
        assert planned.successor is not None
        assert planned.target_tenancy_id is not None
        into.setdefault(planned.successor.register_code, set()).add(planned.target_tenancy_id)
        assert planned.creates_target  # neither new council has a tenancy yet
        workers = [s.worker for s in planned.steps]
        assert {"onboarding", "isolation", "branding", "metering", "audit"} <= set(workers)
    # One new tenancy per successor in the service, whoever's data it takes.
    assert {code: len(ids) for code, ids in into.items()} == {"ESU": 1, "WSU": 1}
    county = by_council(found.tenancies)["SRY"]
    hosted = {t.council.name for t in found.tenancies if t.successor == county.successor}
    assert len(hosted) == 6  # the five East districts and the county, hosted by East Surrey
    assert [p.register_code for p in county.served] == ["WSU"]


def test_billing_closes_the_predecessor_at_the_end_of_the_day_before_in_london() -> None:
    # 1 April is in British Summer Time: the day before ends at 23:00 UTC.
    assert vesting_instant(SURREY_VESTING) == datetime(2027, 3, 31, 23, tzinfo=UTC)
    assert vesting_instant(date(2027, 1, 1)) == datetime(2027, 1, 1, tzinfo=UTC)
    found = plan(real, CUMBRIA_VESTING, [tenancy("E07000028")])
    [metering] = [s for s in found.tenancies[0].steps if s.worker == "metering"]
    assert "at the end of 2023-03-31, London time (2023-03-31T23:00:00+00:00)" in metering.detail
    assert "part of" not in metering.detail  # 1 April starts a month and a financial year


def record(
    code: str,
    gss_code: str,
    start: date | None = None,
    end: date | None = None,
    replaced_by: tuple[str, ...] = (),
) -> CouncilRecord:
    return CouncilRecord(
        register_code=code,
        name=f"{code} Council",
        gss=gss_code,
        slug=code.lower(),
        nation="England",
        kind="Unitary authority",
        start=start,
        end=end,
        replaced_by=replaced_by,
        former_gss=(),
    )


def test_a_vesting_day_inside_a_period_bills_the_part_before_it() -> None:
    vesting = date(2027, 5, 15)
    register = CouncilRegister(
        [
            record("OLD", "E07000901", end=vesting, replaced_by=("NEW",)),
            record("NEW", "E06000901", start=vesting),
        ]
    )
    found = plan(register, vesting, [tenancy("E07000901", period=PeriodKind.FINANCIAL_YEAR)])
    [metering] = [s for s in found.tenancies[0].steps if s.worker == "metering"]
    assert "for the part of FY2027-28 before vesting" in metering.detail


def test_a_successor_that_has_ceased_or_starts_later_blocks_the_plan() -> None:
    vesting = date(2027, 4, 1)
    register = CouncilRegister(
        [
            record("ONE", "E07000901", end=vesting, replaced_by=("GONE",)),
            record("GONE", "E06000901", end=vesting),
            record("TWO", "E07000902", end=vesting, replaced_by=("LATE",)),
            record("LATE", "E06000902", start=date(2028, 4, 1)),
            record("THREE", "E07000903", end=vesting, replaced_by=("NONE",)),
        ]
    )
    tenancies = [tenancy(f"E0700090{i}", n=i) for i in (1, 2, 3)]
    plans = by_council(plan(register, vesting, tenancies).tenancies)
    assert all(p.readiness is Readiness.BLOCKED for p in plans.values())
    assert "has itself ceased, on 2027-04-01" in plans["ONE"].reasons[0]
    assert "starts on 2028-04-01, after vesting day 2027-04-01" in plans["TWO"].reasons[0]
    assert "successor NONE: not in the register" in plans["THREE"].reasons[0]


def test_tenancies_that_are_not_active_block_and_leaving_ones_are_left_out() -> None:
    tenancies = [
        tenancy("E07000028", state="failed", n=1),
        tenancy("E07000026", state="registered", n=2),
        tenancy("E07000029", state="offboarding", n=3),
        tenancy("E06000063", state="failed", n=4),  # Cumberland's failed one is no target
    ]
    plans = by_council(plan(real, CUMBRIA_VESTING, tenancies).tenancies)
    assert set(plans) == {"CAR", "ALL"}
    assert "is failed: retry it, or offboard it, before vesting" in plans["CAR"].reasons[0]
    assert "is still registered: it must be active" in plans["ALL"].reasons[0]
    assert plans["CAR"].creates_target


def test_a_successor_tenancy_still_provisioning_blocks_the_move_into_it() -> None:
    tenancies = [tenancy("E07000028", n=1), tenancy("E06000063", state="requested", n=2)]
    [carlisle] = plan(real, CUMBRIA_VESTING, tenancies).tenancies
    assert carlisle.readiness is Readiness.BLOCKED
    assert carlisle.target_tenancy_id == tenancies[1].id
    assert "Cumberland Council's tenancy" in carlisle.reasons[0]
    assert "is requested: it must be active to take the data" in carlisle.reasons[0]


def test_planning_again_names_the_same_new_tenancies() -> None:
    hosts = {"CMA": "CBD"}
    first = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")], hosts)
    again = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")], hosts)
    assert first == again
    cumberland = first.tenancies[0].successor
    assert cumberland is not None
    assert successor_tenancy_id(cumberland, "bin-collections", CUMBRIA_VESTING) != (
        successor_tenancy_id(cumberland, "parking-permits", CUMBRIA_VESTING)
    )
    # Two platforms on one PostgreSQL cluster (staging beside production) share its roles:
    # their new tenancies, and so the tenant roles made for them, differ.
    assert successor_tenancy_id(cumberland, "bin-collections", CUMBRIA_VESTING, "tenancy") != (
        successor_tenancy_id(cumberland, "bin-collections", CUMBRIA_VESTING, "tenancy_staging")
    )


def test_a_day_without_a_reorganisation_has_an_empty_plan() -> None:
    found = plan(real, date(2024, 4, 1), [tenancy("E07000028")])
    assert found.changes == ()
    assert found.tenancies == ()
    assert found.readiness is Readiness.READY


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["XYZ"], "host: 'XYZ' is not a council in the register"),
        (["CAR=CBD"], "host: Carlisle City Council (E07000028) is not split on 2023-04-01"),
        (["CMA=NYE"], "host: North Yorkshire Council (E06000065) does not succeed Cumbria"),
        (["CMA=CBD", "CMA=WAF"], "is given two hosts, CBD and WAF; name one"),
        (["SMT"], "host: Somerset Council (E06000066) succeeds no council split on 2023-04-01"),
    ],
)
def test_a_host_the_plan_cannot_use_is_refused_naming_the_rule(
    given: list[str], message: str
) -> None:
    with pytest.raises(PlanInputInvalid) as refusal:
        parse_hosts(real, CUMBRIA_VESTING, given)
    assert message in str(refusal.value)
    assert str(refusal.value).startswith("host: ")


def test_a_host_may_be_named_by_gss_code() -> None:
    assert parse_hosts(real, CUMBRIA_VESTING, ["E10000006=E06000064"]) == {"CMA": "WAF"}


def test_a_splits_cost_is_shared_as_the_operator_says_or_equally() -> None:
    hosts = parse_hosts(real, CUMBRIA_VESTING, ["CMA=WAF"])
    given = parse_shares(real, CUMBRIA_VESTING, ["E06000064=55%", "CMA/CBD=0.45"])
    assert given == {"CMA": {"WAF": Fraction(11, 20), "CBD": Fraction(9, 20)}}
    [county] = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")], hosts, given).tenancies
    assert [(p.register_code, share) for p, share in county.shares] == [
        ("WAF", Fraction(11, 20)),  # the host's first
        ("CBD", Fraction(9, 20)),
    ]
    assert "(Westmorland and Furness Council 55%, Cumberland Council 45%)" in next(
        s.detail for s in county.steps if s.action == "novate-hosting-agreement"
    )
    [equal] = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")], hosts).tenancies
    assert [share for _, share in equal.shares] == [Fraction(1, 2), Fraction(1, 2)]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["XYZ=0.5"], "share: 'XYZ' is not a council in the register"),
        (["CBD=0.45"], "give WAF a share too"),
        (["CBD=0.45", "WAF=0.5"], "add up to 95%; they must add up to exactly 1"),
        (["CBD=-0.45", "WAF=1.45"], "'CBD=-0.45': a share is from 0 to 1"),
        (["CBD=1/0", "WAF=1"], "'CBD=1/0': a share is from 0 to 1"),
        (["CBD=0.5", "CBD=0.5"], "Cumberland Council (E06000063) is given two shares"),
        (["SMT=1"], "Somerset Council (E06000066) succeeds no council split on 2023-04-01"),
        (["CAR/CBD=1"], "Carlisle City Council (E07000028) is not split on 2023-04-01"),
        (["CBD"], "share: 'CBD' is not SUCCESSOR=SHARE"),
    ],
)
def test_shares_the_plan_cannot_use_are_refused_naming_the_rule(
    given: list[str], message: str
) -> None:
    with pytest.raises(PlanInputInvalid) as refusal:
        parse_shares(real, CUMBRIA_VESTING, given)
    assert message in str(refusal.value)
    assert str(refusal.value).startswith("share: ")
