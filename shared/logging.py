"""structlog set-up: JSON lines carrying the tenancy, event and trace ids bound by the consumer.

Secrets never reach a log line: processors below redact any key that looks like one, so a
mistake elsewhere does not leak a password.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|dsn|credential|api_key", re.IGNORECASE)
_DSN_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@")


def redact_dsn(text: str) -> str:
    """``text`` with the password of any PostgreSQL connection string in it hidden."""
    return _DSN_PASSWORD.sub(r"\1[redacted]@", text)


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and key != "credentials_ref":
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = redact_dsn(value)
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # Resolve stderr at each call, not once: a replaced stream (a test's capture, a
        # reopened log file) must not leave loggers writing to a closed one.
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # faststream and aiokafka log through the standard library; keep them quiet but visible.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
