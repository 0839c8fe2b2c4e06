"""Consuming safely: one middleware gives every handler tracing, log context, retries and
dead-lettering, so handlers stay a few lines of parse-decide-persist-emit.

How a failing event is treated depends on why it fails:
- an *outage* (PostgreSQL or Kafka unreachable) is retried without limit: the offset is not
  committed, the event is redelivered after a back-off, and nothing is lost while it lasts;
- a *poison* event (malformed, invalid, or a handler that keeps failing) is copied to the
  worker's dead-letter topic and table with its error, its offset is committed, and the worker
  carries on with the next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import structlog
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from shared import metrics
from shared.catalogue import describe_validation_error
from shared.cloudevents import STRUCTURED_CONTENT_TYPE, is_structured
from shared.commits import OffsetCommits
from shared.dead_letter_headers import DeadLetterHeaders as DeadLetterHeaders
from shared.identifiers import quote_ident
from shared.logging import get_logger
from shared.outages import OUTAGE_ERRORS as OUTAGE_ERRORS
from shared.outages import PERMANENT_ERRORS as PERMANENT_ERRORS
from shared.outages import PermanentError as PermanentError
from shared.outages import is_outage as is_outage
from shared.settings import CommonSettings
from shared.topics import Topic
from shared.tracing import continued_from, current_trace_id, tracer

log = get_logger(__name__)

DeadLetterHook = Callable[[dict[str, Any], str], Awaitable[None]]


class TenancyBroker(KafkaBroker):
    """A KafkaBroker that starts its subscribers concurrently.

    Each subscriber is a consumer that waits for its group join (half the session timeout on
    Tansu); one after another, a worker with five subscribers took eight seconds to be ready.
    """

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True


async def decode_event(
    msg: StreamMessage[Any], default: Callable[[StreamMessage[Any]], Awaitable[Any]]
) -> Any:
    """Structured-mode CloudEvents are JSON; faststream itself reads only application/json as
    such. A record sent before the platform followed the binding still decodes by default."""
    if is_structured(msg.content_type):
        return json.loads(msg.body)
    return await default(msg)


def create_broker(settings: CommonSettings, client_id: str) -> KafkaBroker:
    return TenancyBroker(
        settings.kafka_bootstrap_servers,
        decoder=decode_event,
        acks="all",
        client_id=client_id,
        # Topics are created explicitly with their partition count; never by accident.
        allow_auto_create_topics=False,
        # How soon a client notices topics made again, after a broker came back without them:
        # Kafka's five minutes would leave a consumer idle that long.
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        logger=None,
    )


# The topics of onboarding and of usage: a hop there is on someone's way to an active tenancy
# or a counted event, so their consumers ask the broker again after a short wait. Every other
# topic carries an operator's occasional command or its result (offboarding, migrations,
# rotations, brand changes, billing), whose consumers may wait longer between fetches: an idle
# stack then asks a few times a second in all, not a hundred.
PROMPT_TOPICS = frozenset(
    {
        Topic.ONBOARDING_REQUESTED,
        Topic.TENANCY_REGISTERED,
        Topic.ISOLATION_READY,
        Topic.BRANDING_APPLIED,
        Topic.METERING_ENABLED,
        Topic.STEP_FAILED,
        Topic.USAGE_RECORDED,
    }
)


def subscriber_options(settings: CommonSettings, worker: str, topic: str) -> dict[str, Any]:
    from faststream.middlewares import AckPolicy

    prompt = topic in PROMPT_TOPICS
    return {
        # One consumer group per (worker, topic): each scales out on its own.
        "group_id": f"{settings.topic_prefix}tenancy-{worker}.{topic}",
        "auto_offset_reset": "earliest",
        # EventMiddleware acknowledges: it records handled offsets for OffsetCommits and
        # rewinds the consumer to an event that must be read again.
        "ack_policy": AckPolicy.MANUAL,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": max(300, settings.kafka_session_timeout_ms // 4),
        "rebalance_timeout_ms": settings.kafka_session_timeout_ms,
        "fetch_max_wait_ms": (
            settings.kafka_fetch_max_wait_ms
            if prompt
            else settings.kafka_occasional_fetch_max_wait_ms
        ),
    }


async def publish_json(
    broker: KafkaBroker, payload: dict[str, Any], *, topic: str, key: str, headers: dict[str, str]
) -> None:
    # Set here, the one way events are published, and not taken from ``headers``: outbox rows
    # written before the platform followed the binding recorded application/json.
    headers = {**headers, "content-type": STRUCTURED_CONTENT_TYPE}
    await broker.publish(payload, topic=topic, key=key.encode(), headers=headers)


def describe(error: BaseException) -> str:
    """The error as one line per problem, naming the field and the rule for invalid events."""
    if isinstance(error, ValidationError):
        return "ValidationError: " + "; ".join(describe_validation_error(error))[:4000]
    return f"{type(error).__name__}: {error}"[:4000]


def text_headers(msg: StreamMessage[Any]) -> dict[str, str]:
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in msg.headers.items()}


async def envelope_of(msg: StreamMessage[Any]) -> dict[str, Any]:
    """Whatever of the CloudEvents envelope can be read, for logs and dead letters. Uses the
    message's own decode, which is cached, so the handler does not parse the JSON again."""
    try:
        value = await msg.decode()
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _storable(text: str) -> str:
    # PostgreSQL's text and jsonb cannot hold NUL: a record carrying one in its key, headers or
    # the field names its error quotes must still be dead-lettered, not redelivered for ever.
    return text.replace("\x00", "\ufffd")


@dataclass
class DeadLetters:
    """Where a worker's poison events go: its ``dead_letters`` table and its DLQ topic."""

    worker: str
    schema: str
    topic: str
    broker: KafkaBroker
    pool_provider: Callable[[], asyncpg.Pool]
    on_dead_letter: DeadLetterHook | None = None

    async def record(self, msg: StreamMessage[Any], error: BaseException) -> None:
        reason = describe(error)
        await self.record_raw(msg.raw_message, type(error).__name__, reason)
        if self.on_dead_letter is not None:
            await self.on_dead_letter(await envelope_of(msg), reason)

    async def record_raw(self, raw: Any, error_type: str, reason: str) -> None:
        """Keep a consumed record that cannot be processed: in the worker's ``dead_letters``
        table and on its DLQ topic, with the reason in both."""
        topic, partition, offset = raw.topic, raw.partition, raw.offset
        reason = _storable(reason)  # it may quote a field's name, which may hold a NUL
        letter_id = uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{topic}/{partition}/{offset}")
        headers = {
            _storable(k): _storable(v.decode(errors="replace")) for k, v in raw.headers or ()
        }
        key = _storable(raw.key.decode(errors="replace")) if raw.key else None
        body = raw.value or b""
        await self.pool_provider().execute(
            f"INSERT INTO {quote_ident(self.schema)}.dead_letters"
            ' (id, topic, partition, "offset", key, payload, headers, error_type, error)'
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            letter_id,
            topic,
            partition,
            offset,
            key,
            body,
            headers,
            error_type,
            reason,
        )
        metrics.DEAD_LETTERS.labels(self.worker, error_type).inc()
        added = DeadLetterHeaders(
            dead_letter_id=str(letter_id),
            worker=self.worker,
            original_topic=topic,
            original_partition=str(partition),
            original_offset=str(offset),
            error_type=error_type,
            error=reason[:1000],
        )
        dlq_headers = {**headers, **added.model_dump(by_alias=True)}
        await self.broker.publish(body, topic=self.topic, key=raw.key, headers=dlq_headers)
        log.error("event dead-lettered", reason=reason, dead_letter_id=str(letter_id))


@dataclass(frozen=True)
class Deferred:
    """What a batch handler returns when it has taken its batch and goes on with it in the
    background (metering counts a batch while the next one is read). The batch's offsets are
    recorded for commit once ``outcome`` succeeds, and never if it fails: the handler then
    rewinds the consumer to the batch itself, and the batch is read again."""

    outcome: asyncio.Future[Any]

    @classmethod
    def not_taken(cls) -> Deferred:
        """A batch the handler left to be read again, having rewound the consumer to it."""
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome.cancel()
        return cls(outcome)


class EventMiddleware(BaseMiddleware):
    """Tracing, log context, retry and dead-lettering around every consumed event."""

    _outage_streak: dict[str, int] = {}

    def __init__(
        self,
        msg: Any,
        /,
        *,
        context: Any,
        worker: str,
        attempts: int,
        dead_letters: DeadLetters,
        commits: OffsetCommits,
        topic_prefix: str = "",
    ) -> None:
        super().__init__(msg, context=context)
        self.worker = worker
        self.attempts = attempts
        self.dead_letters = dead_letters
        self.commits = commits
        self.topic_prefix = topic_prefix

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        """Whatever returns has been handled or dead-lettered: its offset may be committed.
        Whatever raises must be read again: the consumer is rewound to it."""
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
            result = await self._consume_one_or_batch(call_next, msg)
        except BaseException:
            # Fails only for a partition no longer assigned here: its new owner reads it again.
            with contextlib.suppress(Exception):
                await msg.nack()
            raise
        consumer = getattr(msg, "consumer", None)
        if isinstance(result, Deferred):
            if consumer is not None:
                result.outcome.add_done_callback(partial(self._handled, consumer, records))
            return None
        if consumer is not None:
            self.commits.handled(consumer, records)
        return result

    def _handled(
        self, consumer: Any, records: tuple[Any, ...], outcome: asyncio.Future[Any]
    ) -> None:
        if not outcome.cancelled() and outcome.exception() is None:
            self.commits.handled(consumer, records)

    async def _consume_one_or_batch(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        raw = msg.raw_message
        if isinstance(raw, tuple):
            return await self._consume_batch(call_next, msg, raw)
        envelope = await envelope_of(msg)
        headers = text_headers(msg)
        attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": raw.topic,
            "messaging.kafka.message.offset": raw.offset,
            "messaging.kafka.destination.partition": raw.partition,
            "cloudevents.event_id": str(envelope.get("id", "")),
            "cloudevents.event_type": str(envelope.get("type", "")),
            "tenancy.id": str(envelope.get("subject", "")),
        }
        with (
            continued_from(headers),
            tracer().start_as_current_span(
                f"{self.worker} consume {raw.topic}", kind=SpanKind.CONSUMER, attributes=attributes
            ) as span,
            structlog.contextvars.bound_contextvars(
                tenancy_id=envelope.get("subject"),
                event_id=envelope.get("id"),
                event_type=envelope.get("type"),
                trace_id=current_trace_id(),
            ),
        ):
            return await self._consume(call_next, msg, span, self._event_type(raw.topic))

    def _event_type(self, topic: str) -> str:
        return metrics.event_type_of(topic, self.topic_prefix)

    async def _consume_batch(
        self, call_next: Any, msg: StreamMessage[Any], records: tuple[Any, ...]
    ) -> Any:
        """A batch handler deals with each bad record itself (it dead-letters them); what
        reaches here is an outage or a bug, and the batch is redelivered rather than lost."""
        first = records[0]
        attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": first.topic,
            "messaging.batch.message_count": len(records),
        }
        name = f"{self.worker} consume {first.topic} batch"
        labels = (self.worker, self._event_type(first.topic))
        with tracer().start_as_current_span(name, kind=SpanKind.CONSUMER, attributes=attributes):
            started = time.perf_counter()
            try:
                result = await call_next(msg)
                if isinstance(result, Deferred):
                    result.outcome.add_done_callback(partial(_count_batch, labels, len(records)))
                else:
                    metrics.EVENTS_HANDLED.labels(*labels).inc(len(records))
                return result
            except Exception as error:
                metrics.EVENTS_FAILED.labels(*labels).inc(len(records))
                if is_outage(error):
                    log.warning("outage; batch will be redelivered", error=str(error))
                else:
                    log.exception("batch failed; it will be redelivered")
                await asyncio.sleep(1.0)
                raise
            finally:
                # The batch's records share its time: one attempt, one observation.
                metrics.HANDLER_DURATION.labels(*labels).observe(time.perf_counter() - started)

    async def _consume(
        self, call_next: Any, msg: StreamMessage[Any], span: trace.Span, event_type: str
    ) -> Any:
        labels = (self.worker, event_type)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                result = await call_next(msg)
                self._outage_streak[self.worker] = 0
                metrics.HANDLER_DURATION.labels(*labels).observe(time.perf_counter() - started)
                metrics.EVENTS_HANDLED.labels(*labels).inc()
                return result
            except Exception as error:
                metrics.HANDLER_DURATION.labels(*labels).observe(time.perf_counter() - started)
                metrics.EVENTS_FAILED.labels(*labels).inc()
                if is_outage(error):
                    streak = self._outage_streak.get(self.worker, 0) + 1
                    self._outage_streak[self.worker] = streak
                    delay = min(0.2 * 2**streak, 10.0)
                    log.warning(
                        "outage; event will be redelivered", error=str(error), retry_in=delay
                    )
                    span.set_status(Status(StatusCode.ERROR, "outage"))
                    await asyncio.sleep(delay)
                    raise
                if attempt < self.attempts and not isinstance(error, PERMANENT_ERRORS):
                    log.warning("handler failed; retrying", error=str(error), attempt=attempt)
                    await asyncio.sleep(0.1 * attempt)
                    continue
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, "dead-lettered"))
                try:
                    await self.dead_letters.record(msg, error)
                except Exception as failure:
                    if is_outage(failure):
                        raise
                    # Never drop an event we could not even dead-letter: say so loudly and
                    # let it be redelivered after a pause.
                    log.exception("dead-lettering failed; event will be redelivered")
                    await asyncio.sleep(5)
                    raise
                return None


def _count_batch(labels: tuple[str, str], records: int, outcome: asyncio.Future[Any]) -> None:
    if outcome.cancelled():
        return  # not taken: it is read again
    failed = outcome.exception() is not None
    (metrics.EVENTS_FAILED if failed else metrics.EVENTS_HANDLED).labels(*labels).inc(records)


def event_middleware(
    worker: str,
    attempts: int,
    dead_letters: DeadLetters,
    commits: OffsetCommits,
    topic_prefix: str = "",
) -> Any:
    return partial(
        EventMiddleware,
        worker=worker,
        attempts=attempts,
        dead_letters=dead_letters,
        commits=commits,
        topic_prefix=topic_prefix,
    )
