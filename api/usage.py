"""Usage reported over HTTP (``POST /usage``), for services that do not speak Kafka.

The events are exactly those of the ``usage.recorded`` topic, checked by the metering worker's
own rules (:mod:`services.metering.usage`) as far as they can be checked at once: the format,
the time, the tenancy and its meters, with the same reason codes. A request is taken whole or
not at all. What is taken is recorded in PostgreSQL before the answer, in one transaction: each
(source, id) with the digest the metering worker computes, so a repeat is told from a conflict
as metering tells them, and the events unchanged in metering's outbox, published from there
onto ``usage.recorded`` (or by metering's relay if the broker is away). Metering still dedupes
what it counts, so an event sent both over HTTP and on the topic counts once.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, Field

from api.problems import Problem
from services.metering.repository import Meters
from services.metering.service import conflicting
from services.metering.usage import Rejection, Usage, check, parse
from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.db import Connection
from shared.outbox import OutboxRow, Transaction
from shared.topics import Topic
from shared.tracing import current_headers

MAX_EVENTS = 1000
# About 4 KiB an event, ten times a usual one: a body bigger than that is refused unread.
MAX_BODY_BYTES = 4 * 1024 * 1024
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SINGLE_CONTENT_TYPES = (STRUCTURED_CONTENT_TYPE, "application/json")
# Outbox row ids of received events, derived from (source, id).
ROWS = uuid.UUID("8d7f4f0e-5b0e-4d5c-9a55-7c1f3f0c2b61")
# Errors listed in a problem's detail; ``errors`` and ``rejected`` have every one.
DETAIL_ERRORS = 10


class EventStatus(BaseModel):
    id: str = Field(examples=["report-81234"])
    status: Literal["accepted", "duplicate"] = Field(
        description="accepted: recorded now; duplicate: this event was received before"
    )


class UsageAccepted(BaseModel):
    """What was recorded: every event of the request, in its order."""

    accepted: int = Field(description="events recorded by this request", examples=[1])
    duplicates: int = Field(description="events received before, not recorded again")
    events: list[EventStatus]


@dataclass(frozen=True)
class Received:
    index: int
    payload: dict[str, Any]  # the event as sent: published unchanged
    usage: Usage


@dataclass(frozen=True)
class Refusal:
    index: int
    event_id: str | None
    rejection: Rejection

    def errors(self, batch: bool) -> list[str]:
        """Each problem naming its field, in a batch after the event's index."""
        if not batch:
            return list(self.rejection.lines)
        if self.rejection is NOT_AN_OBJECT:
            return [f"[{self.index}]: {NOT_AN_OBJECT.message}"]
        return [f"[{self.index}].{line}" for line in self.rejection.lines]


NOT_AN_OBJECT = Rejection("malformed", "must be a JSON object, a CloudEvent")


def is_batch(content_type: str | None) -> bool:
    """Whether the body is a batch (a JSON array of events) or one event; ``415`` for any
    other media type."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type == BATCH_CONTENT_TYPE:
        return True
    if media_type in SINGLE_CONTENT_TYPES:
        return False
    single, plain = SINGLE_CONTENT_TYPES
    raise Problem(
        415,
        f"content-type: send one event as {single} (or {plain}), a batch as {BATCH_CONTENT_TYPE}",
    )


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")


def decode(body: bytes, batch: bool) -> list[Any]:
    """The body's events, not yet checked; ``422`` if the body itself is not what it must be."""
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError too
        refuse_body(f"body: not JSON ({str(error)[:200]})")
    if not batch:
        if not isinstance(value, dict):
            refuse_body(
                f"body: must be a JSON object, one CloudEvent ({BATCH_CONTENT_TYPE} for more)"
            )
        return [value]
    if not isinstance(value, list):
        refuse_body("body: a batch is a JSON array of CloudEvents")
    if not value:
        refuse_body("body: a batch holds at least one event")
    if len(value) > MAX_EVENTS:
        refuse_body(f"body: a batch holds at most {MAX_EVENTS} events, not {len(value)}")
    return value


def refuse_body(problem: str) -> NoReturn:
    rejected = [_rejected(None, None, "malformed", [problem])]
    raise Problem(422, problem, [problem], extensions={"rejected": rejected})


def parse_events(elements: Sequence[Any]) -> tuple[list[Received], list[Refusal]]:
    """Each event read by the metering worker's own parser, from the JSON it would read."""
    received: list[Received] = []
    refused: list[Refusal] = []
    for index, element in enumerate(elements):
        if not isinstance(element, dict):
            refused.append(Refusal(index, None, NOT_AN_OBJECT))
            continue
        result = parse(json.dumps(element).encode(), ())
        if isinstance(result, Rejection):
            given = element.get("id")
            refused.append(Refusal(index, given if isinstance(given, str) else None, result))
        else:
            received.append(Received(index, element, result))
    return received, refused


def wrong_source(received: Sequence[Received], service: str) -> list[Refusal]:
    return [
        Refusal(
            item.index,
            item.usage.event.id,
            Rejection(
                "wrong_source",
                f"source: {item.usage.event.source!r} is not this token's service; send"
                f" usage of {service} only, with source {service!r}",
            ),
        )
        for item in received
        if item.usage.event.source != service
    ]


async def check_tenancies(
    conn: Connection, service: str, received: Sequence[Received]
) -> list[Refusal]:
    """The metering worker's checks of each event against its tenancy's meters. A tenancy of
    another service is unknown here, as it is to the service."""
    subjects = sorted({str(item.usage.event.subject) for item in received})
    tenancies = await Meters(conn).of_tenancies(subjects)
    refused = []
    for item in received:
        tenancy = tenancies.get(str(item.usage.event.subject))
        if tenancy is not None and tenancy.service_id != service:
            tenancy = None
        rejection = check(item.usage, tenancy)
        if rejection is not None:
            refused.append(Refusal(item.index, item.usage.event.id, rejection))
    return refused


def repeats_within(
    received: Sequence[Received],
) -> tuple[list[Received], set[int], list[Refusal]]:
    """The first of each (source, id) in the request; the indexes of its repeats with the same
    content; and the repeats with other content, refused."""
    first: dict[tuple[str, str], Received] = {}
    repeats: set[int] = set()
    refused: list[Refusal] = []
    for item in received:
        earlier = first.setdefault(item.usage.key, item)
        if earlier is item:
            continue
        if earlier.usage.digest == item.usage.digest:
            repeats.add(item.index)
        else:
            refused.append(Refusal(item.index, item.usage.event.id, conflicting(item.usage)))
    return list(first.values()), repeats, refused


@dataclass
class Recorded:
    accepted: list[Received]
    duplicates: set[int]  # indexes of events received (or counted) before
    conflicts: list[Refusal]


async def record(conn: Connection, items: Sequence[Received]) -> Recorded:
    """Record each (source, id) as received, in one statement, and tell new events from
    repeats of earlier ones, received here or counted from the topic. The caller rolls back
    if there is any conflict."""
    rows = await conn.fetch(
        "WITH sent AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
        "   AS s(source, id, digest)),"
        " added AS (INSERT INTO api.usage_received (source, id, digest)"
        "   SELECT source, id, digest FROM sent ON CONFLICT DO NOTHING RETURNING source, id)"
        # The joins read the table as it was before this statement: the earlier digest.
        " SELECT s.source, s.id, a.id IS NOT NULL AS added, r.digest AS received,"
        "   e.payload_sha256 AS counted FROM sent s"
        " LEFT JOIN added a ON a.source = s.source AND a.id = s.id"
        " LEFT JOIN api.usage_received r ON r.source = s.source AND r.id = s.id"
        " LEFT JOIN metering.usage_events e ON e.source = s.source AND e.id = s.id",
        [item.usage.event.source for item in items],
        [item.usage.event.id for item in items],
        [item.usage.digest for item in items],
    )
    found = {(row["source"], row["id"]): row for row in rows}
    late = [
        item.usage.key
        for item in items
        if not found[item.usage.key]["added"] and found[item.usage.key]["received"] is None
    ]
    earlier = await _received_meanwhile(conn, late) if late else {}
    outcome = Recorded([], set(), [])
    for item in items:
        row = found[item.usage.key]
        before = None if row["added"] else row["received"] or earlier.get(item.usage.key)
        before = before or row["counted"]
        if before is None:
            outcome.accepted.append(item)
        elif before == item.usage.digest:
            outcome.duplicates.add(item.index)
        else:
            refusal = Refusal(item.index, item.usage.event.id, conflicting(item.usage))
            outcome.conflicts.append(refusal)
    return outcome


async def _received_meanwhile(
    conn: Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Digests that a concurrent request committed while this one's insert waited for it."""
    rows = await conn.fetch(
        "SELECT r.source, r.id, r.digest FROM api.usage_received r"
        " JOIN unnest($1::text[], $2::text[]) AS k(source, id) USING (source, id)",
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {(row["source"], row["id"]): row["digest"] for row in rows}


def emit(tx: Transaction, items: Sequence[Received]) -> None:
    """The events as they were sent, onto ``usage.recorded`` through metering's outbox,
    keyed by tenancy, in the trace of this request."""
    headers = current_headers()
    topic = tx.topic_prefix + Topic.USAGE_RECORDED.value
    for item in items:
        event = item.usage.event
        row_id = uuid.uuid5(ROWS, json.dumps([event.source, event.id]))
        tx.emitted.append(OutboxRow(row_id, topic, str(event.subject), item.payload, headers))


def _rejected(
    index: int | None, event_id: str | None, reason: str, errors: list[str]
) -> dict[str, Any]:
    return {"index": index, "id": event_id, "reason": reason, "errors": errors}


def refused(status: int, refusals: Sequence[Refusal], batch: bool) -> Problem:
    """The request refused, naming each problem by field, prefixed in a batch by the event's
    index (``[3].data.meter: ...``), with each event's reason code in ``rejected``."""
    rejected = []
    errors: list[str] = []
    for refusal in sorted(refusals, key=lambda r: r.index):
        lines = refusal.errors(batch)
        errors += lines
        index = refusal.index if batch else None
        rejected.append(_rejected(index, refusal.event_id, refusal.rejection.reason, lines))
    shown = errors[:DETAIL_ERRORS]
    more = len(errors) - len(shown)
    detail = "; ".join(shown) + (f"; and {more} more (see errors)" if more else "")
    return Problem(status, detail, errors, extensions={"rejected": rejected})
