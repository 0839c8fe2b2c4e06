"""What a batch's new usage adds to the ledger, summed as it is counted. Free of I/O.

The ledger's totals, unique values and late marks are written once a batch, from this, rather
than once a statement: a batch's few hundred (tenancy, meter, month)s are then each written
once, in one statement, in one order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

from services.metering.usage import Usage

# Wide enough for any sum of a batch's quantities (at most 20 digits each, 6 after the point),
# and trapping rather than rounding: a total is exact or not written at all.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, Overflow])


@dataclass(slots=True)
class Sum:
    events: int
    total: Decimal
    peak: Decimal


class Tally:
    """The new events of a batch: per (tenancy, meter, month) how many, their sum and their
    peak, and the distinct values a unique_count meter counts."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str, str], Sum] = {}
        self.values: set[tuple[str, str, str, str]] = set()

    def add(self, usage: Usage) -> None:
        where = (usage.subject, usage.meter, usage.month)
        quantity = usage.quantity
        found = self.sums.get(where)
        if found is None:
            self.sums[where] = Sum(1, quantity, quantity)
        else:
            found.events += 1
            found.total = _EXACT.add(found.total, quantity)
            if quantity > found.peak:
                found.peak = quantity
        if usage.value is not None:
            self.values.add((*where, usage.value))

    def months(self) -> set[tuple[str, str]]:
        """The (tenancy, month)s the new events fall in."""
        return {(subject, month) for subject, _, month in self.sums}
