"""Words for people: what governance, isolation, pricing and states mean, and times."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from shared.catalogue import Governance, IsolationTier, Pricing

LONDON = ZoneInfo("Europe/London")

GOVERNANCE = {
    Governance.HOSTED.value: "Hosted: one council runs it and charges the councils that join",
    Governance.JOINT.value: "Joint: owned together, with running costs shared by use",
    Governance.FREE.value: "Free: provided at no charge",
}
GOVERNANCE_SHORT = {
    Governance.HOSTED.value: "Hosted",
    Governance.JOINT.value: "Joint (costs shared)",
    Governance.FREE.value: "Free",
}
ISOLATION = {
    IsolationTier.POOLED.value: (
        "Pooled: your council's rows sit in shared tables, kept apart by row-level security"
    ),
    IsolationTier.SCHEMA.value: (
        "Schema: your council gets its own schema in the service's database"
    ),
    IsolationTier.DATABASE.value: "Database: your council gets a database of its own",
}
# The colour of each state's tag, and what it means to someone waiting.
STATES = {
    "requested": ("grey", "Requested"),
    "registered": ("blue", "Setting up"),
    "active": ("green", "Active"),
    "failed": ("red", "Failed"),
    "offboarding": ("orange", "Leaving"),
    "offboarded": ("grey", "Left"),
    "reorganised": ("purple", "Reorganised"),
}
STEPS = {
    "requested": "Request received",
    "registered": "Council and service checked",
    "isolation": "Data space made",
    "branding": "Brand applied",
    "metering": "Meters opened",
    "active": "Ready to use",
    "failed": "Stopped with a problem",
    "offboarding": "Leaving started",
    "offboarded": "Left the service",
    "reorganised": "Moved to the successor council",
}
FINISHED = frozenset({"active", "failed", "offboarded", "reorganised"})


def state_tag(state: str) -> dict[str, str]:
    colour, label = STATES.get(state, ("grey", state.capitalize()))
    return {"text": label, "classes": f"govuk-tag--{colour}"}


def when(value: str | datetime | None) -> str:
    """A time as people in the UK read it: 3:04:05pm on 22 November 2026."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = moment.astimezone(LONDON)
    clock = local.strftime("%I:%M:%S%p").lstrip("0").lower()
    return f"{clock} on {local.day} {local.strftime('%B %Y')}"


def day(value: str | date | None) -> str:
    """A day as people in the UK read it: 1 April 2027."""
    if value is None:
        return ""
    found = date.fromisoformat(value) if isinstance(value, str) else value
    return f"{found.day} {found:%B %Y}"


def pounds(value: Decimal | str | int) -> str:
    amount = Decimal(str(value))
    if amount == amount.to_integral_value():
        return f"£{amount:,.0f}"
    if amount * 100 == (amount * 100).to_integral_value():
        return f"£{amount:,.2f}"
    return f"£{amount.normalize():,f}"


def pricing_lines(pricing: dict[str, Any] | None, units: dict[str, str]) -> list[str]:
    """A service's plan, a sentence a line; ``units`` names each meter's unit."""
    if pricing is None:
        return ["Councils are not charged for this service."]
    plan = Pricing.model_validate(pricing)
    period = "month" if plan.period.value == "month" else "financial year (April to March)"
    lines = []
    if plan.flat_fee:
        lines.append(f"{pounds(plan.flat_fee)} a {period} to take part.")
    for charge in plan.charges:
        unit = units.get(charge.meter, "unit")
        free = f"the first {charge.free_allowance:,} free, then " if charge.free_allowance else ""
        if charge.unit_price is not None:
            lines.append(f"{charge.meter}: {free}{pounds(charge.unit_price)} a {unit}.")
        elif charge.package is not None:
            lines.append(
                f"{charge.meter}: {free}{pounds(charge.package.price)} for each pack of "
                f"{charge.package.size:,} {unit}s started."
            )
        elif charge.tiers:
            bands, below = [], 0
            for tier in charge.tiers:
                span = f"{below + 1:,} to {tier.up_to:,}" if tier.up_to else f"above {below:,}"
                bands.append(f"{span} at {pounds(tier.unit_price)}")
                below = tier.up_to or below
            lines.append(f"{charge.meter}: {free}each {unit} priced in bands, " + "; ".join(bands))
    if plan.cost_share is not None:
        lines.append(
            f"A running cost of {pounds(plan.cost_share.running_cost)} a {period}, shared among "
            f"the councils using it in proportion to {plan.cost_share.meter}."
        )
    return lines or ["Councils are not charged for this service."]
