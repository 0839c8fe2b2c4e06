"""Errors as RFC 9457 problem details (``application/problem+json``), naming field and rule."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from api.headers import DEFAULTS as SECURITY_HEADERS
from shared.logging import get_logger

log = get_logger(__name__)
MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
}


class RejectedEvent(BaseModel):
    """One usage event ``POST /usage`` refused, and why: the metering worker's reason codes."""

    index: int | None = Field(description="its place in a batch; null for a single event")
    id: str | None = Field(description="its id, if it has one", examples=["report-81234"])
    reason: str = Field(
        description="malformed, negative_quantity, not_a_whole_number, missing_value,"
        " future_time, unknown_tenancy, tenancy_closed, unknown_meter or conflicting_duplicate",
        examples=["unknown_meter"],
    )
    errors: list[str] = Field(description="each problem, naming the field and the rule")


class ProblemDetails(BaseModel):
    """An error, as RFC 9457 problem details: every error the API answers has this shape."""

    type: str = Field(examples=["about:blank"])
    title: str = Field(examples=["Invalid request"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["contact.name: must not contain the NUL character"])
    instance: str = Field(description="the path that was asked for", examples=["/tenancies"])
    errors: list[str] | None = Field(
        default=None, description="each problem, naming the field and the rule it broke"
    )
    rejected: list[RejectedEvent] | None = Field(
        default=None, description="`POST /usage`: each refused event, with its reason code"
    )


# What each status means, for the OpenAPI document.
MEANINGS = {
    401: "No token, or one that is not known or was revoked.",
    403: "The token's role or scope may not do this.",
    404: "No such tenancy, or one outside the token's scope: the two look the same.",
    409: "The tenancy is not in a state that allows this.",
    413: "The request body is larger than this endpoint takes.",
    415: "The request body is not in a media type this endpoint takes.",
    422: "The request breaks a rule; `errors` names each field and rule.",
    429: "Too many wrong tokens from this client; try again after `Retry-After` seconds.",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
}
SCHEMA_REF = "#/components/schemas/ProblemDetails"


def documented(
    *statuses: int, meanings: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The problem responses an operation can answer, for its ``responses=``; ``meanings``
    says what a status means for this operation where that differs from the usual."""
    return {
        status: {
            "description": (meanings or {}).get(status, MEANINGS[status]),
            "content": {MEDIA_TYPE: {"schema": {"$ref": SCHEMA_REF}}},
            **({"headers": HEADERS[status]} if status in HEADERS else {}),
        }
        for status in statuses
    }


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        # RFC 9457 extension members, beside the standard ones (e.g. ``rejected``).
        self.extensions = extensions or {}
        super().__init__(detail)


def problem(
    status: int,
    detail: str,
    instance: str,
    errors: list[str] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    sent = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(
        body, status_code=status, media_type=MEDIA_TYPE, headers={**sent, **(headers or {})}
    )


def field_errors(error: RequestValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
        lines.append(f"{where}: {item['msg']}")
    return lines


async def on_http(request: Request, error: Exception) -> Response:
    """An HTTP error Starlette raised itself (no such path, method not allowed), as a problem."""
    if not isinstance(error, HTTPException):
        raise error
    headers = dict(error.headers or {})
    return problem(error.status_code, str(error.detail), request.url.path, None, headers)


def add_schemas(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """Add ``model``'s JSON schema, and those of the models it holds, to an OpenAPI document's
    ``components.schemas``, where its references point."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


def install(app: FastAPI, documented_models: tuple[type[BaseModel], ...] = ()) -> None:
    """Answer every error as a problem document; ``documented_models`` are the models that
    operations refer to by name without FastAPI serialising them (a raw request body's)."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, error: Problem) -> Any:
        return problem(
            error.status,
            error.detail,
            request.url.path,
            error.errors,
            error.headers,
            error.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Any:
        errors = field_errors(error)
        return problem(422, "; ".join(errors), request.url.path, errors)

    app.add_exception_handler(HTTPException, on_http)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # The operations refer to ProblemDetails by name; FastAPI adds only the schemas of
        # models it serialises itself, so this one joins the document it made (and keeps).
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            models: tuple[type[BaseModel], ...] = (ProblemDetails, *documented_models)
            for model in models:
                add_schemas(schemas, model)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Exception)
    async def on_error(request: Request, error: Exception) -> Any:
        log.exception("request failed", path=request.url.path)
        # Answered outside every middleware (Starlette's last resort), so with its own headers.
        detail = "the request could not be completed"
        return problem(500, detail, request.url.path, None, dict(SECURITY_HEADERS))
