"""Prometheus metrics of a Tenancy process, served on ``/metrics`` (see :mod:`shared.health`).

One registry per process. Counters and histograms are updated where things happen (the event
middleware, the dead letters, onboarding's activation); gauges that describe state elsewhere
(consumer lag, tenancies per state) are refreshed when ``/metrics`` is scraped, so a scrape
always sees current values and nothing polls when nobody is looking.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Set
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shared.logging import get_logger
from shared.topics import Topic

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "Refresher", "event_type_of", "exposition"]

log = get_logger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    # The default registry's process collectors: CPU, memory, open files, GC, Python version.
    with contextlib.suppress(ValueError):
        REGISTRY.register(_collector)

EVENTS_HANDLED = Counter(
    "tenancy_events_handled",
    "Consumed events whose handler completed (an event retried counts once, when it succeeds).",
    ["worker", "event_type"],
    registry=REGISTRY,
)
EVENTS_FAILED = Counter(
    "tenancy_events_failed",
    "Handler attempts that raised: outages, retried failures and dead-lettered events.",
    ["worker", "event_type"],
    registry=REGISTRY,
)
HANDLER_DURATION = Histogram(
    "tenancy_handler_duration_seconds",
    "Time one handler attempt took, successful or not (a batch counts as one attempt).",
    ["worker", "event_type"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "tenancy_dead_letters",
    "Events dead-lettered, by the type of error that condemned them.",
    ["worker", "reason"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "tenancy_consumer_lag",
    "Events on a partition not yet handed to the worker: highwater minus consumer position.",
    ["worker", "topic", "partition"],
    registry=REGISTRY,
)
# Onboarding's alone (it owns the tenancies table): registered by enable_onboarding_metrics(),
# so the other workers do not export a tenancy count or an empty histogram they never fill.
TENANCIES = Gauge("tenancy_tenancies", "Tenancies per state.", ["state"], registry=None)
TIME_TO_ACTIVE = Histogram(
    "tenancy_time_to_active_seconds",
    "From an onboarding request being accepted to its tenancy being active.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=None,
)
# Set by onboarding's vesting-day loop, not at scrape time: the plan it reports on is made
# from the register, which that loop reads anyway.
REORGANISATIONS_WAITING = Gauge(
    "tenancy_reorganisations_waiting",
    "Vesting days that have arrived (London time) whose plan is not applied because tenancies"
    " in it are waiting or blocked: how many such tenancies, by vesting day and readiness.",
    ["vesting", "readiness"],
    registry=None,
)

Refresher = Callable[[], Awaitable[None]]
# Per worker name: several workers may share a process (the in-process tests do).
_lag_children: dict[str, set[tuple[str, str]]] = {}
_onboarding_enabled = False
_tenancy_states: set[str] = set()


def enable_onboarding_metrics() -> None:
    global _onboarding_enabled
    if not _onboarding_enabled:
        REGISTRY.register(TENANCIES)
        REGISTRY.register(TIME_TO_ACTIVE)
        REGISTRY.register(REORGANISATIONS_WAITING)
        _onboarding_enabled = True


def event_type_of(topic: str, topic_prefix: str) -> str:
    """The event type a topic carries (one per topic), as a bounded label: a poison event can
    claim any ``type`` it likes, and must not mint a new time series for it."""
    name = topic.removeprefix(topic_prefix)
    try:
        return Topic(name).event_type
    except ValueError:
        return "unknown"


def pre_create(worker: str, event_types: Iterable[str]) -> None:
    """Zero-valued series for every event type a worker consumes, so rates and alerts work
    from the first scrape rather than from the first event."""
    for event_type in event_types:
        EVENTS_HANDLED.labels(worker, event_type)
        EVENTS_FAILED.labels(worker, event_type)
        HANDLER_DURATION.labels(worker, event_type)


async def refresh_consumer_lag(worker: str, consumers: Iterable[Any], wait_seconds: float) -> None:
    """Set the lag of every partition assigned to the worker's aiokafka consumers; drop the
    series of partitions a rebalance took away. A consumer not started (or stopped) has no
    assignment and contributes nothing."""
    seen: set[tuple[str, str]] = set()
    for consumer in consumers:
        try:
            assignment = list(consumer.assignment())
        except Exception as error:  # a consumer being closed: no partitions for now
            log.debug("consumer lag skipped", error=repr(error))
            continue
        for tp in assignment:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # known after the first fetch from the partition
            try:
                # position() waits for an offset reset after an assignment; never a scrape.
                position = await asyncio.wait_for(consumer.position(tp), wait_seconds)
            except Exception as error:  # revoked meanwhile, or not positioned yet
                log.debug("consumer lag skipped", partition=str(tp), error=repr(error))
                continue
            key = (tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(worker, *key).set(max(0, highwater - position))
            seen.add(key)
    for gone in _lag_children.get(worker, set()) - seen:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(worker, *gone)
    _lag_children[worker] = seen


async def refresh_tenancies(pool: Any, wait_seconds: float) -> None:
    rows = await asyncio.wait_for(
        pool.fetch("SELECT state, count(*) AS n FROM onboarding.tenancies GROUP BY state"),
        wait_seconds,
    )
    counts = {str(row["state"]): int(row["n"]) for row in rows}
    # A state nobody is in any more reads 0 rather than its last count.
    for state in _tenancy_states | counts.keys():
        TENANCIES.labels(state).set(counts.get(state, 0))
    _tenancy_states.update(counts)


def show_reorganisations_waiting(
    waiting: Mapping[tuple[str, str], int], shown: Set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Set the series of the plans waiting now and drop those ``shown`` before that are not
    (applied since, or ready); returns what is shown now, for the next call. Only the series
    this caller set are dropped: several onboarding workers may share a process (the tests)."""
    for labels, tenancies in waiting.items():
        REORGANISATIONS_WAITING.labels(*labels).set(tenancies)
    for gone in shown - waiting.keys():
        with contextlib.suppress(KeyError):
            REORGANISATIONS_WAITING.remove(*gone)
    return set(waiting)


async def exposition(refreshers: Iterable[Refresher]) -> bytes:
    """The registry in Prometheus text format, after bringing the scrape-time gauges up to
    date. A refresher that fails leaves its gauges at their last values: a scrape must not
    fail because the database is down (readiness says so)."""
    for refresh in refreshers:
        try:
            await refresh()
        except Exception as error:
            log.debug("metrics refresh failed", error=repr(error))
    return generate_latest(REGISTRY)
