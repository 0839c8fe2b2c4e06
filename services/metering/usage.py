"""Usage events from the shared services: parsed, checked against the tenancy's meters, and
summed per tenancy, meter and calendar month. Free of I/O.

A rejected event is never dropped: it carries a reason code (counted, and the dead letter's
``error_type``) and a message that names the field and the rule.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from pydantic import Json, ValidationError

from services.metering.periods import Period
from shared.catalogue import Aggregation, PeriodKind, describe_validation_error
from shared.cloudevents import BindingError, Headers, binary_attributes, is_binary
from shared.events import UsageData, UsageRecorded

# Usage stamped further ahead than this is a producer's clock or bug, not usage.
MAX_CLOCK_SKEW = timedelta(hours=1)


class Record(Protocol):
    """As much of a consumed Kafka record as parsing needs."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Headers: ...


@dataclass(frozen=True)
class Rejection:
    reason: str  # a short code: malformed, negative_quantity, unknown_tenancy, ...
    message: str
    # Each problem on its own, naming its field, when there are several (``message`` joins them).
    problems: tuple[str, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        return self.problems or (self.message,)


@dataclass(frozen=True)
class Usage:
    event: UsageRecorded
    digest: str  # of the canonical event: a repeated id must carry the same payload
    month: str  # the calendar month, in London, that its time falls in

    @property
    def key(self) -> tuple[str, str]:
        return self.event.source, self.event.id

    def period(self, kind: PeriodKind) -> str:
        if kind is PeriodKind.MONTH:
            return self.month
        return str(Period.containing(kind, self.event.time))


class BinaryUsageRecorded(UsageRecorded):
    """A binary-mode event: the attributes come from headers, the data is the record's value,
    read as JSON by the same rules as a structured event's."""

    data: Json[UsageData]


def parse(value: bytes | None, headers: Headers) -> Usage | Rejection:
    try:
        if is_binary(headers):
            attributes = binary_attributes(headers)
            event: UsageRecorded = BinaryUsageRecorded.model_validate({**attributes, "data": value})
        else:
            event = UsageRecorded.model_validate_json(value or b"")
    except BindingError as error:
        return Rejection("malformed", str(error))
    except ValidationError as error:
        negative = any(
            e["loc"] == ("data", "quantity") and e["type"] == "greater_than_equal"
            for e in error.errors()
        )
        reason = "negative_quantity" if negative else "malformed"
        problems = tuple(describe_validation_error(error))
        return Rejection(reason, "; ".join(problems), problems)
    if event.time.tzinfo is None:
        return Rejection("malformed", "time: must carry a time zone, e.g. 2026-11-22T10:00:00Z")
    if event.time > datetime.now(UTC) + MAX_CLOCK_SKEW:
        return Rejection("future_time", f"time: {event.time.isoformat()} is in the future")
    # Extensions are not part of what is counted: an event sent again with other ones (say a new
    # trace) is the same event. Without any, the digest is what it always was.
    extensions = event.model_extra
    canonical = (
        event.model_dump_json(exclude=set(extensions)) if extensions else event.model_dump_json()
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Usage(event, digest, str(Period.containing(PeriodKind.MONTH, event.time)))


@dataclass(frozen=True)
class TenancyMeters:
    """What metering knows of one tenancy when usage for it arrives."""

    service_id: str
    period_kind: PeriodKind
    closed: bool
    meters: dict[str, Aggregation]


def check(usage: Usage, tenancy: TenancyMeters | None) -> Rejection | None:
    event = usage.event
    if tenancy is None:
        return Rejection("unknown_tenancy", f"subject: no tenancy {event.subject} is metered")
    if tenancy.closed:
        return Rejection(
            "tenancy_closed",
            f"subject: tenancy {event.subject} has left {tenancy.service_id}; its meters closed",
        )
    aggregation = tenancy.meters.get(event.data.meter)
    if aggregation is None:
        known = ", ".join(sorted(tenancy.meters)) or "none"
        return Rejection(
            "unknown_meter",
            f"data.meter: {event.data.meter!r} is not a meter of {tenancy.service_id} "
            f"(its meters: {known})",
        )
    if (
        aggregation is Aggregation.COUNT
        and event.data.quantity != event.data.quantity.to_integral()
    ):
        return Rejection(
            "not_a_whole_number",
            f"data.quantity: a count meter counts whole units, not {event.data.quantity}",
        )
    if aggregation is Aggregation.UNIQUE_COUNT and event.data.value is None:
        return Rejection(
            "missing_value", "data.value: a unique_count meter needs the value to count once"
        )
    return None


@dataclass
class Delta:
    events: int = 0
    total: Decimal = Decimal(0)
    peak: Decimal | None = None
    values: set[str] = field(default_factory=set)


def aggregate(batch: list[Usage]) -> dict[tuple[str, str, str], Delta]:
    """What a batch adds, per (tenancy, meter, month)."""
    deltas: dict[tuple[str, str, str], Delta] = defaultdict(Delta)
    for usage in batch:
        data = usage.event.data
        delta = deltas[(str(usage.event.subject), data.meter, usage.month)]
        delta.events += 1
        delta.total += data.quantity
        delta.peak = data.quantity if delta.peak is None else max(delta.peak, data.quantity)
        if data.value is not None:
            delta.values.add(data.value)
    return dict(deltas)


def value_of(
    aggregation: Aggregation, total: Decimal, peak: Decimal | None, uniques: int
) -> Decimal:
    """A meter's value for a period from its stored totals."""
    if aggregation is Aggregation.MAX:
        return peak if peak is not None else Decimal(0)
    if aggregation is Aggregation.UNIQUE_COUNT:
        return Decimal(uniques)
    return total
