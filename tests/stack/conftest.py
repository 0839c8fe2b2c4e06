"""Fixtures for the embedded-stack tests: throwaway servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stack.broker import EmbeddedBroker
from stack.postgres import EmbeddedPostgres

# Ports of the machine's own services; the embedded ones must never land there.
RESERVED_PORTS = frozenset({5432, 9092})


def _live_children() -> dict[int, psutil.Process]:
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return out


def _under(process: psutil.Process, older: set[int]) -> bool:
    """Whether ``process`` was started by one that was running before the test: a backend of
    the PostgreSQL that another test file of this worker process started for its session."""
    try:
        return any(parent.pid in older for parent in process.parents())
    except psutil.NoSuchProcess:
        return True  # gone already: nothing left behind


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return "(exited)"


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail any test that leaves a child process (postgres, tansu) behind."""
    before = set(_live_children())
    yield
    leaked = [
        p for pid, p in _live_children().items() if pid not in before and not _under(p, before)
    ]
    if leaked:
        described = [f"{p.pid} {_name(p)}" for p in leaked]
        for p in leaked:
            p.kill()
        psutil.wait_procs(leaked, timeout=5)
        pytest.fail(f"test left processes running: {described}")


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pgdata", durable=False)
    assert server.port not in RESERVED_PORTS
    with server:
        yield server


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(tmp_path / "broker")
    assert server.port not in RESERVED_PORTS
    with server:
        yield server
