"""Pricing: each charge model's arithmetic, the penny rounding, cost sharing that adds up to the
penny, and the pricing rules of the service manifest."""

from __future__ import annotations

import random
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.metering.pricing import (
    PENNY,
    ROUNDING,
    Line,
    charge_pence,
    cost_share_lines,
    divide,
    format_pounds,
    share_cost,
    to_pence,
    usage_lines,
)
from shared.catalogue import (
    Charge,
    Governance,
    PeriodKind,
    Pricing,
    ServiceManifest,
    describe_validation_error,
    load_catalogue,
)

CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue"

D = Decimal


def charge(**fields: Any) -> Charge:
    return Charge.model_validate({"meter": "m", **fields})


TIERS = [
    {"up_to": 100, "unit_price": "0.10"},
    {"up_to": 1000, "unit_price": "0.05"},
    {"unit_price": "0.01"},
]

# -- rounding and formatting --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pounds", "pence"),
    [
        ("0.125", 13),
        ("0.124", 12),
        ("0.115", 12),  # halves up, not to even
        ("0.005", 1),
        ("0.004", 0),
        ("-0.125", -13),  # halves away from zero
        ("1000", 100000),
        ("12345678.9999", 1234567900),
        ("0", 0),
    ],
)
def test_to_pence_rounds_halves_up(pounds: str, pence: int) -> None:
    assert to_pence(D(pounds)) == pence


def test_to_pence_agrees_with_decimal_rounding() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        pounds = D(rng.randint(-(10**9), 10**9)).scaleb(-rng.randint(0, 6))
        expected = int(pounds.quantize(PENNY, rounding=ROUND_HALF_UP) * 100)
        assert to_pence(pounds) == expected, pounds
    assert ROUNDING == ROUND_HALF_UP


def test_to_pence_refuses_what_is_not_money() -> None:
    with pytest.raises(ValueError, match="not a sum of money"):
        to_pence(D("NaN"))


@pytest.mark.parametrize(
    ("pence", "text"),
    [(100000, "1000.00"), (-350, "-3.50"), (7, "0.07"), (-7, "-0.07"), (0, "0.00"), (12, "0.12")],
)
def test_format_pounds(pence: int, text: str) -> None:
    assert format_pounds(pence) == text


# -- unit price ---------------------------------------------------------------------------------


def test_unit_price() -> None:
    assert charge_pence(charge(unit_price="0.25"), D(1250)) == 31250


def test_unit_price_after_the_free_allowance() -> None:
    priced = charge(unit_price="0.25", free_allowance=100)
    assert charge_pence(priced, D(1250)) == 28750
    assert charge_pence(priced, D(101)) == 25
    assert charge_pence(priced, D(100)) == 0
    assert charge_pence(priced, D(40)) == 0  # an allowance larger than the usage is not a credit


@pytest.mark.parametrize(
    ("units", "price", "pence"),
    [
        ("3", "0.005", 2),  # 1.5p
        ("1", "0.005", 1),  # 0.5p rounds up
        ("1", "0.004", 0),  # 0.4p rounds down
        ("1000", "0.0001", 10),
        ("2.5", "0.10", 25),  # a sum meter's fractional units
        ("0.1", "0.05", 1),  # 0.5p, exactly: no float on the way
    ],
)
def test_fractional_penny_prices_round_once(units: str, price: str, pence: int) -> None:
    assert charge_pence(charge(unit_price=price), D(units)) == pence


def test_a_negative_reading_charges_nothing() -> None:
    assert charge_pence(charge(unit_price="1"), D(-5)) == 0


def test_a_reading_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        charge_pence(charge(unit_price="1"), D("NaN"))


# -- graduated tiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "pence"),
    [
        (0, 0),
        (1, 10),
        (50, 500),
        (100, 1000),
        (101, 1005),
        (1000, 1000 + 4500),
        (1001, 1000 + 4500 + 1),
        (1500, 1000 + 4500 + 500),
    ],
)
def test_graduated_tiers(units: int, pence: int) -> None:
    assert charge_pence(charge(tiers=TIERS), D(units)) == pence


def test_tiers_price_the_units_left_after_the_allowance() -> None:
    priced = charge(tiers=TIERS, free_allowance=50)
    assert charge_pence(priced, D(50)) == 0
    assert charge_pence(priced, D(150)) == 1000  # 100 billable units, all in the first tier
    assert charge_pence(priced, D(151)) == 1005


def test_tiers_round_once_not_per_tier() -> None:
    # 1 unit at 0.4p and 1 at 0.4p: per tier that would be 0p + 0p; once, 0.8p is 1p.
    priced = charge(tiers=[{"up_to": 1, "unit_price": "0.004"}, {"unit_price": "0.004"}])
    assert charge_pence(priced, D(2)) == 1


def test_tiers_split_fractional_units() -> None:
    priced = charge(tiers=[{"up_to": 10, "unit_price": "1"}, {"unit_price": "0.5"}])
    assert charge_pence(priced, D("10.5")) == 1025
    assert charge_pence(priced, D("9.5")) == 950


def test_a_single_open_tier_is_a_unit_price() -> None:
    assert charge_pence(charge(tiers=[{"unit_price": "0.25"}]), D(1250)) == 31250


# -- packages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "pence"),
    [("0", 0), ("1", 500), ("100", 500), ("101", 1000), ("250", 1500), ("0.5", 500)],
)
def test_package_pricing_charges_every_package_started(units: str, pence: int) -> None:
    assert charge_pence(charge(package={"size": 100, "price": 5}), D(units)) == pence


def test_packages_count_after_the_allowance() -> None:
    priced = charge(package={"size": 100, "price": 5}, free_allowance=100)
    assert charge_pence(priced, D(100)) == 0
    assert charge_pence(priced, D(101)) == 500


def test_huge_usage_is_priced_exactly() -> None:
    units = D(10**30 + 1)
    assert charge_pence(charge(package={"size": 100, "price": 5}), units) == (10**28 + 1) * 500
    assert charge_pence(charge(unit_price="0.0001"), units) == 10**28  # 10**28 + 0.01p
    (line,) = usage_lines(pricing(charges=[{"meter": "m", "unit_price": "1"}]), {"m": units})
    assert line.description.startswith("m: 1,000,000,000,000,000,000,000,000,000,001 units")
    assert line.amount_pence == (10**30 + 1) * 100


# -- invoice lines ------------------------------------------------------------------------------


def pricing(**fields: Any) -> Pricing:
    return Pricing.model_validate(fields)


def test_usage_lines_start_with_the_flat_fee_then_follow_the_manifest() -> None:
    priced = pricing(
        flat_fee=50,
        charges=[
            {"meter": "reports", "free_allowance": 100, "unit_price": "0.25"},
            {"meter": "bins", "tiers": TIERS},
            {"meter": "permits", "package": {"size": 100, "price": "15"}},
        ],
    )
    lines = usage_lines(
        priced,
        {"reports": D(1250), "bins": D(150), "permits": D(0)},
        {"reports": "report", "bins": "bin"},
    )
    assert [(line.kind, line.meter, line.quantity, line.amount_pence) for line in lines] == [
        ("flat_fee", None, None, 5000),
        ("usage", "reports", D(1250), 28750),
        ("usage", "bins", D(150), 1250),
        ("usage", "permits", D(0), 0),
    ]
    assert lines[0].description == "flat fee: £50.00 a month"
    assert lines[1].description == "reports: 1,250 reports, 100 free, 1,150 at £0.25"
    assert lines[2].description == "bins: 150 bins, 100 at £0.10 + 50 at £0.05"
    assert lines[3].description == "permits: 0 units"


def test_usage_lines_keep_a_charge_that_came_to_nothing() -> None:
    priced = pricing(charges=[{"meter": "reports", "free_allowance": 100, "unit_price": "0.25"}])
    (line,) = usage_lines(priced, {"reports": D(40)}, {"reports": "report"})
    assert line == Line(
        kind="usage",
        description="reports: 40 reports, within the 100 free",
        meter="reports",
        quantity=D(40),
        amount_pence=0,
    )


def test_usage_lines_count_a_missing_meter_as_unused() -> None:
    priced = pricing(charges=[{"meter": "reports", "unit_price": "0.25"}])
    (line,) = usage_lines(priced, {})
    assert (line.quantity, line.amount_pence) == (D(0), 0)


def test_no_flat_fee_line_when_there_is_no_fee() -> None:
    assert usage_lines(pricing(), {}) == []


def test_usage_lines_describe_fractional_prices_and_packages() -> None:
    priced = pricing(
        period="financial_year",
        flat_fee="500.00",
        charges=[
            {"meter": "pages", "unit_price": "0.005"},
            {"meter": "permits", "package": {"size": 100, "price": "15"}},
        ],
    )
    lines = usage_lines(priced, {"pages": D(3), "permits": D(101)}, {"permits": "permit"})
    assert [line.description for line in lines] == [
        "flat fee: £500.00 a financial year",
        "pages: 3 units, 3 at £0.005",
        "permits: 101 permits, 2 packs of 100 at £15.00",
    ]
    assert [line.amount_pence for line in lines] == [50000, 2, 3000]


# -- sharing a running cost ---------------------------------------------------------------------


def check_shares(cost: int, usage: dict[str, Decimal]) -> dict[str, int]:
    shares = share_cost(cost, usage)
    assert sum(shares.values()) == cost
    assert set(shares) == set(usage)
    total = sum((Fraction(u) for u in usage.values()), Fraction(0))
    for key, used in usage.items():
        exact = cost * Fraction(used) / total if total else Fraction(cost, len(usage))
        assert abs(shares[key] - exact) < 1, (key, shares[key], exact)
    return shares


def test_equal_use_gives_the_odd_penny_to_the_first_key() -> None:
    shares = check_shares(100000, {"E08000025": D(5), "E07000223": D(5), "E09000012": D(5)})
    assert shares == {"E07000223": 33334, "E08000025": 33333, "E09000012": 33333}


def test_shares_follow_usage() -> None:
    assert check_shares(100000, {"a": D(120), "b": D(880)}) == {"a": 12000, "b": 88000}
    assert check_shares(100000, {"a": D(1), "b": D(0)}) == {"a": 100000, "b": 0}


@pytest.mark.parametrize(
    ("cost", "usage", "expected"),
    [
        (100001, [1, 1, 1], [33334, 33334, 33333]),
        (7, [1, 1, 1], [3, 2, 2]),
        (1, [1, 1, 1], [1, 0, 0]),
        (2, [1, 1, 1], [1, 1, 0]),
        (0, [1, 2, 3], [0, 0, 0]),
        # 99999 * 3/15 = 19999.8, * 5/15 = 33333, * 7/15 = 46665.2: the odd penny goes to .8
        (99999, [3, 5, 7], [20000, 33333, 46666]),
        (100, [10**12, 10**12, 1], [50, 50, 0]),
        (10**12, [1, 2], [333333333333, 666666666667]),
        (10, ["0.5", "0.25", "0.25"], [5, 3, 2]),
    ],
)
def test_awkward_numbers_still_add_up(cost: int, usage: list[Any], expected: list[int]) -> None:
    keyed = {f"k{index}": D(used) for index, used in enumerate(usage)}
    shares = check_shares(cost, keyed)
    assert [shares[key] for key in sorted(keyed)] == expected


def test_nobody_used_it_so_all_share_equally() -> None:
    assert check_shares(100, {"c": D(0), "a": D(0), "b": D(0)}) == {"a": 34, "b": 33, "c": 33}


def test_no_keys_no_shares() -> None:
    assert share_cost(100000, {}) == {}


def test_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="usage: b used -1"):
        share_cost(100, {"a": D(1), "b": D(-1)})


def test_a_negative_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        share_cost(-100, {"a": D(1)})


@pytest.mark.parametrize(
    ("total", "shares", "expected"),
    [
        (5025, ["9/20", "11/20"], [2261, 2764]),  # 2261.25 and 2763.75: the .75 takes the penny
        (100, ["1/3", "1/3", "1/3"], [34, 33, 33]),  # a tie: the first GSS code takes it
        (-100, ["1/3", "1/3", "1/3"], [-34, -33, -33]),  # a credit, in the same parts
        (1, ["1/2", "1/2"], [1, 0]),
        (0, ["1/4", "3/4"], [0, 0]),
        (999, ["0/1", "1/1"], [0, 999]),
    ],
)
def test_an_invoice_is_divided_by_the_agreements_shares_to_the_penny(
    total: int, shares: list[str], expected: list[int]
) -> None:
    keyed = {f"E0600006{n}": Fraction(share) for n, share in enumerate(shares)}
    parts = divide(total, keyed)
    assert [parts[key] for key in sorted(keyed)] == expected
    assert sum(parts.values()) == total
    with pytest.raises(ValueError, match="not shares of a whole"):
        divide(total, {**keyed, "E06000069": Fraction(1, 10)})


def test_shares_always_add_up_and_stay_within_a_penny() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        keys = rng.randint(1, 12)
        cost = rng.choice([0, 1, 2, rng.randint(0, 1000), rng.randint(0, 10**9)])
        usage = {
            f"E{rng.randint(0, 10**8):08d}-{index}": rng.choice(
                [
                    D(0),
                    D(rng.randint(0, 10)),
                    D(rng.randint(0, 10**12)),
                    D(rng.randint(0, 10**6)) / 1000,
                ]
            )
            for index in range(keys)
        }
        check_shares(cost, usage)
        assert share_cost(cost, usage) == share_cost(cost, dict(reversed(usage.items())))


def test_cost_share_lines() -> None:
    priced = pricing(cost_share={"running_cost": "1000.00", "meter": "comments"})
    lines = cost_share_lines(priced, {"b": D(880), "a": D(120)}, {"comments": "comment"})
    assert lines["a"] == Line(
        kind="cost_share",
        description="comments: share of the running cost of £1,000.00; 120 of 1,000 comments",
        meter="comments",
        quantity=D(120),
        amount_pence=12000,
    )
    assert lines["b"].amount_pence == 88000
    assert cost_share_lines(pricing(), {"a": D(1)}) == {}


# -- the manifest's pricing rules ---------------------------------------------------------------


def manifest(pricing: dict[str, Any] | None, governance: str = "hosted") -> dict[str, Any]:
    return {
        "id": "bin-collections",
        "name": "Bin collections",
        "owner_council": "E09000012",
        "governance": governance,
        "meters": [{"key": "reports"}, {"key": "bins"}],
        "pricing": pricing,
    }


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        ServiceManifest.model_validate(raw)
    return describe_validation_error(caught.value)


def test_a_charge_on_an_unknown_meter_is_refused() -> None:
    raw = manifest({"charges": [{"meter": "x", "unit_price": "1"}]})
    assert problems(raw) == [
        "pricing.charges.0.meter: 'x' is not one of this service's meters (reports, bins)"
    ]


def test_a_meter_has_one_charge() -> None:
    raw = manifest(
        {
            "charges": [
                {"meter": "reports", "unit_price": "1"},
                {"meter": "reports", "package": {"size": 10, "price": "1"}},
            ]
        }
    )
    assert problems(raw) == [
        "pricing.charges.1.meter: 'reports' is already charged by pricing.charges.0; "
        "give each meter one charge"
    ]


def test_only_a_joint_service_shares_its_cost() -> None:
    share = {"cost_share": {"running_cost": "1000", "meter": "reports"}}
    assert problems(manifest(share)) == [
        "pricing.cost_share: only a service with governance 'joint' shares its running cost "
        "(this one is 'hosted')"
    ]
    assert ServiceManifest.model_validate(manifest(share, "joint")).pricing is not None


def test_a_cost_share_meter_must_be_declared() -> None:
    raw = manifest({"cost_share": {"running_cost": "1000", "meter": "x"}}, "joint")
    assert problems(raw) == [
        "pricing.cost_share.meter: 'x' is not one of this service's meters (reports, bins)"
    ]


def test_a_free_service_charges_nothing() -> None:
    charging: list[dict[str, Any]] = [
        {"flat_fee": 1},
        {"charges": [{"meter": "reports", "unit_price": "1"}]},
    ]
    for priced in charging:
        assert problems(manifest(priced, "free"))[0].startswith("pricing: a service with")
    free = ServiceManifest.model_validate(manifest({"flat_fee": 0}, "free"))
    assert free.governance is Governance.FREE


@pytest.mark.parametrize(
    ("fields", "found"),
    [
        ({}, "none of them"),
        ({"unit_price": "1", "tiers": TIERS}, "unit_price and tiers"),
        ({"unit_price": "1", "package": {"size": 1, "price": "1"}}, "unit_price and package"),
    ],
)
def test_a_charge_has_exactly_one_model(fields: dict[str, Any], found: str) -> None:
    raw = manifest({"charges": [{"meter": "reports", **fields}]})
    assert problems(raw) == [
        f"pricing.charges.0: give exactly one of unit_price, tiers or package (found {found})"
    ]


@pytest.mark.parametrize(
    ("tiers", "problem"),
    [
        ([], "tiers: give at least one tier"),
        (
            [
                {"up_to": 100, "unit_price": "1"},
                {"up_to": 100, "unit_price": "1"},
                {"unit_price": "1"},
            ],
            "tiers.1.up_to: 100 is not above the tier before it (100)",
        ),
        (
            [
                {"up_to": 100, "unit_price": "1"},
                {"up_to": 50, "unit_price": "1"},
                {"unit_price": "1"},
            ],
            "tiers.1.up_to: 50 is not above the tier before it (100)",
        ),
        ([{"unit_price": "1"}, {"unit_price": "1"}], "tiers.0.up_to: only the last tier"),
        ([{"up_to": 100, "unit_price": "1"}], "tiers.0.up_to: leave up_to out of the last tier"),
        ([{"up_to": 0, "unit_price": "1"}, {"unit_price": "1"}], "tiers.0.up_to: Input should be"),
    ],
)
def test_tiers_must_ascend_and_end_open(tiers: list[dict[str, Any]], problem: str) -> None:
    raw = manifest({"charges": [{"meter": "reports", "tiers": tiers}]})
    (line,) = problems(raw)
    assert line.startswith(f"pricing.charges.0.{problem}"), line


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-1", "greater than or equal to 0"),
        ("0.00001", "no more than 4 decimal places"),
        ("1000000000", "no more than 8 digits before the decimal point"),
        (True, "not true or false"),
        ("NaN", "finite number"),
        (".inf", "finite number"),
        ("£1", "valid decimal"),
    ],
)
def test_a_price_is_pounds_to_four_places(value: Any, problem: str) -> None:
    parsed = yaml.safe_load(f"unit_price: {value}") if value == ".inf" else {"unit_price": value}
    raw = manifest({"charges": [{"meter": "reports", **parsed}]})
    (line,) = problems(raw)
    assert line.startswith("pricing.charges.0.unit_price: "), line
    assert problem in line


def test_yaml_floats_become_the_decimal_written() -> None:
    text = """
    flat_fee: 0.1
    charges:
      - meter: reports
        free_allowance: 0.1
        unit_price: 0.3
      - meter: bins
        tiers: [{up_to: 10, unit_price: 0.1}, {unit_price: 0.07}]
    """
    priced = Pricing.model_validate(yaml.safe_load(text))
    assert priced.flat_fee == D("0.1")
    assert str(priced.flat_fee) == "0.1"
    assert priced.charges[0].free_allowance == D("0.1")
    assert priced.charges[0].unit_price == D("0.3")
    assert priced.charges[1].tiers is not None
    assert [tier.unit_price for tier in priced.charges[1].tiers] == [D("0.1"), D("0.07")]
    # 3 units at exactly 0.1 and 0.3 are 30p and 90p: with binary floats both would drift.
    assert charge_pence(priced.charges[0], D("3.1")) == 90


def test_pricing_survives_the_json_round_trip_of_events_and_the_catalogue_table() -> None:
    for service in load_catalogue(CATALOGUE):
        assert ServiceManifest.model_validate(service.model_dump(mode="json")) == service
        assert ServiceManifest.model_validate_json(service.model_dump_json()) == service


def test_the_example_catalogue_is_priced() -> None:
    services = {service.id: service for service in load_catalogue(CATALOGUE)}
    assert all(service.pricing is not None for service in services.values())

    bins = services["bin-collections"]
    assert bins.pricing is not None
    assert bins.pricing.period is PeriodKind.MONTH
    units = {meter.key: meter.unit for meter in bins.meters}
    lines = usage_lines(
        bins.pricing, {"missed_bin_reports": D(1250), "garden_waste_bins": D(6000)}, units
    )
    assert [line.amount_pence for line in lines] == [5000, 28750, 40000 + 120000 + 20000]

    comments = services["planning-comments"]
    assert comments.governance is Governance.JOINT
    assert comments.pricing is not None
    assert comments.pricing.cost_share is not None
    assert comments.pricing.cost_share.meter == "comments"

    permits = services["parking-permits"]
    assert permits.pricing is not None
    assert permits.pricing.period is PeriodKind.FINANCIAL_YEAR
    lines = usage_lines(permits.pricing, {"permits_issued": D(250)})
    assert [line.amount_pence for line in lines] == [50000, 4500]
