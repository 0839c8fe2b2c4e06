"""An invoice's lines for one tenancy and period, free of I/O.

Lines come from the plan (:mod:`services.metering.pricing`): the flat fee, one line per charged
meter, the council's share of a jointly-owned service's running cost, and adjustments for
usage of earlier, already-billed periods that arrived after they closed. An adjustment is the
earlier period re-priced with everything now known, less what was billed for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from services.metering.pricing import Line, charge_pence, divide, to_pence, usage_lines
from shared.catalogue import Pricing
from shared.events import CostShare, InvoiceParty

Billed = dict[str, tuple[Decimal, int]]  # meter -> (quantity, amount in pence) billed so far


def billed_usage(pricing: Pricing, lines: list[Line]) -> Billed:
    """What the usage lines of an invoice billed, per charged meter."""
    charged = {charge.meter for charge in pricing.charges}
    return {
        line.meter: (line.quantity or Decimal(0), line.amount_pence)
        for line in lines
        if line.kind == "usage" and line.meter in charged
    }


def adjustments(
    pricing: Pricing, period: str, usage: Mapping[str, Decimal], billed: Billed
) -> tuple[list[Line], Billed]:
    lines: list[Line] = []
    now_billed = dict(billed)
    for charge in pricing.charges:
        quantity = usage.get(charge.meter, Decimal(0))
        before_quantity, before_amount = billed.get(charge.meter, (Decimal(0), 0))
        if quantity == before_quantity:
            continue
        amount = charge_pence(charge, quantity)
        now_billed[charge.meter] = (quantity, amount)
        lines.append(
            Line(
                kind="adjustment",
                description=(
                    f"late usage for {period}: {charge.meter} {_number(before_quantity)}"
                    f" → {_number(quantity)}"
                ),
                meter=charge.meter,
                quantity=quantity - before_quantity,
                amount_pence=amount - before_amount,
            )
        )
    return lines, now_billed


def cost_share_line(pricing: Pricing, share_pence: int, usage: Decimal) -> Line:
    assert pricing.cost_share is not None
    cost = to_pence(pricing.cost_share.running_cost)
    return Line(
        kind="cost_share",
        description=(
            f"share of the running cost (£{Decimal(cost) / 100:,.2f}) by "
            f"{pricing.cost_share.meter}: {_number(usage)}"
        ),
        meter=pricing.cost_share.meter,
        quantity=usage,
        amount_pence=share_pence,
    )


def invoice_lines(
    pricing: Pricing,
    usage: Mapping[str, Decimal],
    units: Mapping[str, str],
    share: Line | None,
    late: list[Line],
    *,
    flat_fee: bool = True,
) -> list[Line]:
    """The flat fee is for taking part: only a tenancy whose meters were open in the period
    pays it; one billed only for usage or late adjustments does not."""
    lines = [
        line for line in usage_lines(pricing, usage, units) if flat_fee or line.kind != "flat_fee"
    ]
    if share is not None:
        lines.append(share)
    return lines + late


def parties(total_pence: int, shares: Sequence[CostShare]) -> list[InvoiceParty]:
    """Who pays which part of an invoice shared under an agreement, in the agreement's order;
    the parts add up to the total exactly."""
    parts = divide(total_pence, {s.council.gss: s.fraction for s in shares})
    return [
        InvoiceParty(council=s.council, share=s.share, amount_pence=parts[s.council.gss])
        for s in shares
    ]


def _number(value: Decimal) -> str:
    return f"{value.normalize():,f}" if value != value.to_integral() else f"{int(value):,}"
