"""What a tenancy owes for a period, from its service's pricing and its usage. Free of I/O.

Money is integer pence or ``Decimal`` pounds, never float. The rounding rule: each invoice line
is worked out exactly and then rounded once to the nearest penny, halves up (away from zero, so
0.5p is 1p and -0.5p is -1p); an invoice's total is the sum of its lines, so the lines always
add up to the total. A running cost shared among councils is split in whole pence that add up
to the cost exactly (largest remainder; see :func:`share_cost`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from fractions import Fraction
from typing import Literal

from shared.catalogue import Charge, PeriodKind, Pricing

PENNY = Decimal("0.01")
ROUNDING = ROUND_HALF_UP

# Every sum and product of money and usage goes through this context, not the default one,
# whose 28 digits would silently round a large reading. Prices have at most 12 digits, so
# products fit many times over; trapping Inexact makes any digit it would drop an error.
_EXACT = Context(prec=1000, rounding=ROUNDING, traps=[Inexact, InvalidOperation])

LineKind = Literal["flat_fee", "usage", "cost_share", "adjustment"]

_PER_PERIOD = {PeriodKind.MONTH: "a month", PeriodKind.FINANCIAL_YEAR: "a financial year"}


@dataclass(frozen=True)
class Line:
    kind: LineKind
    description: str  # for a finance officer reading the invoice
    meter: str | None
    quantity: Decimal | None  # the period's usage of the meter, before any free allowance
    amount_pence: int


def to_pence(pounds: Decimal) -> int:
    """Pounds to the nearest penny, halves up: 0.125 is 13p."""
    if not pounds.is_finite():
        raise ValueError(f"amount: {pounds} is not a sum of money")
    # Rounding is the point here, so this context does not trap Inexact.
    context = Context(prec=1000, rounding=ROUNDING, traps=[InvalidOperation])
    return int(pounds.quantize(PENNY, context=context).scaleb(2, context=context))


def format_pounds(pence: int) -> str:
    """Pence as pounds for a CSV: 100000 is "1000.00", -350 is "-3.50"."""
    sign = "-" if pence < 0 else ""
    pounds, remainder = divmod(abs(pence), 100)
    return f"{sign}{pounds}.{remainder:02d}"


def charge_pence(charge: Charge, quantity: Decimal) -> int:
    """What one charge costs for a period in which its meter read ``quantity``."""
    return to_pence(_work_out(charge, quantity).pounds)


def usage_lines(
    pricing: Pricing, usage: Mapping[str, Decimal], meters: Mapping[str, str] | None = None
) -> list[Line]:
    """One tenancy's lines for a period: its flat fee, if any, then one line per charge.

    A charge whose usage fell within its free allowance still gets a line (of 0p), so finance
    can see the allowance was used. ``usage`` missing a meter counts it as 0; ``meters`` maps a
    meter key to its unit (e.g. "report") for the descriptions.
    """
    lines = []
    if pricing.flat_fee > 0:
        lines.append(
            Line(
                kind="flat_fee",
                description=f"flat fee: {_price(pricing.flat_fee)} {_PER_PERIOD[pricing.period]}",
                meter=None,
                quantity=None,
                amount_pence=to_pence(pricing.flat_fee),
            )
        )
    for charge in pricing.charges:
        quantity = usage.get(charge.meter, Decimal(0))
        unit = (meters or {}).get(charge.meter, "unit")
        worked = _work_out(charge, quantity)
        lines.append(
            Line(
                kind="usage",
                description=_describe(charge, quantity, unit, worked),
                meter=charge.meter,
                quantity=quantity,
                amount_pence=to_pence(worked.pounds),
            )
        )
    return lines


def share_cost(cost_pence: int, usage: Mapping[str, Decimal]) -> dict[str, int]:
    """Split ``cost_pence`` among the keys pro rata to their usage, in whole pence that add up
    to ``cost_pence`` exactly.

    The largest remainder (Hamilton) rule: each key first gets the whole pence of its exact
    share; the pence left over go one each to the keys whose exact shares lost most to that
    rounding down, ties to the key first in ascending order, so the split is the same on every
    run. Each share is then within a penny of its exact share. When nobody used the service
    the cost is split equally by the same rule. No keys, no split: recovering the cost then is
    the caller's decision.
    """
    if cost_pence < 0:
        raise ValueError(f"cost: {cost_pence}p is negative; only a cost is shared")
    weights: dict[str, Fraction] = {}
    for key, used in usage.items():
        if not used.is_finite() or used < 0:
            raise ValueError(f"usage: {key} used {used}; a share needs usage of 0 or more")
        weights[key] = Fraction(used)
    total = sum(weights.values(), Fraction(0))
    if total == 0:
        weights = dict.fromkeys(weights, Fraction(1))
        total = Fraction(len(weights))
    if not weights:
        return {}
    exact = {key: cost_pence * weight / total for key, weight in weights.items()}
    shares = {key: math.floor(value) for key, value in exact.items()}
    left_over = cost_pence - sum(shares.values())
    by_remainder = sorted(shares, key=lambda key: (shares[key] - exact[key], key))
    for key in by_remainder[:left_over]:
        shares[key] += 1
    return shares


def divide(total_pence: int, shares: Mapping[str, Fraction]) -> dict[str, int]:
    """Divide an invoice's total among the parties to an agreement by their exact shares, in
    whole pence that add up to ``total_pence`` exactly, by the largest remainder rule of
    :func:`share_cost` (ties to the key first in ascending order, a GSS code).

    A total below zero (an invoice of credits) is divided as its size and each part negated,
    so a credit goes back in the same parts as a charge would be made."""
    if not shares:
        return {}
    if any(share < 0 for share in shares.values()) or sum(shares.values()) != 1:
        raise ValueError(f"shares: {dict(shares)} are not shares of a whole")
    size = abs(total_pence)
    exact = {key: size * share for key, share in shares.items()}
    parts = {key: math.floor(value) for key, value in exact.items()}
    left_over = size - sum(parts.values())
    by_remainder = sorted(parts, key=lambda key: (parts[key] - exact[key], key))
    for key in by_remainder[:left_over]:
        parts[key] += 1
    sign = -1 if total_pence < 0 else 1
    return {key: sign * part for key, part in parts.items()}


def cost_share_lines(
    pricing: Pricing, usage: Mapping[str, Decimal], meters: Mapping[str, str] | None = None
) -> dict[str, Line]:
    """Each key's line for its share of the service's running cost, by :func:`share_cost`.

    ``usage`` holds every key sharing the cost (tenancies, or councils), each with its usage of
    the cost-share meter, 0 included. Empty when the pricing shares no cost.
    """
    share = pricing.cost_share
    if share is None:
        return {}
    cost = to_pence(share.running_cost)
    shares = share_cost(cost, usage)
    total = functools.reduce(_EXACT.add, usage.values(), Decimal(0))
    unit = (meters or {}).get(share.meter, "unit")
    lines = {}
    for key, pence in shares.items():
        used = usage[key]
        basis = (
            f"{_number(used)} of {_units(total, unit)}"
            if total > 0
            else f"shared equally by {len(shares)}, as none were used"
        )
        lines[key] = Line(
            kind="cost_share",
            description=(
                f"{share.meter}: share of the running cost of {_price(share.running_cost)}; {basis}"
            ),
            meter=share.meter,
            quantity=used,
            amount_pence=pence,
        )
    return lines


@dataclass(frozen=True)
class _Worked:
    billable: Decimal
    pounds: Decimal  # exact: rounded to the penny only when it becomes a line
    steps: list[str]  # how the billable units were priced, for the description


def _work_out(charge: Charge, quantity: Decimal) -> _Worked:
    if not quantity.is_finite():
        raise ValueError(f"usage: {charge.meter} read {quantity}, which is not a quantity")
    billable = max(Decimal(0), _EXACT.subtract(quantity, charge.free_allowance))
    if charge.unit_price is not None:
        pounds = _EXACT.multiply(billable, charge.unit_price)
        steps = [f"{_number(billable)} at {_price(charge.unit_price)}"] if billable else []
        return _Worked(billable, pounds, steps)
    if charge.tiers is not None:
        pounds = Decimal(0)
        steps = []
        priced = Decimal(0)  # units below the current tier
        for tier in charge.tiers:
            top = billable if tier.up_to is None else min(billable, Decimal(tier.up_to))
            units = _EXACT.subtract(top, priced)
            if units <= 0:
                break
            pounds = _EXACT.add(pounds, _EXACT.multiply(units, tier.unit_price))
            steps.append(f"{_number(units)} at {_price(tier.unit_price)}")
            priced = top
        return _Worked(billable, pounds, [" + ".join(steps)] if steps else [])
    if charge.package is not None:
        size = charge.package.size
        whole, part = _EXACT.divmod(billable, Decimal(size))
        packages = _EXACT.add(whole, 1) if part else whole
        pounds = _EXACT.multiply(packages, charge.package.price)
        noun = "pack" if packages == 1 else "packs"
        steps = (
            [f"{_number(packages)} {noun} of {size:,} at {_price(charge.package.price)}"]
            if billable
            else []
        )
        return _Worked(billable, pounds, steps)
    raise AssertionError("a Charge has exactly one pricing model")  # the manifest checks this


def _describe(charge: Charge, quantity: Decimal, unit: str, worked: _Worked) -> str:
    parts = [_units(quantity, unit)]
    allowance = _number(charge.free_allowance)
    if charge.free_allowance > 0:
        parts.append(f"{allowance} free" if worked.billable else f"within the {allowance} free")
    return f"{charge.meter}: " + ", ".join(parts + worked.steps)


def _number(quantity: Decimal) -> str:
    return f"{quantity.normalize(_EXACT):,f}"


def _units(quantity: Decimal, unit: str) -> str:
    plural = quantity != 1 and unit.isalpha() and not unit.endswith("s")
    return f"{_number(quantity)} {unit}{'s' if plural else ''}"


def _price(pounds: Decimal) -> str:
    if _EXACT.remainder(pounds, PENNY) == 0:
        return f"£{pounds:,.2f}"
    return f"£{pounds.normalize(_EXACT):,f}"
