"""How a worker process is put together: settings in, a FastStream application out.

The application's lifespan opens and closes the resources (PostgreSQL pool, tracing, the
outbox relay); subscribers are registered when the application is built, so the AsyncAPI
document can be generated from the same code without connecting to anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from faststream import FastStream
from faststream.kafka import KafkaBroker

from shared import db, metrics
from shared.commits import OffsetCommits
from shared.events import CloudEvent, Step, StepFailed, StepFailedData
from shared.health import CHECK_TIMEOUT, HealthServer, Probes, serving
from shared.kafka_admin import ensure_topics
from shared.logging import configure_logging, get_logger
from shared.messaging import (
    DeadLetterHook,
    DeadLetters,
    create_broker,
    event_middleware,
    publish_json,
    subscriber_options,
)
from shared.outbox import UnitOfWork
from shared.settings import CommonSettings
from shared.topics import PARTITIONS, Topic, dead_letter_topic
from shared.tracing import configure_tracing, shutdown_tracing

log = get_logger(__name__)
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[object]])


@dataclass
class Worker:
    """What a worker's handlers need at run time; opened by the application's lifespan."""

    name: str
    settings: CommonSettings
    broker: KafkaBroker
    # Offsets of handled events, committed in the background (see shared.commits).
    commits: OffsetCommits
    # Resources a worker opens beyond the platform pool, closed when it stops.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Work handlers left going in the background (metering's counting), finished when it stops
    # before the last offsets are committed.
    drains: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Loops that run while the worker runs (outbox relay, re-drive), given its unit of work.
    background: list[Callable[[UnitOfWork], Coroutine[Any, Any, None]]] = field(
        default_factory=list
    )
    # Schemas of the common library the worker writes to besides its own (e.g. the audit log).
    schemas: dict[str, Path] = field(default_factory=dict)
    # Brings scrape-time gauges up to date when /metrics is asked for.
    metrics_refreshers: list[metrics.Refresher] = field(default_factory=list)
    # Where /livez, /readyz and /metrics are served while it runs, if HEALTH_PORT is set.
    health: HealthServer | None = None
    _pool: db.Pool | None = None
    _uow: UnitOfWork | None = None
    _dead_letters: DeadLetters | None = None

    @property
    def dead_letters(self) -> DeadLetters:
        assert self._dead_letters is not None, "built by build_worker"
        return self._dead_letters

    @property
    def pool(self) -> db.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} worker is not started")
        return self._pool

    @property
    def uow(self) -> UnitOfWork:
        if self._uow is None:
            raise RuntimeError(f"{self.name} worker is not started")
        return self._uow

    def topic(self, topic: Topic) -> str:
        return self.settings.topic(topic.value)

    async def drain(self) -> None:
        for drain in self.drains:
            await drain()

    def publishes(self, *events: type[CloudEvent]) -> None:
        """Declare the events this worker emits (through its outbox), for the AsyncAPI document."""
        for event in events:
            self.broker.publisher(
                self.topic(event.topic),
                schema=event,
                title=f"{event.topic.value}:{self.name}",
                description=(event.__doc__ or "").strip() or None,
            )

    def subscriber(
        self, topic: Topic, *, concurrency: int = 1, **overrides: Any
    ) -> Callable[[Handler], Handler]:
        """Subscribe a handler to one topic in this worker's consumer group for that topic.

        With ``concurrency`` above one, the worker joins the group with that many consumers,
        each handling its partitions' events one at a time: events of one tenancy (one key,
        one partition) stay in order, and each consumer's commits cover only what it handled.
        """
        options = {**subscriber_options(self.settings, self.name, topic.value), **overrides}
        if concurrency > 1:
            options["max_workers"] = concurrency
        decorator = self.broker.subscriber(self.topic(topic), **options)
        return cast("Callable[[Handler], Handler]", decorator)


def build_worker(
    name: str,
    settings: CommonSettings,
    on_dead_letter: Callable[[Worker], DeadLetterHook] | None = None,
) -> Worker:
    broker = create_broker(settings, client_id=f"tenancy-{name}")
    commits = OffsetCommits(settings.kafka_commit_interval_ms / 1000)
    worker = Worker(name=name, settings=settings, broker=broker, commits=commits)
    dlq = worker.topic(dead_letter_topic(name))
    # Declared for the AsyncAPI document; DeadLetters publishes the copies (shared.asyncapi adds
    # their headers, which faststream cannot describe).
    broker.publisher(
        dlq,
        schema=bytes,
        title=f"{dead_letter_topic(name).value}:{name}",
        description=(
            f"Events the {name} worker could not process: each the original record (its value"
            " byte for byte, even if not JSON, its key and its headers), with where it came"
            " from and why it was refused in x- headers. Kept in its dead_letters table too."
        ),
    )
    dead_letters = DeadLetters(
        worker=name,
        schema=name,
        topic=dlq,
        broker=broker,
        pool_provider=lambda: worker.pool,
    )
    if on_dead_letter is not None:
        dead_letters.on_dead_letter = on_dead_letter(worker)
    worker._dead_letters = dead_letters
    broker.add_middleware(
        event_middleware(
            name, settings.handler_attempts, dead_letters, commits, settings.topic_prefix
        )
    )

    async def consumer_lag() -> None:
        await metrics.refresh_consumer_lag(name, consumers(broker), CHECK_TIMEOUT)

    worker.metrics_refreshers.append(consumer_lag)
    return worker


def consumers(broker: KafkaBroker) -> list[Any]:
    """The aiokafka consumers the broker's subscribers hold now (none before they start)."""
    found: list[Any] = []
    for subscriber in broker.subscribers:
        group = getattr(subscriber, "consumer_subgroup", None) or [
            getattr(subscriber, "consumer", None)
        ]
        found += [consumer for consumer in group if consumer is not None]
    return found


def consumed_event_types(worker: Worker) -> list[str]:
    names = [name for sub in worker.broker.subscribers for name in getattr(sub, "topic_names", [])]
    return [metrics.event_type_of(name, worker.settings.topic_prefix) for name in names]


def create_app(worker: Worker, migrations_dir: Path | None) -> FastStream:
    settings = worker.settings

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with running(worker, migrations_dir):
            yield

    configure_logging(worker.name, settings.log_level, settings.log_format)
    app = FastStream(worker.broker, lifespan=lifespan, logger=None)
    # Before the consumers stop, while they can still commit what was handled.
    app.on_shutdown(worker.drain)
    app.on_shutdown(worker.commits.flush)

    @app.after_startup
    async def announce_ready() -> None:
        # Only now have the consumers joined their groups; the launcher waits for this line.
        probes = {"health": worker.health.url} if worker.health is not None else {}
        log.info(
            "worker ready", worker=worker.name, broker=settings.kafka_bootstrap_servers, **probes
        )

    return app


@contextlib.asynccontextmanager
async def running(worker: Worker, migrations_dir: Path | None) -> AsyncIterator[Worker]:
    """Open the worker's resources; used by the application and by in-process tests alike."""
    settings = worker.settings
    configure_tracing(worker.name, settings.otel_exporter_otlp_endpoint, settings.spans_file)
    async with contextlib.AsyncExitStack() as stack:
        if settings.health_port is not None:
            # First, so liveness answers during a slow start and readiness says what it waits for.
            worker.health = await stack.enter_async_context(
                serving(_probes(worker), settings.health_host, settings.health_port)
            )
            stack.callback(setattr, worker, "health", None)
        async with _resources(worker, migrations_dir):
            yield worker


def _probes(worker: Worker) -> Probes:
    metrics.pre_create(worker.name, consumed_event_types(worker))
    return Probes(
        pool=lambda: worker._pool,
        # Not ready before its consumers have joined their groups (broker.start sets running).
        broker=lambda: worker.broker if worker.broker.running else None,
        refreshers=worker.metrics_refreshers,
    )


@contextlib.asynccontextmanager
async def _resources(worker: Worker, migrations_dir: Path | None) -> AsyncIterator[Worker]:
    settings = worker.settings
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url)
    tasks: list[asyncio.Task[None]] = []
    try:
        await db.migrate(pool, worker.name, migrations_dir)
        for schema, directory in worker.schemas.items():
            await db.migrate(pool, schema, directory)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [settings.topic(t.value) for t in Topic],
            PARTITIONS,
        )
        worker._pool = pool
        worker._uow = UnitOfWork(
            pool,
            worker.name,
            lambda payload, **kw: publish_json(worker.broker, payload, **kw),
            settings.topic_prefix,
        )
        tasks.append(asyncio.create_task(worker.uow.run_relay(settings.outbox_sweep_seconds)))
        tasks.append(
            asyncio.create_task(worker.uow.run_marks(settings.outbox_mark_interval_ms / 1000))
        )
        tasks.append(asyncio.create_task(worker.commits.run()))
        tasks += [asyncio.create_task(loop(worker.uow)) for loop in worker.background]
        yield worker
    finally:
        await worker.drain()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for close in worker.closers:
            await close()
        await pool.close()
        worker._pool = None
        shutdown_tracing()


def fail_step_on_dead_letter(step: Step) -> Callable[[Worker], DeadLetterHook]:
    """A dead-lettered event of a tenancy fails that tenancy's step visibly, instead of leaving
    it waiting for a result that will never come."""

    def hook(worker: Worker) -> DeadLetterHook:
        async def on_dead_letter(envelope: dict[str, Any], reason: str) -> None:
            try:
                tenancy_id = str(uuid.UUID(str(envelope.get("subject"))))
            except ValueError:
                return  # nothing identifies a tenancy: the dead letter alone tells the story
            event = StepFailed.new(
                # Derived from the dead event, so dead-lettering it again emits nothing new.
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"dead-letter:{step}:{envelope.get('id')}"),
                source=f"tenancy/{worker.name}",
                subject=tenancy_id,
                data=StepFailedData(step=step, reason=f"dead-lettered: {reason}"[:2000]),
            )
            async with worker.uow.transaction() as tx:
                tx.emit(event)

        return on_dead_letter

    return hook
