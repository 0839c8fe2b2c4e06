"""Probes for orchestrators and Prometheus: ``/livez``, ``/readyz`` and ``/metrics``.

A worker serves them on ``HEALTH_HOST:HEALTH_PORT`` with a small uvicorn server inside its own
event loop (:func:`serving`); the API adds the same routes to its own app (:func:`routes`).

- ``/livez`` answers while the event loop runs: restart the process when it does not.
- ``/readyz`` answers 200 only when PostgreSQL and the broker both answer within a second,
  else 503 naming the failing check. A worker rides out outages by itself, so readiness is
  for traffic and alerting, never a reason to restart it.
- ``/metrics`` is the process's Prometheus registry (:mod:`shared.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from faststream.kafka import KafkaBroker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared import db, metrics
from shared.logging import get_logger

log = get_logger(__name__)

CHECK_TIMEOUT = 1.0


@dataclass
class Probes:
    """What readiness checks and what a scrape refreshes; providers, because the pool and the
    broker's connection come and go with the process's lifespan."""

    pool: Callable[[], db.Pool | None]
    broker: Callable[[], KafkaBroker | None]
    refreshers: Sequence[metrics.Refresher] = field(default_factory=list)
    timeout: float = CHECK_TIMEOUT

    async def check_database(self) -> str:
        pool = self.pool()
        if pool is None:
            return "not started"
        try:
            await asyncio.wait_for(pool.fetchval("SELECT 1"), self.timeout)
        except Exception as error:
            return _failure(error, self.timeout)
        return "ok"

    async def check_broker(self) -> str:
        broker = self.broker()
        if broker is None:
            return "not started"
        try:
            # ping() retries until its timeout and returns False; the outer bound is for a
            # client that does not notice the cancellation.
            answered = await asyncio.wait_for(broker.ping(self.timeout), self.timeout + 0.5)
        except Exception as error:
            return _failure(error, self.timeout)
        return "ok" if answered else f"no answer within {self.timeout:g} s"

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        database, broker = await asyncio.gather(self.check_database(), self.check_broker())
        checks = {"database": database, "broker": broker}
        return all(value == "ok" for value in checks.values()), checks


def _failure(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(error).__name__}: {error}"[:500]


def routes(probes: Probes) -> list[Route]:
    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        try:
            ready, checks = await probes.readiness()
        except Exception as error:  # a probe must answer, whatever went wrong
            ready, checks = False, {"probe": _failure(error, probes.timeout)}
        if ready:
            return JSONResponse({"status": "ready", "checks": checks})
        return JSONResponse({"status": "not ready", "checks": checks}, status_code=503)

    async def scrape(request: Request) -> Response:
        body = await metrics.exposition(probes.refreshers)
        return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)

    return [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
    ]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The worker's application owns SIGTERM and SIGINT; uvicorn taking them would stop
        # the probes and leave the worker running.
        yield


@dataclass(frozen=True)
class HealthServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextlib.asynccontextmanager
async def serving(probes: Probes, host: str, port: int) -> AsyncIterator[HealthServer]:
    """Serve the probes until the block exits. The socket is bound here, before anything else
    starts, so a port in use fails the start with a clear error (uvicorn would exit the
    process) and port 0 tells its real number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        message = f"cannot serve health probes on {host}:{port}: {error.strerror}"
        raise OSError(error.errno, message) from None
    bound = HealthServer(host, int(sock.getsockname()[1]))
    app = Starlette(routes=routes(probes))
    config = uvicorn.Config(
        app,
        log_level="warning",
        # The process's logging is structlog's: uvicorn must not reconfigure it.
        log_config=None,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task: asyncio.Task[Any] = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # raises what stopped it
                raise RuntimeError("the health server stopped before it started")
            await asyncio.sleep(0.01)
        log.info("health ready", url=bound.url)
        yield bound
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5.0)
        sock.close()
