"""``POST /usage``: usage over HTTP, for a shared service's software (see :mod:`api.usage`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api import usage
from api.access import allow
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.tokens import Principal, Role
from shared.events import UsageRecorded
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["a service's software"])
# Named in the request body's schema, which FastAPI does not see (the body is read raw).
DOCUMENTED_MODELS = (UsageRecorded,)

EXAMPLE = {
    "specversion": "1.0",
    "id": "report-81234",
    "source": "bin-collections",
    "type": "uk.gov.tenancy.usage.recorded.v1",
    "subject": "3f0c9a52-8d5e-4f7e-9b1a-2a4c6e8f0b13",
    "time": "2026-11-22T10:15:00Z",
    "datacontenttype": "application/json",
    "data": {"meter": "missed_bin_reports", "quantity": 1},
}
EVENT = {"$ref": "#/components/schemas/UsageRecorded"}
BATCH = {"type": "array", "items": EVENT, "minItems": 1, "maxItems": usage.MAX_EVENTS}
SINGLE_EXAMPLE = {"one missed-bin report": {"value": EXAMPLE}}
BATCH_EXAMPLE = {
    "two reports": {
        "value": [EXAMPLE, {**EXAMPLE, "id": "report-81235", "time": "2026-11-22T10:16:00Z"}]
    }
}
REQUEST_BODY = {
    "required": True,
    "description": (
        "One `usage.recorded` CloudEvent in structured mode, or a batch of 1 to"
        f" {usage.MAX_EVENTS} as a JSON array; `source` is the token's service, `subject` one"
        " of its tenancies, `data.meter` one of its meters."
    ),
    "content": {
        "application/cloudevents+json": {"schema": EVENT, "examples": SINGLE_EXAMPLE},
        "application/json": {"schema": EVENT, "examples": SINGLE_EXAMPLE},
        usage.BATCH_CONTENT_TYPE: {"schema": BATCH, "examples": BATCH_EXAMPLE},
    },
}
MEANINGS = {
    403: "Not a service token, or an event whose `source` is not the token's service.",
    409: "One event whose id was received before with other content (conflicting_duplicate).",
    422: "An event (in a batch: `[index].field`) breaks a rule; `rejected` gives each one's"
    " reason code, `errors` each field and rule. Nothing of the request was recorded.",
}


@router.post(
    "/usage",
    status_code=202,
    response_model=usage.UsageAccepted,
    openapi_extra={"requestBody": REQUEST_BODY},
    responses={
        202: {
            "description": "Recorded, before this answer; counted by the metering worker soon.",
            "content": {
                "application/json": {
                    "example": {
                        "accepted": 1,
                        "duplicates": 1,
                        "events": [
                            {"id": "report-81234", "status": "duplicate"},
                            {"id": "report-81235", "status": "accepted"},
                        ],
                    }
                }
            },
        },
        **documented(401, 403, 409, 413, 415, 422, 429, meanings=MEANINGS),
    },
)
async def record_usage(
    request: Request,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(allow(Role.SERVICE))],
) -> usage.UsageAccepted:
    """Report usage of the token's service as `usage.recorded` CloudEvents, as on the topic:
    one event or a batch, taken whole or not at all, and stored before the `202`. An event
    received before (the same source, id and content) is a `duplicate`, recorded once."""
    batch = usage.is_batch(request.headers.get("content-type"))
    elements = usage.decode(await read_body(request), batch)
    received, refusals = usage.parse_events(elements)
    service = str(who.service)
    wrong = usage.wrong_source(received, service)
    if wrong:
        raise usage.refused(403, wrong, batch)
    if not received:  # nothing to look up
        raise usage.refused(422, refusals, batch)
    attributes = {"service.id": service, "usage.events": str(len(elements))}
    # Usage events need no order among themselves: a batch is published all at once.
    async with deps.request("metering", "POST /usage", attributes, ordered=False) as tx:
        refusals += await usage.check_tenancies(tx.conn, service, received)
        firsts, repeats, conflicts = usage.repeats_within(received)
        refusals += conflicts
        if refusals:
            raise usage.refused(422, refusals, batch)
        recorded = await usage.record(tx.conn, firsts)
        if recorded.conflicts:
            raise usage.refused(422 if batch else 409, recorded.conflicts, batch)
        usage.emit(tx, recorded.accepted)
    duplicates = repeats | recorded.duplicates
    log.info(
        "usage received",
        service_id=service,
        accepted=len(recorded.accepted),
        duplicates=len(duplicates),
    )
    return usage.UsageAccepted(
        accepted=len(recorded.accepted),
        duplicates=len(duplicates),
        events=[
            usage.EventStatus(
                id=item.usage.event.id,
                status="duplicate" if item.index in duplicates else "accepted",
            )
            for item in received
        ],
    )


async def read_body(request: Request) -> bytes:
    """The body, refused with ``413`` as soon as it is larger than a batch may be."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > usage.MAX_BODY_BYTES:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > usage.MAX_BODY_BYTES:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def too_large() -> Problem:
    limit = usage.MAX_BODY_BYTES // (1024 * 1024)
    return Problem(413, f"body: at most {limit} MiB; send the events in smaller batches")
