"""``python -m stack`` (what ``make run`` runs): the whole system on one machine.

It starts PostgreSQL and a Kafka-compatible broker (unless the environment already names
them), creates the platform database and the topics, writes ``stack.env`` for the CLI, runs
the four workers as supervised child processes with their output prefixed on the console,
loads the example catalogue, and tears everything down again on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import enum
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

import asyncpg
from aiokafka.errors import KafkaError

from services.onboarding.councils import ReferenceDataMissing
from shared.db import ensure_database
from shared.kafka_admin import ensure_topics
from shared.logging import redact_dsn
from shared.settings import DEFAULT_COUNCILS_CSV, REPO_ROOT, STACK_ENV_FILE, STATE_DIR
from shared.topics import PARTITIONS, Topic
from stack import dev_tokens
from stack._process import log_tail, stop_process
from stack.broker import BrokerError, EmbeddedBroker
from stack.ports import PortUnavailableError, free_port
from stack.postgres import EmbeddedPostgres, PostgresError

__all__ = ["Options", "Stack", "StackError", "main", "render_env_file", "state_dir"]

_IMPORTED = time.monotonic()

WORKERS = ("onboarding", "isolation", "branding", "metering")
# Started and supervised like the workers: the operator API, `python -m api`.
PROCESSES = {**{name: f"services.{name}" for name in WORKERS}, "api": "api"}
DEFAULT_API_PORT = 18080
DEFAULT_KAFKA_PORT = 19092
DEFAULT_PG_PORT = 15432
PLATFORM_DATABASE = "tenancy"
# Tansu answers a JoinGroup after half the session timeout, and a worker joins its groups one
# after another: 3 s makes each join take ~1.5 s instead of 5 s with the usual 10 s.
DEFAULT_SESSION_TIMEOUT_MS = "3000"
# The reference shared service, built on the SDK: started once the API can hand it logins.
REFERENCE_SERVICE = ("missed-bins", "reference.missed_bins", "bin-collections")
DEFAULT_MISSED_BINS_PORT = 18090
READY_MARKERS = ("worker ready", "api ready", "missed bins ready")
READY_TIMEOUT = 60.0
STOP_GRACE = 10.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
SERVER_TIMEOUT = 30.0
TAIL_LINES = 30
EXIT_INTERRUPTED = 130
EXIT_NO_REFERENCE_DATA = 2

_COLOURS = {
    "onboarding": "36",
    "isolation": "35",
    "branding": "33",
    "metering": "32",
    "missed-bins": "34",
    "stack": "1;34",
}
_ERROR_COLOUR = "1;31"
# Values outside this set are quoted so python-dotenv (the CLI) and a POSIX shell
# (`set -a; . stack.env`) both read them back unchanged.
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")


class StackError(Exception):
    """A failure to report on the console as it is, without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Options:
    workers: bool = True
    check: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m stack",
        description=(
            "Run Tenancy locally: PostgreSQL, a Kafka-compatible broker, the topics, the four "
            "workers and the example catalogue. Ctrl-C stops everything."
        ),
    )
    parser.add_argument(
        "--no-workers",
        action="store_true",
        help="only start the servers, create the topics and write stack.env",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="start everything, wait until ready, print the summary, then stop and exit",
    )
    args = parser.parse_args(argv)
    return Options(workers=not args.no_workers, check=args.check)


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the stack keeps its files: TENANCY_STATE_DIR, else ``<repo>/.tenancy``."""
    raw = environ.get("TENANCY_STATE_DIR")
    return Path(raw).expanduser().absolute() if raw else STATE_DIR


def render_env_file(values: Mapping[str, str]) -> str:
    lines = [
        "# Written by `python -m stack` (make run) and removed when it stops.",
        "# The tenancy CLI reads it; real environment variables take precedence.",
    ]
    lines += [f"{key}={_quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value):
        return value
    # Single quotes: no expansion in a shell, and python-dotenv only unescapes \\ and \'.
    if "'" in value or "\\" in value or "\n" in value:
        raise StackError(f"cannot write {value!r} to stack.env: quotes, backslashes, newlines")
    return f"'{value}'"


def write_atomically(path: Path, content: str) -> None:
    """Replace ``path`` in one step, so a CLI run at that moment never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600: DATABASE_URL may carry a password.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _port_from_env(name: str, default: int) -> tuple[int, bool]:
    """The port to use and whether it was asked for explicitly (then it is not replaced)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default, False
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise StackError(f"{name}={port} is out of range")
    return port, True


def _show_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# -- console ----------------------------------------------------------------------------------


class Console:
    """Line-oriented output shared by the launcher and the worker reader threads."""

    def __init__(self, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> None:
        self._out = out
        self._err = err
        # Re-entrant: a signal handler runs on the main thread, possibly mid-print.
        self._lock = threading.RLock()
        self._colour = out.isatty() and "NO_COLOR" not in os.environ
        self._width = max(len(name) for name in _COLOURS) + 2

    def paint(self, text: str, colour: str) -> str:
        return f"\033[{colour}m{text}\033[0m" if self._colour else text

    def line(self, who: str, text: str, colour: str | None = None, *, error: bool = False) -> None:
        prefix = self.paint(f"[{who}]".ljust(self._width), colour or _COLOURS.get(who, "0"))
        stream = self._err if error else self._out
        with self._lock, contextlib.suppress(OSError, ValueError):
            # Keep the launcher's order when stdout and stderr go to the same terminal.
            self._out.flush()
            for part in text.splitlines() or [""]:
                stream.write(f"{prefix} {part}\n")
            stream.flush()

    def say(self, text: str) -> None:
        self.line("stack", text)

    def error(self, text: str) -> None:
        self.line("stack", text, _ERROR_COLOUR, error=True)

    def block(self, text: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._out.write(text)
            self._out.flush()


# -- workers ----------------------------------------------------------------------------------


class RestartBudget:
    """At most MAX_RESTARTS restarts within RESTART_WINDOW seconds: a process that keeps dying
    is a fault to report, not to hide by restarting it for ever."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] > RESTART_WINDOW:
            self._times.popleft()
        if len(self._times) >= MAX_RESTARTS:
            return False
        self._times.append(now)
        return True

    @property
    def used(self) -> int:
        return len(self._times)


class WorkerProcess:
    """One worker run as ``python -m services.<name>``, its output relayed to the console."""

    def __init__(
        self, name: str, env: Mapping[str, str], console: Console, module: str | None = None
    ) -> None:
        self.name = name
        self.module = module or f"services.{name}"
        self._env = dict(env)
        self._console = console
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reader: threading.Thread | None = None
        self._restarts = RestartBudget()

    def start(self) -> None:
        self.ready.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=REPO_ROOT,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Out of the terminal's process group: Ctrl-C reaches only the launcher, which
            # then stops workers before the servers they depend on.
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._relay, args=(self.proc,), name=f"relay-{self.name}", daemon=True
        )
        self._reader.start()

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in iter(proc.stdout.readline, b""):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self.tail.append(text)
                if any(marker in text for marker in READY_MARKERS):
                    self.ready.set()
                self._console.line(self.name, text)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def drain_output(self, timeout: float = 2.0) -> None:
        """Wait for the relay to print everything the process wrote before it exited."""
        if self._reader is not None:
            self._reader.join(timeout)

    def last_lines(self) -> str:
        return "\n".join(f"  {line}" for line in self.tail) or "  (no output)"

    def may_restart(self, now: float) -> bool:
        return self._restarts.allow(now)

    @property
    def restarts_in_window(self) -> int:
        return self._restarts.used

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, deadline: float) -> None:
        if self.proc is not None:
            grace = max(0.1, deadline - time.monotonic())
            stop_process(self.proc, graceful=((signal.SIGTERM, grace),))
        self.drain_output()


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


# -- the stack --------------------------------------------------------------------------------


class Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass
class Addresses:
    bootstrap: str
    database_url: str
    kafka_embedded: bool
    postgres_embedded: bool


class Stack:
    def __init__(self, options: Options, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console()
        self.state = state_dir()
        self.env_file = self.state / "stack.env"
        self._phase = Phase.STARTING
        self._signals = 0
        self._stop = threading.Event()
        self._postgres: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = None
        self._workers: list[WorkerProcess] = []
        self._topics: list[str] = []
        self._broker_restarts = RestartBudget()
        self._values: dict[str, str] = {}
        self._env_written: str | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._catalogue: concurrent.futures.Future[list[str]] | None = None
        self._previous_handlers: dict[int, Callable[[int, FrameType | None], object] | int] = {}
        self._dev_tokens: list[dev_tokens.DevToken] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        code = 1
        try:
            code = self._run()
        except KeyboardInterrupt:
            self.console.say("interrupted before the stack was ready; stopping")
            code = EXIT_INTERRUPTED
        except StackError as error:
            self.console.error(str(error))
            code = error.exit_code
        finally:
            self._phase = Phase.STOPPING
            self._shutdown()
            self._restore_signal_handlers()
        return code

    def _run(self) -> int:
        councils_csv = self._councils_csv()
        if self.options.workers:
            self._check_reference_data(councils_csv)
        self.state.mkdir(parents=True, exist_ok=True)
        addresses = self._start_servers()
        self._prepare(addresses)
        values = self._values = self._stack_env(addresses, councils_csv)
        self._write_env_file(values)
        if self.options.workers:
            # Loading needs only the database, so it overlaps the workers' start-up.
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            self._catalogue = self._executor.submit(
                _load_catalogue_blocking, values["DATABASE_URL"], REPO_ROOT / "catalogue"
            )
            self._start_workers(values)
            self._report_catalogue(self._catalogue)
            if addresses.postgres_embedded:
                self._dev_tokens = self._make_dev_tokens(values["DATABASE_URL"])
            self._start_reference_service(values)
        self._phase = Phase.RUNNING
        self._print_summary(addresses)
        if self.options.check:
            self.console.say("--check: everything is ready; stopping")
            return 0
        return self._supervise()

    # -- start-up steps -----------------------------------------------------------------------

    def _councils_csv(self) -> Path:
        raw = os.environ.get("COUNCILS_CSV")
        return Path(raw).expanduser().absolute() if raw else DEFAULT_COUNCILS_CSV

    def _check_reference_data(self, path: Path) -> None:
        if not path.is_file():
            raise StackError(str(ReferenceDataMissing(path)), EXIT_NO_REFERENCE_DATA)

    def _start_servers(self) -> Addresses:
        database_url = os.environ.get("DATABASE_URL", "").strip()
        if not database_url:
            port, strict = _port_from_env("TENANCY_PG_PORT", DEFAULT_PG_PORT)
            self.console.say("starting PostgreSQL...")
            try:
                self._postgres = EmbeddedPostgres(
                    self.state / "pgdata", port, durable=True, strict_port=strict
                )
                self._postgres.start()
            except (PostgresError, PortUnavailableError, OSError) as error:
                raise StackError(f"PostgreSQL did not start: {error}") from None
            database_url = self._postgres.dsn(PLATFORM_DATABASE)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            port, strict = _port_from_env("TENANCY_KAFKA_PORT", DEFAULT_KAFKA_PORT)
            self.console.say("starting the broker...")
            try:
                self._broker = EmbeddedBroker(self.state / "broker", port, strict_port=strict)
                self._broker.start()
            except (BrokerError, PortUnavailableError, OSError) as error:
                raise StackError(f"the broker did not start: {error}") from None
            bootstrap = self._broker.bootstrap_servers
        return Addresses(
            bootstrap=bootstrap,
            database_url=database_url,
            kafka_embedded=self._broker is not None,
            postgres_embedded=self._postgres is not None,
        )

    def _prepare(self, addresses: Addresses) -> None:
        prefix = os.environ.get("TOPIC_PREFIX", "")
        self._topics = [f"{prefix}{topic.value}" for topic in Topic]
        asyncio.run(_prepare_servers(addresses, self._topics))
        self.console.say(f"database ready; {len(self._topics)} topics ready")

    def _stack_env(self, addresses: Addresses, councils_csv: Path) -> dict[str, str]:
        def path_setting(name: str, default: Path) -> str:
            raw = os.environ.get(name)
            return str(Path(raw).expanduser().absolute() if raw else default)

        values = {
            "KAFKA_BOOTSTRAP_SERVERS": addresses.bootstrap,
            "DATABASE_URL": addresses.database_url,
            "KAFKA_SESSION_TIMEOUT_MS": os.environ.get(
                "KAFKA_SESSION_TIMEOUT_MS", DEFAULT_SESSION_TIMEOUT_MS
            ),
            "SPANS_FILE": path_setting("SPANS_FILE", self.state / "spans.jsonl"),
            "ASSETS_DIR": path_setting("ASSETS_DIR", self.state / "assets"),
            "THEMES_DIR": path_setting("THEMES_DIR", self.state / "themes"),
            "COUNCILS_CSV": str(councils_csv),
            "API_PORT": str(self._api_port()),
        }
        values["API_URL"] = f"http://127.0.0.1:{values['API_PORT']}"
        if self.options.workers:
            values["MISSED_BINS_PORT"] = str(self._missed_bins_port(int(values["API_PORT"])))
            values["MISSED_BINS_URL"] = f"http://127.0.0.1:{values['MISSED_BINS_PORT']}"
        if self.options.workers:
            # Each worker serves /livez, /readyz and /metrics on a port of its own; the API
            # serves them on API_URL. Only the URLs go here: a HEALTH_PORT in stack.env would
            # be every process's fallback, so each worker is given its own in its environment.
            taken = {int(values["API_PORT"]), int(values["MISSED_BINS_PORT"])}
            for name in WORKERS:
                # A released port can come back from the kernel at once: never hand out one twice.
                while (port := free_port()) in taken:
                    pass
                taken.add(port)
                values[_health_url_key(name)] = f"http://127.0.0.1:{port}"
        if prefix := os.environ.get("TOPIC_PREFIX"):
            values["TOPIC_PREFIX"] = prefix
        return values

    def _api_port(self) -> int:
        port, strict = _port_from_env("TENANCY_API_PORT", DEFAULT_API_PORT)
        try:
            return free_port(port, strict=strict)
        except PortUnavailableError as error:
            raise StackError(f"the API cannot listen: {error}") from None

    def _missed_bins_port(self, api_port: int) -> int:
        port, strict = _port_from_env("TENANCY_MISSED_BINS_PORT", DEFAULT_MISSED_BINS_PORT)
        try:
            found = free_port(port, strict=strict)
            return found if found != api_port else free_port()
        except PortUnavailableError as error:
            raise StackError(f"the reference service cannot listen: {error}") from None

    def _write_env_file(self, values: Mapping[str, str]) -> None:
        content = render_env_file(values)
        write_atomically(self.env_file, content)
        self._env_written = content

    def _report_catalogue(self, loading: concurrent.futures.Future[list[str]]) -> None:
        try:
            loaded = loading.result(timeout=SERVER_TIMEOUT)
        except StackError:
            raise
        except Exception as error:
            raise StackError(f"loading the catalogue failed: {error!r}") from None
        self.console.say(f"catalogue loaded: {', '.join(loaded) or 'no manifests'}")

    def _make_dev_tokens(self, database_url: str) -> list[dev_tokens.DevToken]:
        """Sign-in tokens for the web pages on this local stack (see stack.dev_tokens for
        why); a failure costs only the convenience, never the stack."""
        council = os.environ.get("TENANCY_DEV_COUNCIL", dev_tokens.DEFAULT_COUNCIL)
        try:
            return asyncio.run(
                asyncio.wait_for(
                    dev_tokens.ensure(database_url, self.state, council), SERVER_TIMEOUT
                )
            )
        except Exception as error:
            self.console.error(f"no sign-in token for the web pages: {error!r}")
            return []

    def _worker_env(self, values: Mapping[str, str]) -> dict[str, str]:
        env = {**os.environ, **values}
        env.setdefault("LOG_FORMAT", "console")
        # The workers' settings fall back to <repo>/.tenancy/stack.env for unset variables;
        # with another state dir that file may belong to a different stack.
        env.setdefault("TOPIC_PREFIX", "")
        # Lines must reach the console as they are written, not when a pipe buffer fills.
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _start_workers(self, values: Mapping[str, str]) -> None:
        env = self._worker_env(values)
        self._workers = [
            WorkerProcess(name, _health_env(env, values, name), self.console, module)
            for name, module in PROCESSES.items()
        ]
        self.console.say(f"starting workers and the API: {', '.join(PROCESSES)}")
        for worker in self._workers:
            worker.start()
        self._wait_ready(self._workers)

    def _start_reference_service(self, values: Mapping[str, str]) -> None:
        """Report a missed bin, on the SDK alone: it asks the API for its tenancies' logins
        with a service token of its own, so it starts once the API is ready."""
        name, module, service = REFERENCE_SERVICE
        try:
            token = asyncio.run(
                asyncio.wait_for(
                    dev_tokens.service_token(values["DATABASE_URL"], self.state, service),
                    SERVER_TIMEOUT,
                )
            )
        except Exception as error:
            raise StackError(f"no service token for {name}: {error!r}") from None
        env = {
            **self._worker_env(values),
            "TENANCY_SERVICE_ID": service,
            "TENANCY_API_URL": values["API_URL"],
            "TENANCY_SERVICE_TOKEN": token,
            "TENANCY_STATE_FILE": str(self.state / name / "directory.json"),
        }
        env.pop("HEALTH_PORT", None)
        reference = WorkerProcess(name, env, self.console, module)
        self.console.say(f"starting the reference service: {name}")
        reference.start()
        self._workers.append(reference)
        self._wait_ready([reference])

    def _wait_ready(self, workers: list[WorkerProcess]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(w.ready.is_set() for w in workers):
            for worker in workers:
                code = worker.exit_code()
                if code is not None and not worker.ready.is_set():
                    worker.drain_output()
                    raise StackError(
                        f"{worker.name} {describe_exit(code)} before it was ready; "
                        f"its last lines:\n{worker.last_lines()}"
                    )
            if time.monotonic() > deadline:
                late = [w for w in workers if not w.ready.is_set()]
                details = "\n".join(f"{w.name}:\n{w.last_lines()}" for w in late)
                raise StackError(
                    f"not ready after {READY_TIMEOUT:.0f} s: {', '.join(w.name for w in late)}; "
                    f"last lines:\n{details}"
                )
            time.sleep(0.05)

    # -- running ------------------------------------------------------------------------------

    def _supervise(self) -> int:
        while not self._stop.wait(0.25):
            self._check_servers()
            for worker in self._workers:
                code = worker.exit_code()
                if code is None:
                    continue
                worker.drain_output()
                self.console.error(f"{worker.name} {describe_exit(code)}")
                if not worker.may_restart(time.monotonic()):
                    raise StackError(
                        f"{worker.name} stopped {MAX_RESTARTS + 1} times within "
                        f"{RESTART_WINDOW:.0f} s; giving up and stopping the stack"
                    )
                self.console.say(
                    f"restarting {worker.name} (restart {worker.restarts_in_window} of "
                    f"{MAX_RESTARTS} allowed per minute)"
                )
                worker.start()
        self.console.say("stopping (press Ctrl-C again to kill everything at once)")
        return 0

    def _check_servers(self) -> None:
        # Workers ride out a server outage by retrying, which would look like a hang; a
        # server of ours that died will not come back by itself.
        if self._broker is not None and not self._broker.is_running():
            self._restart_broker(self._broker)
        if self._postgres is not None and not self._postgres.is_running():
            raise StackError(
                "PostgreSQL stopped unexpectedly; stopping the stack. Last lines of "
                f"{self._postgres.log_path}:\n{log_tail(self._postgres.log_path, 15)}"
            )

    def _restart_broker(self, broker: EmbeddedBroker) -> None:
        """The broker keeps nothing, so it comes back empty: its topics are made again, the
        workers' outboxes publish what was not yet sent, and the re-drive re-emits what was."""
        self.console.error(
            f"the broker stopped unexpectedly; last lines of {broker.log_path}:\n"
            f"{log_tail(broker.log_path, 15)}"
        )
        if not self._broker_restarts.allow(time.monotonic()):
            raise StackError(
                f"the broker stopped {MAX_RESTARTS + 1} times within {RESTART_WINDOW:.0f} s;"
                " giving up and stopping the stack"
            )
        self.console.say(
            f"restarting the broker (restart {self._broker_restarts.used} of {MAX_RESTARTS}"
            " allowed per minute); it comes back empty: topics are created again, and the"
            " outboxes and the re-drive bring back what it lost"
        )
        try:
            broker.restart()
            asyncio.run(
                asyncio.wait_for(
                    ensure_topics(broker.bootstrap_servers, self._topics, PARTITIONS),
                    SERVER_TIMEOUT,
                )
            )
        except (BrokerError, OSError, TimeoutError, KafkaError) as error:
            raise StackError(f"the broker did not come back: {error!r}") from None
        self.console.say(f"the broker is back at {broker.bootstrap_servers}")

    def _print_summary(self, addresses: Addresses) -> None:
        took = _seconds_since_start()
        c = self.console
        kafka_note = (
            "embedded Tansu, in memory: topics and messages go when the stack stops"
            if addresses.kafka_embedded
            else "from KAFKA_BOOTSTRAP_SERVERS"
        )
        database_url, pg_note = addresses.database_url, "from DATABASE_URL"
        if addresses.postgres_embedded and self._postgres is not None:
            # The stack itself goes through the server's Unix socket (stack.env says where);
            # people and their tools get the familiar address.
            database_url = self._postgres.tcp_dsn(PLATFORM_DATABASE)
            pg_note = (
                f"embedded, data kept in {_show_path(self.state / 'pgdata')}; the workers use "
                "its Unix socket"
            )
        rows = [
            ("Kafka", f"{addresses.bootstrap}  ({kafka_note})"),
            ("PostgreSQL", f"{redact_dsn(database_url)}  ({pg_note})"),
            ("stack.env", str(self.env_file)),
            ("Spans", self._values.get("SPANS_FILE", "")),
        ]
        if self._workers:
            api = self._values["API_URL"]
            rows.append(("Web", f"{api}/  (open it in a browser: find a service and join it)"))
            rows.append(("API", f"{api}  (OpenAPI: {api}/docs, tokens: tenancy tokens create)"))
            bins = self._values["MISSED_BINS_URL"]
            rows.append(
                (
                    "Missed bins",
                    f"{bins}/  (the reference service: each council that joins"
                    " bin-collections gets its pages)",
                )
            )
            for found in self._dev_tokens:
                who = found.role.value + (f" for {found.council}" if found.council else "")
                rows.append(("Sign in", f"{found.token}  ({who}, local only)"))
        if self._workers:
            pids = ", ".join(f"{w.name} {w.pid}" for w in self._workers)
            rows.append(("Workers", pids))
            health = [f"{name} {self._values[_health_url_key(name)]}" for name in WORKERS]
            health.append(f"api {self._values['API_URL']}")
            rows.append(("Health", f"{', '.join(health)}  (/livez, /readyz, /metrics)"))
        logs = []
        if self._broker is not None:
            logs.append(_show_path(self._broker.log_path))
        if self._postgres is not None:
            logs.append(_show_path(self._postgres.log_path))
        if logs:
            rows.append(("Server logs", ", ".join(logs)))
        width = max(len(label) for label, _ in rows)
        lines = ["", c.paint(f"Tenancy stack is ready ({took:.1f} s)", "1;32")]
        lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
        lines += ["", "Try, in another terminal:"]
        lines += [f"  {step}" for step in self._next_steps()]
        if not self.options.check:
            lines += ["", "Ctrl-C stops everything."]
        c.block("\n".join(lines) + "\n\n")

    def _next_steps(self) -> list[str]:
        steps = [f"cd {REPO_ROOT}"] if Path.cwd() != REPO_ROOT else []
        tenancy = Path(sys.executable).parent / "tenancy"
        if tenancy.exists():
            shown = _relative_to(tenancy, REPO_ROOT)
            activate = _relative_to(tenancy.parent / "activate", REPO_ROOT)
            steps.append(f"source {activate}    # or call {shown} directly")
        if self.env_file != STACK_ENV_FILE:
            # The CLI only looks for <repo>/.tenancy/stack.env on its own.
            steps.append(f"set -a && . {self.env_file} && set +a")
        if not self.options.workers:
            steps.append(
                f"tenancy services load {_relative_to(REPO_ROOT / 'catalogue', REPO_ROOT)}"
            )
            steps.append("python -m services.onboarding    # and the other workers, as needed")
        steps += [
            "tenancy services",
            "tenancy onboard --council E09000012 --service bin-collections",
            "tenancy status <id> --wait 30",
        ]
        if self.options.workers:
            steps.append(f"open {self._values['MISSED_BINS_URL']}/hackney/    # once it is active")
        return steps

    # -- stopping -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._remove_env_file()
        if self._workers:
            self.console.say("stopping workers...")
            for worker in self._workers:
                worker.terminate()
            deadline = time.monotonic() + STOP_GRACE
            for worker in self._workers:
                with _reported(self.console, f"stopping {worker.name}"):
                    worker.stop(deadline)
        if self._executor is not None:
            # The load may still be running if start-up failed; let it finish before the
            # database goes away under it, but never hang the shutdown on it.
            if self._catalogue is not None:
                concurrent.futures.wait([self._catalogue], timeout=SERVER_TIMEOUT)
            self._executor.shutdown(wait=False, cancel_futures=True)
        servers = [("the broker", self._broker), ("PostgreSQL", self._postgres)]
        for label, server in servers:
            if server is None:
                continue
            if server.is_running():
                self.console.say(f"stopping {label}...")
            # Even when not running: stop() also reaps a server that died on its own.
            with _reported(self.console, f"stopping {label}"):
                server.stop()
        self.console.say("stopped")

    def _remove_env_file(self) -> None:
        if self._env_written is None:
            return
        # Only our own file: another stack may have replaced it since.
        with contextlib.suppress(OSError):
            if self.env_file.read_text(encoding="utf-8") == self._env_written:
                self.env_file.unlink()
        self._env_written = None

    # -- signals ------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.signal(sig, self._on_signal)
            if previous is not None:
                self._previous_handlers[sig] = previous

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1 or self._phase is Phase.STOPPING:
            self._kill_everything()
        self._stop.set()
        if self._phase is Phase.STARTING:
            # Start-up blocks in server and worker waits; unwinding runs the normal shutdown.
            raise KeyboardInterrupt

    def _kill_everything(self) -> NoReturn:
        """The second Ctrl-C: no grace periods, no waiting."""
        # os.write: the interrupted main thread may be inside a print to the same stream.
        with contextlib.suppress(OSError):
            os.write(2, b"\n[stack] killing everything now\n")
        groups = [w.pid for w in self._workers]
        groups.append(self._broker.pid() if self._broker is not None else None)
        for pgid in groups:
            if pgid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGKILL)
        pg = self._postgres.pid() if self._postgres is not None else None
        if pg is not None:
            # Immediate shutdown: the postmaster takes its backends down itself and the next
            # start recovers from the WAL, where SIGKILL could strand shared memory.
            with contextlib.suppress(OSError):
                os.kill(pg, signal.SIGQUIT)
        self._remove_env_file()
        os._exit(EXIT_INTERRUPTED)


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _reported(console: Console, what: str) -> Iterator[None]:
    # One failing step of the shutdown must not leave the later servers running.
    try:
        yield
    except Exception as error:
        console.error(f"{what} failed: {error!r}")


def _health_url_key(process: str) -> str:
    return f"{process.upper()}_HEALTH_URL"


def _health_env(env: Mapping[str, str], values: Mapping[str, str], process: str) -> dict[str, str]:
    """A worker's environment with the port of its health URL; the API, which serves the
    probes on its own port, gets none."""
    url = values.get(_health_url_key(process))
    own = {**env}
    own.pop("HEALTH_PORT", None)
    if url is not None:
        own["HEALTH_PORT"] = url.rsplit(":", 1)[1]
    return own


def _seconds_since_start() -> float:
    """How long ago this process was started, interpreter start-up included."""
    try:
        # psutil's create_time() rests on the boot time in whole seconds; the kernel's own
        # start tick is exact to 10 ms. Field 22 of stat, counted after the command name.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


def _relative_to(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(root))
    return str(path)


async def _prepare_servers(addresses: Addresses, topics: list[str]) -> None:
    async def database() -> None:
        try:
            await asyncio.wait_for(ensure_database(addresses.database_url), SERVER_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            raise StackError(
                f"cannot create the platform database at {redact_dsn(addresses.database_url)}: "
                f"{error!r}"
            ) from None

    async def kafka() -> None:
        try:
            await asyncio.wait_for(
                ensure_topics(addresses.bootstrap, topics, PARTITIONS), SERVER_TIMEOUT
            )
        except (OSError, TimeoutError, KafkaError) as error:
            raise StackError(
                f"cannot create the topics on Kafka at {addresses.bootstrap}: {error!r}"
            ) from None

    await asyncio.gather(database(), kafka())


def _load_catalogue_blocking(database_url: str, folder: Path) -> list[str]:
    return asyncio.run(_load_catalogue(database_url, folder))


async def _load_catalogue(database_url: str, folder: Path) -> list[str]:
    """What ``tenancy services load <folder>`` does, without starting another interpreter."""
    # Imported here, in the loading thread: the workers' modules take about a second to import
    # and this overlaps it with the workers' own start-up.
    from services.onboarding.app import MIGRATIONS
    from services.onboarding.repository import CatalogueRepository
    from shared import db
    from shared.catalogue import ManifestError, load_catalogue

    try:
        manifests = load_catalogue(folder)
    except ManifestError as error:
        problems = "\n".join(f"  - {p}" for p in error.problems)
        raise StackError(f"invalid manifest {error.path}:\n{problems}") from None
    pool = await db.create_pool(database_url, max_size=2)
    try:
        # The onboarding worker may be migrating at the same moment; migrate() serialises.
        await db.migrate(pool, "onboarding", MIGRATIONS)
        async with pool.acquire() as conn:
            for manifest in manifests:
                await CatalogueRepository(conn).upsert(manifest)
    finally:
        await pool.close()
    return [m.id for m in manifests]


def main(argv: Sequence[str] | None = None) -> int:
    return Stack(parse_args(argv)).run()
