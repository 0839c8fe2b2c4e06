"""Errors as RFC 9457 problem details (``application/problem+json``), naming field and rule."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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
    422: "Invalid request",
    500: "Internal error",
}


class Problem(Exception):
    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or []
        super().__init__(detail)


def problem(status: int, detail: str, instance: str, errors: list[str] | None = None) -> Any:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def field_errors(error: RequestValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"] if part != "body") or "body"
        lines.append(f"{where}: {item['msg']}")
    return lines


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, error: Problem) -> Any:
        return problem(error.status, error.detail, request.url.path, error.errors)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Any:
        errors = field_errors(error)
        return problem(422, "; ".join(errors), request.url.path, errors)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException) -> Any:
        return problem(error.status_code, str(error.detail), request.url.path)

    @app.exception_handler(Exception)
    async def on_error(request: Request, error: Exception) -> Any:
        log.exception("request failed", path=request.url.path)
        return problem(500, "the request could not be completed", request.url.path)
