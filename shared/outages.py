"""Why an event failed, as the workers tell it: an *outage* (PostgreSQL or Kafka unreachable)
is waited out, a *permanent* error dead-letters the event (see ``shared.messaging``).

Apart from the broker client, so that what only classifies errors (the CLI's rollout helpers,
a handler's checks) does not import FastStream.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from pydantic import ValidationError

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    KafkaConnectionError,
    KafkaTimeoutError,
    asyncio.TimeoutError,
)


_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)


def is_outage(error: BaseException) -> bool:
    """The database or broker is unreachable: wait and retry, never dead-letter.

    Other OS errors (a full disk, a missing folder) are not outages: retrying would hide them.
    """
    if isinstance(error, OUTAGE_ERRORS):
        return True
    # asyncpg reports a refused connection to a host with several addresses as a bare OSError.
    return isinstance(error, OSError) and (
        error.errno in _NETWORK_ERRNOS or str(error).startswith("Multiple exceptions")
    )


class PermanentError(Exception):
    """An event this worker can never process; retrying would only repeat the failure."""


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    PermanentError,
)
