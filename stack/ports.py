"""Loopback port selection for the embedded services."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


class PortUnavailableError(RuntimeError):
    """A specific port was required but something else already holds it."""


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers (postgres, tansu) bind with SO_REUSEADDR, so a port lingering in
        # TIME_WAIT after a restart is usable by them; probing the same way avoids
        # wrongly treating such a port as taken. On Linux this still fails if a
        # socket is listening there, which is what we want to detect.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, *, strict: bool = False) -> int:
    """Return a loopback TCP port that is free at the time of the call.

    ``preferred`` is returned when it can be bound; otherwise a kernel-chosen
    ephemeral port is returned, unless ``strict`` is set, in which case
    :class:`PortUnavailableError` is raised. The port is released before
    returning, so another process could still grab it: callers that spawn a
    server should treat a bind failure as retryable when the port was not
    explicitly requested.
    """
    if preferred is not None:
        if not 0 < preferred < 65536:
            raise ValueError(f"port out of range: {preferred}")
        if port_is_free(preferred):
            return preferred
        if strict:
            raise PortUnavailableError(f"port {LOOPBACK}:{preferred} is already in use")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port
