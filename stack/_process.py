"""Child-process plumbing shared by the embedded services."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from stack.ports import LOOPBACK


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            # Logs of long-lived dev servers can grow large; only the end matters.
            with contextlib.suppress(OSError):
                fh.seek(-64 * 1024, os.SEEK_END)
            data = fh.read()
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else f"<log {path} is empty>"


def read_from(path: Path, offset: int) -> str:
    """Whatever was appended to ``path`` after byte ``offset``."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def clean_env(drop: tuple[str, ...] = (), drop_prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """A copy of our environment without variables the child would misread."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not any(k.startswith(p) for p in drop_prefixes)
    }


def listens_on(pid: int, port: int) -> bool:
    """True when process ``pid`` itself holds a listening socket on loopback ``port``.

    Probing the port alone is not enough: if another server grabbed the port
    between selection and spawn, a connect (and even a protocol round trip)
    would succeed against the wrong process while ours is dying of EADDRINUSE.
    """
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp4")
    except psutil.Error:
        return False
    return any(
        c.status == psutil.CONN_LISTEN
        and c.laddr
        and c.laddr.port == port
        # 0.0.0.0 would also cover loopback; accept it for robustness.
        and c.laddr.ip in (LOOPBACK, "0.0.0.0")  # noqa: S104
        for c in conns
    )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process(
    proc: subprocess.Popen[bytes],
    *,
    graceful: tuple[tuple[int, float], ...],
) -> None:
    """Stop a child started with ``start_new_session=True`` and reap it.

    ``graceful`` is a sequence of (signal, seconds to wait) sent to the leader in
    order; whatever is still alive afterwards gets SIGKILL on the whole process
    group, so helper processes (postgres backends) cannot outlive the leader.
    Safe to call when the child already died or was killed from outside.
    """
    # The child is a session (and process group) leader, so its pid is the pgid.
    pgid = proc.pid
    for sig, timeout in graceful:
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    if proc.poll() is None:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
    # If the leader died abruptly (e.g. SIGKILL from a test), orphans may remain in
    # its group. The kernel keeps a pgid reserved while any member lives, so this
    # cannot hit an unrelated process; it is a no-op (ESRCH) once the group is empty.
    _sweep_group(pgid)


def _sweep_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return
    _signal_group(pgid, signal.SIGKILL)
    # Orphans are reaped by init, not by us, so poll for the group to empty. A
    # non-reaping init would leave zombies that still count; do not hang on them.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path,
    user: int | None = None,
    group: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session, output appended to ``log_path``.

    A new session keeps the terminal's Ctrl-C (SIGINT to the foreground process
    group) away from the child, so the parent decides how and when it stops.
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=group,
            # Without this a child switched away from root keeps root's supplementary groups.
            extra_groups=[] if user is not None else None,
        )
