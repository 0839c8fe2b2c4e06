"""Usage events from the shared services: parsed and checked against the tenancy's meters
(the ledger sums them per tenancy, meter and calendar month). Free of I/O.

A rejected event is never dropped: it carries a reason code (counted, and the dead letter's
``error_type``) and a message that names the field and the rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal, Protocol

import msgspec
from pydantic import Json, ValidationError

from services.metering.periods import MAX_YEAR, period_of
from shared.catalogue import Aggregation, PeriodKind, describe_validation_error
from shared.cloudevents import BindingError, Headers, binary_attributes, is_binary
from shared.events import UsageData, UsageRecorded

# Usage stamped further ahead than this is a producer's clock or bug, not usage.
MAX_CLOCK_SKEW = timedelta(hours=1)
# The plain reader leaves older times to parse (London kept its own mean time before 1900).
MIN_PLAIN_YEAR = 1900


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


class Usage(msgspec.Struct, gc=False):
    """A usage event that passed every check of its own: what counting needs of it.

    ``digest`` is of the event in pydantic's canonical JSON, extensions left out: a repeated id
    must carry the same payload. The two readers below agree on every field and on it.

    A struct, made for every event read: a plain class with slots took a third of the plain
    reader's time to make one."""

    source: str
    id: str
    subject: str  # the tenancy id, canonical; a successor's once it counts for one
    time: datetime
    meter: str
    quantity: Decimal
    value: str | None
    digest: str
    month: str  # the calendar month, in London, that its time falls in
    _event: UsageRecorded | None = None
    _json: bytes = b""

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.id)

    @property
    def event(self) -> UsageRecorded:
        """The event as its pydantic model; read again from its JSON if the fast reader took
        it, which happens only where a caller asks (the HTTP API, for a few fields)."""
        if self._event is None:
            self._event = UsageRecorded.model_validate_json(self._json)
        return self._event


class BinaryUsageRecorded(UsageRecorded):
    """A binary-mode event: the attributes come from headers, the data is the record's value,
    read as JSON by the same rules as a structured event's."""

    data: Json[UsageData]


def parse(value: bytes | None, headers: Headers) -> Usage | Rejection:
    """One event read by its pydantic model: every rule, and the reason and message of the
    first one it breaks."""
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
    data = event.data
    return Usage(
        event.source,
        event.id,
        str(event.subject),
        event.time,
        data.meter,
        data.quantity,
        data.value,
        hashlib.sha256(canonical.encode()).hexdigest(),
        period_of(PeriodKind.MONTH, event.time),
        event,
    )


def parse_batch(records: Sequence[Record]) -> list[Usage | Rejection]:
    """Each record read as :func:`parse` reads it, and with the same outcome. A structured
    event in the plain form that services send is read by a stricter, much cheaper reader
    (:func:`_read_plain`); anything else it leaves to :func:`parse`, so every refusal keeps
    its reason and its message."""
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    read: list[Usage | Rejection] = []
    for record in records:
        value = record.value
        plain = None
        if value is not None and not is_binary(record.headers):
            plain = _read_plain(value, latest)
        read.append(plain if plain is not None else parse(value, record.headers))
    return read


# -- the plain reader ---------------------------------------------------------------------------
#
# It accepts only what the pydantic model accepts, and reads it alike: text without escapes
# (no backslash anywhere, so no NUL, quote or control character can hide in a string), the
# fields of UsageRecorded and no extensions, a canonical lower-case tenancy id, an RFC 3339 time
# with an offset, a quantity written as a plain non-negative decimal or a whole number. It
# gives up (returns None) on anything else, and :func:`parse` decides.

_TEXT = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
# At most 14 + 6 digits: inside max_digits=20 and decimal_places=6, whichever way they count.
_PLAIN_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,13})(\.[0-9]{1,6})?")
_TYPE = "uk.gov.tenancy.usage.recorded.v1"


class _PlainData(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    meter: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    quantity: str | Annotated[int, msgspec.Meta(ge=0, lt=10**14)] = 1
    value: _TEXT | None = None


class _PlainEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    specversion: Literal["1.0"]
    id: _TEXT
    source: _TEXT
    type: Literal["uk.gov.tenancy.usage.recorded.v1"]
    subject: str
    time: str
    data: _PlainData
    datacontenttype: Literal["application/json"] | None = None


_PLAIN = msgspec.json.Decoder(_PlainEvent)


def _read_plain(value: bytes, latest: datetime) -> Usage | None:
    if b"\\" in value:
        return None
    try:
        event = _PLAIN.decode(value)
    except msgspec.DecodeError:  # its ValidationError too
        return None
    data = event.data
    instant = _instant(event.time)
    quantity = _quantity(data.quantity)
    if instant is None or quantity is None or not _is_canonical_uuid(event.subject):
        return None
    time, time_json, month = instant
    if time > latest:
        return None  # a future time is refused by parse, with its message
    quantity_json, amount = quantity
    content_type = "null" if event.datacontenttype is None else '"application/json"'
    value_json = "null" if data.value is None else f'"{data.value}"'
    # pydantic's model_dump_json of the same event, byte for byte (tests compare the two).
    canonical = (
        f'{{"specversion":"1.0","id":"{event.id}","source":"{event.source}","type":"{_TYPE}",'
        f'"subject":"{event.subject}","time":"{time_json}","datacontenttype":{content_type},'
        f'"data":{{"meter":"{data.meter}","quantity":"{quantity_json}","value":{value_json}}}}}'
    )
    return Usage(
        event.source,
        event.id,
        event.subject,
        time,
        data.meter,
        amount,
        data.value,
        hashlib.sha256(canonical.encode()).hexdigest(),
        month,
        None,
        value,
    )


# Events come in bursts that share their tenancies, times and quantities, so each of these is
# worked out once for many events.


@lru_cache(maxsize=4096)
def _is_canonical_uuid(text: str) -> bool:
    return _CANONICAL_UUID.fullmatch(text) is not None


@lru_cache(maxsize=4096)
def _instant(text: str) -> tuple[datetime, str, str] | None:
    """An RFC 3339 time: the instant, as pydantic writes it in JSON, and its month."""
    if _RFC3339.fullmatch(text) is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not MIN_PLAIN_YEAR <= instant.year < MAX_YEAR:
        return None  # parse decides what the period of such a time is
    written = instant.isoformat()
    if written.endswith("+00:00"):
        written = written[:-6] + "Z"
    return instant, written, period_of(PeriodKind.MONTH, instant)


@lru_cache(maxsize=4096)
def _quantity(given: str | int) -> tuple[str, Decimal] | None:
    """A plain quantity as pydantic writes it in JSON, and its amount."""
    if isinstance(given, int):
        return str(given), Decimal(given)
    if _PLAIN_DECIMAL.fullmatch(given) is None:
        return None
    return given, Decimal(given)


@dataclass(frozen=True)
class TenancyMeters:
    """What metering knows of one tenancy when usage for it arrives."""

    service_id: str
    period_kind: PeriodKind
    closed: bool  # it left its service: nothing more is counted for it
    meters: dict[str, Aggregation]
    # A reorganised predecessor: the instant its meters close and the successor's tenancy that
    # its usage from then on counts for. Its meters stay open for usage timed before that.
    closes_at: datetime | None = None
    successor: str | None = None


def counts_for(usage: Usage, tenancy: TenancyMeters) -> str | None:
    """The successor's tenancy when ``usage``, reported under a reorganised predecessor's id, is
    timed at or after the predecessor's meters close; None when it counts where it was sent.

    A service may go on reporting under the old id after vesting day: the data and the council
    are the successor's by then, so is the usage. Usage timed before the close is the
    predecessor's, even when it arrives after the plan was applied (which may be days before
    vesting)."""
    if tenancy.successor is None or tenancy.closes_at is None:
        return None
    return tenancy.successor if usage.time >= tenancy.closes_at else None


def check(usage: Usage, tenancy: TenancyMeters | None) -> Rejection | None:
    if tenancy is None:
        return Rejection("unknown_tenancy", f"subject: no tenancy {usage.subject} is metered")
    if tenancy.closed:
        return Rejection(
            "tenancy_closed",
            f"subject: tenancy {usage.subject} has left {tenancy.service_id}; its meters closed",
        )
    aggregation = tenancy.meters.get(usage.meter)
    if aggregation is None:
        known = ", ".join(sorted(tenancy.meters)) or "none"
        return Rejection(
            "unknown_meter",
            f"data.meter: {usage.meter!r} is not a meter of {tenancy.service_id} "
            f"(its meters: {known})",
        )
    if aggregation is Aggregation.COUNT and usage.quantity != usage.quantity.to_integral():
        return Rejection(
            "not_a_whole_number",
            f"data.quantity: a count meter counts whole units, not {usage.quantity}",
        )
    if aggregation is Aggregation.UNIQUE_COUNT and usage.value is None:
        return Rejection(
            "missing_value", "data.value: a unique_count meter needs the value to count once"
        )
    return None


def value_of(
    aggregation: Aggregation, total: Decimal, peak: Decimal | None, uniques: int
) -> Decimal:
    """A meter's value for a period from its stored totals."""
    if aggregation is Aggregation.MAX:
        return peak if peak is not None else Decimal(0)
    if aggregation is Aggregation.UNIQUE_COUNT:
        return Decimal(uniques)
    return total
