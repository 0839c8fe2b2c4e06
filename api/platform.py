"""What the API's handlers share while it runs: the database, the broker, reference data."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from faststream.kafka import KafkaBroker
from opentelemetry import trace

from api.settings import ApiSettings
from api.throttle import FailedTokens
from api.tokens import Principal, authenticate
from services.onboarding.councils import CouncilRegister
from shared import db
from shared.messaging import publish_json
from shared.outbox import Transaction, UnitOfWork
from shared.tracing import tracer


@dataclass
class Platform:
    settings: ApiSettings
    pool: db.Pool
    broker: KafkaBroker
    councils: CouncilRegister
    failed_tokens: FailedTokens

    async def publish(
        self, payload: dict[str, Any], *, topic: str, key: str, headers: dict[str, str]
    ) -> None:
        await publish_json(self.broker, payload, topic=topic, key=key, headers=headers)

    @contextlib.asynccontextmanager
    async def request(
        self, worker: str, span: str, attributes: dict[str, str], *, ordered: bool = True
    ) -> AsyncIterator[Transaction]:
        """A request recorded in ``worker``'s outbox, in a trace of its own that the workers
        continue; it is in PostgreSQL before the API answers, and published after the commit
        (or by that worker's relay if the broker is away). Its events are published in order
        unless ``ordered`` is false: then all at once (see :class:`shared.outbox.UnitOfWork`)."""
        with tracer().start_as_current_span(span, attributes=attributes):
            uow = UnitOfWork(
                self.pool, worker, self.publish, self.settings.topic_prefix, ordered=ordered
            )
            async with uow.transaction() as tx:
                yield tx

    async def authenticate(self, token: str, client: str) -> Principal | None:
        """The token's principal, or None, counting a wrong token against ``client``; raises
        :class:`api.throttle.TooManyFailures`, without looking the token up, once ``client``
        has sent too many. The one check of the API's bearer tokens and the web's sign-in."""
        self.failed_tokens.check(client)
        async with self.pool.acquire() as conn:
            found = await authenticate(conn, token)
        if found is None:
            self.failed_tokens.failed(client)
        return found

    def trace_id(self) -> str:
        return format(trace.get_current_span().get_span_context().trace_id, "032x")


def platform(request: Request) -> Platform:
    found: Platform = request.app.state.platform
    return found


def client_of(request: Request) -> str:
    """The caller's address: behind a proxy, the one it forwards (uvicorn trusts the proxies
    in FORWARDED_ALLOW_IPS, 127.0.0.1 by default)."""
    return request.client.host if request.client else "unknown"
