"""Test plumbing: settings for an isolated slice of the shared test servers, in-process
workers, worker subprocesses, and waits that ask the system rather than sleep."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from services.onboarding.councils import CouncilRegister
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from services.onboarding.service import Person, accept_request
from shared import db
from shared.catalogue import load_catalogue
from shared.events import Brand, Contact
from shared.messaging import create_broker, publish_json
from shared.outbox import UnitOfWork
from shared.settings import DEFAULT_COUNCILS_CSV, REPO_ROOT
from shared.topics import PARTITIONS, Topic
from shared.worker import Worker, running

WORKERS = ("onboarding", "isolation", "branding", "metering")
CATALOGUE = REPO_ROOT / "catalogue"


@dataclass
class Slice:
    """One isolated Tenancy deployment on the shared test servers: its own database,
    topic prefix and state folder."""

    server_dsn: str
    bootstrap: str
    root: Path
    name: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:10])

    @property
    def database_url(self) -> str:
        return db.with_database(self.server_dsn, self.name)

    @property
    def prefix(self) -> str:
        return f"{self.name}."

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": self.database_url,
            "TOPIC_PREFIX": self.prefix,
            "KAFKA_SESSION_TIMEOUT_MS": "2000",
            "SPANS_FILE": str(self.root / "spans.jsonl"),
            "ASSETS_DIR": str(self.root / "assets"),
            "THEMES_DIR": str(self.root / "themes"),
            "EXPORTS_DIR": str(self.root / "exports"),
            "COUNCILS_CSV": str(DEFAULT_COUNCILS_CSV),
            "OUTBOX_SWEEP_SECONDS": "0.5",
            "REDRIVE_AFTER_SECONDS": "3",
            # Tests close periods themselves; test_metering drives the schedule directly.
            "BILLING_AUTO_CLOSE": "false",
            "LOG_LEVEL": "INFO",
        }

    def settings(self, cls: type[Any]) -> Any:
        values = {key.lower(): value for key, value in self.env().items()}
        return cls(_env_file=None, **values)

    def topic(self, topic: Topic) -> str:
        return self.prefix + topic.value


async def load_example_catalogue(pool: db.Pool, extra: list[Path] = ()) -> None:  # type: ignore[assignment]
    async with pool.acquire() as conn:
        for manifest in load_catalogue(CATALOGUE) + [m for p in extra for m in load_catalogue(p)]:
            await CatalogueRepository(conn).upsert(manifest)


@contextlib.asynccontextmanager
async def in_process_workers(slice_: Slice) -> AsyncIterator[dict[str, Worker]]:
    from services.branding import app as branding
    from services.branding.settings import BrandingSettings
    from services.isolation import app as isolation
    from services.isolation.settings import IsolationSettings
    from services.metering import app as metering
    from services.metering.settings import MeteringSettings
    from services.onboarding import app as onboarding
    from services.onboarding.settings import OnboardingSettings

    modules = {
        "onboarding": (onboarding, OnboardingSettings),
        "isolation": (isolation, IsolationSettings),
        "branding": (branding, BrandingSettings),
        "metering": (metering, MeteringSettings),
    }
    async with contextlib.AsyncExitStack() as stack:
        workers: dict[str, Worker] = {}
        for name, (module, settings_cls) in modules.items():
            worker = module.build(slice_.settings(settings_cls))
            await stack.enter_async_context(running(worker, module.MIGRATIONS))
            workers[name] = worker
        await asyncio.gather(*(w.broker.start() for w in workers.values()))
        for worker in workers.values():
            stack.push_async_callback(worker.broker.stop)
        yield workers


@contextlib.contextmanager
def root_trace() -> Iterator[None]:
    span = NonRecordingSpan(
        SpanContext(
            trace_id=random.getrandbits(128),
            span_id=random.getrandbits(64),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    token = context.attach(set_span_in_context(span))
    try:
        yield
    finally:
        context.detach(token)


class Client:
    """What an operator does through the CLI, done in-process against a slice."""

    def __init__(self, slice_: Slice, pool: db.Pool) -> None:
        self.slice = slice_
        self.pool = pool
        self.councils = CouncilRegister.from_csv(DEFAULT_COUNCILS_CSV)
        self.broker = create_broker(slice_.settings(_cli_settings()), client_id="tests")

    async def __aenter__(self) -> Client:
        await self.broker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()

    def uow(self) -> UnitOfWork:
        return UnitOfWork(
            self.pool,
            "onboarding",
            lambda payload, **kw: publish_json(self.broker, payload, **kw),
            self.slice.prefix,
        )

    async def onboard(
        self,
        council: str,
        service: str = "bin-collections",
        brand: Brand | None = None,
        agreement_version: str | None = None,
    ) -> str:
        # Like the CLI, start the onboarding's trace here; workers continue it.
        with root_trace():
            async with self.uow().transaction() as tx:
                return await accept_request(
                    tx,
                    self.councils,
                    council_code=council,
                    service_id=service,
                    contact=Contact(name="Test operator", email="operator@example.gov.uk"),
                    brand=brand,
                    source="tests",
                    accepted_by=Person("Test operator", "operator"),
                    agreement_version=agreement_version,
                )

    async def status(self, tenancy_id: str) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            return await TenancyRepository(conn).status(tenancy_id)

    async def wait_for(
        self,
        tenancy_id: str,
        states: frozenset[str] = frozenset({"active", "failed"}),
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.status(tenancy_id)
            if found is not None and found["state"] in states:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"tenancy {tenancy_id} did not reach {states}: {found}")
            await asyncio.sleep(0.05)

    async def publish_raw(self, topic: Topic, value: bytes, key: str = "poison") -> None:
        await self.broker.publish(
            value,
            topic=self.slice.topic(topic),
            key=key.encode(),
            headers={"content-type": "application/json"},
        )


def _cli_settings() -> type[Any]:
    from cli.settings import CliSettings

    return CliSettings


def subscriptions(slice_: Slice) -> dict[str, str]:
    """Every consumer group of the four workers and the topic it reads, from the workers'
    own subscribers (a group the broker has not seen commit yet is not listed by it)."""
    from services.branding.app import build as branding
    from services.branding.settings import BrandingSettings
    from services.isolation.app import build as isolation
    from services.isolation.settings import IsolationSettings
    from services.metering.app import build as metering
    from services.metering.settings import MeteringSettings
    from services.onboarding.app import build as onboarding
    from services.onboarding.settings import OnboardingSettings

    workers = [
        onboarding(slice_.settings(OnboardingSettings)),
        isolation(slice_.settings(IsolationSettings)),
        branding(slice_.settings(BrandingSettings)),
        metering(slice_.settings(MeteringSettings)),
    ]
    return {
        subscriber.group_id: subscriber.topics[0].name
        for worker in workers
        for subscriber in worker.broker.subscribers
    }


async def drained(slice_: Slice, wait_seconds: float = 20.0) -> None:
    """Wait until every consumer group of the slice has committed up to the end of its topic:
    every event published so far has been handled, and its effects are durable."""
    groups = {group: partitions(topic) for group, topic in subscriptions(slice_).items()}
    # One OffsetFetch per group, naming its partitions (Tansu does not answer the all-topics
    # form), and the ends of every topic at once: one client each, not one per group.
    ends_of = AIOKafkaConsumer(bootstrap_servers=slice_.bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=slice_.bootstrap)
    await ends_of.start()
    try:
        await admin.start()
        deadline = time.monotonic() + wait_seconds
        while True:
            ends = await ends_of.end_offsets([tp for tps in groups.values() for tp in tps])
            behind = []
            for group, tps in groups.items():
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                for tp in tps:
                    # -1 or missing: the group has committed nothing on that partition yet.
                    done = committed[tp].offset if tp in committed else -1
                    if ends[tp] > 0 and done < ends[tp]:
                        behind.append((group, tp.partition, done, ends[tp]))
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"consumers still behind: {behind}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
        await ends_of.stop()


def partitions(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(PARTITIONS)]


class WorkerProcess:
    """A worker as a real process, for tests that kill one."""

    def __init__(
        self,
        name: str,
        slice_: Slice,
        extra_env: dict[str, str] | None = None,
        module: str | None = None,
        ready: str = "worker ready",
    ) -> None:
        self.name = name
        self.module = module or f"services.{name}"
        self.ready_marker = ready
        self.slice = slice_
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = slice_.root / f"{name}.log"

    def start(self, **extra_env: str) -> None:
        env = {**os.environ, **self.slice.env(), **self.extra_env, **extra_env}
        env.pop("TENANCY_FAILPOINTS", None) if "TENANCY_FAILPOINTS" not in {
            **self.extra_env,
            **extra_env,
        } else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=env,
            cwd=REPO_ROOT,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop_all([self])

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def wait_ready(self, wait_seconds: float = 30.0) -> None:
        deadline = time.monotonic() + wait_seconds
        while self.ready_marker not in self.output():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stop_all(processes: Iterable[WorkerProcess], wait_seconds: float = 15.0) -> None:
    """Stop processes as ``kill -TERM`` would, all of them signalled before any is waited for:
    each shuts down (commits, leaves its groups) at the same time as the others."""
    running = [p for p in processes if p.proc is not None and p.proc.poll() is None]
    for process in running:
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    for process in running:
        assert process.proc is not None
        try:
            process.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


async def cli(
    slice_: Slice, *args: str, env: dict[str, str] | None = None, timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """The ``tenancy`` command as an operator runs it, in a thread: the in-process workers
    share this event loop and must keep running."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **slice_.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def onboarded(client: Client, service: str, councils: tuple[str, ...]) -> list[str]:
    """Onboard councils into a service and wait until every one is active."""
    tenancies = [await client.onboard(council, service=service) for council in councils]
    for tenancy_id in tenancies:
        found = await client.wait_for(tenancy_id)
        assert found["state"] == "active", found
    return tenancies


async def _all_records(slice_: Slice, topic: Topic) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record published so far on one of the slice's topics, partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=slice_.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = partitions(slice_.topic(topic))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += records
        return found
    finally:
        await consumer.stop()


async def events_on(slice_: Slice, topic: Topic) -> list[dict[str, Any]]:
    """Every event published so far on one of the slice's topics, with its headers."""
    return [
        {
            "value": record.value.decode() if record.value is not None else "",
            "headers": {k: v.decode() for k, v in record.headers},
        }
        for record in await _all_records(slice_, topic)
    ]


async def records_on(
    slice_: Slice, topic: Topic, key: str
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    """The value and headers, undecoded, of every record with this key on one of the slice's
    topics so far, in the order they were published (one key is one partition)."""
    return [
        (record.value, dict(record.headers))
        for record in await _all_records(slice_, topic)
        if record.key == key.encode()
    ]


async def offboard(client: Client, tenancy_id: str, reason: str = "") -> None:
    """Ask for a tenancy to be offboarded, exactly as ``tenancy offboard`` does: recorded in a
    unit of work on onboarding's outbox, in a trace of its own."""
    from services.onboarding.service import request_offboarding

    with root_trace():
        async with client.uow().transaction() as tx:
            await request_offboarding(tx, tenancy_id, source="tests", reason=reason)
