from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import asyncpg
import psutil
import pytest

from stack.ports import LOOPBACK, PortUnavailableError
from stack.postgres import (
    EmbeddedPostgres,
    PostgresAlreadyRunningError,
    create_database,
)


def expected_pg_user() -> str:
    # postgres refuses to run as root, so root runs it under a dedicated account.
    if os.geteuid() == 0:
        return "tenancy-pg"
    return psutil.Process().username()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_serves_sql_on_loopback_and_its_socket(pg: EmbeddedPostgres) -> None:
    assert pg.tcp_dsn() == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert pg.dsn().startswith("postgresql://postgres@/postgres?host=%2Ftmp%2Ftpg-")
    over_socket = await asyncpg.connect(pg.dsn())
    try:
        assert await over_socket.fetchval("SELECT inet_server_addr()") is None
    finally:
        await over_socket.close()
    conn = await asyncpg.connect(pg.tcp_dsn())
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SHOW max_connections") == "200"
        assert await conn.fetchval("SHOW fsync") == "off"
        assert await conn.fetchval("SHOW listen_addresses") == LOOPBACK
    finally:
        await conn.close()
    pid = pg.pid()
    assert pid is not None
    assert psutil.Process(pid).username() == expected_pg_user()


async def test_create_database_is_idempotent(pg: EmbeddedPostgres) -> None:
    await create_database(pg.dsn(), "tenancy_test")
    await create_database(pg.dsn(), "tenancy_test")
    conn = await asyncpg.connect(pg.dsn("tenancy_test"))
    try:
        assert await conn.fetchval("SELECT current_database()") == "tenancy_test"
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a-b", 'x"; DROP', "a" * 64])
async def test_create_database_rejects_bad_names(name: str) -> None:
    # Validation happens before connecting, so no server is needed (port 1 is closed).
    with pytest.raises(ValueError, match="invalid database name"):
        await create_database("postgresql://postgres@127.0.0.1:1/postgres", name)


def test_start_is_idempotent(pg: EmbeddedPostgres) -> None:
    pid = pg.pid()
    pg.start()
    assert pg.pid() == pid


def test_second_server_on_same_data_dir_fails_clearly(pg: EmbeddedPostgres) -> None:
    pid = pg.pid()
    assert pid is not None
    other = EmbeddedPostgres(pg.data_dir, durable=False)
    with pytest.raises(PostgresAlreadyRunningError) as info:
        other.start()
    assert info.value.pid == pid
    assert info.value.data_dir == pg.data_dir
    assert str(pid) in str(info.value)
    assert str(pg.data_dir) in str(info.value)
    assert not other.is_running()
    assert pg.is_running()


async def test_data_persists_across_stop_start(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "durable", durable=True)
    with server:
        handed_out = server.dsn()
        conn = await asyncpg.connect(server.dsn())
        try:
            assert await conn.fetchval("SHOW fsync") == "on"
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('still here')")
        finally:
            await conn.close()
        first_pid = server.pid()
    assert not server.is_running()

    with server:
        assert server.pid() != first_pid
        # A client that kept the address reaches the restarted server there.
        assert server.dsn() == handed_out
        conn = await asyncpg.connect(handed_out)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "still here"
        finally:
            await conn.close()


def test_stop_leaves_no_processes(pg: EmbeddedPostgres) -> None:
    pid = pg.pid()
    assert pid is not None
    backends = psutil.Process(pid).children()
    assert backends  # checkpointer, walwriter, ... share the postmaster's group
    pg.stop()
    assert not pg.is_running()
    assert pg.pid() is None
    assert not group_alive(pid)
    assert not any(p.is_running() for p in backends)
    pg.stop()  # a second stop is harmless


def test_stop_and_restart_after_external_kill(pg: EmbeddedPostgres) -> None:
    pid = pg.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pg.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pg.is_running()
    pg.stop()  # must not raise, and must clear the orphaned backends
    assert not group_alive(pid)
    # The stale postmaster.pid left behind must not block a new start.
    pg.start()
    assert pg.is_running()
    assert pg.pid() != pid


def test_taken_preferred_port_falls_back_unless_strict(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        taken = sock.getsockname()[1]

        relaxed = EmbeddedPostgres(tmp_path / "relaxed", taken, durable=False)
        with relaxed:
            assert relaxed.port != taken

        strict = EmbeddedPostgres(tmp_path / "strict", taken, durable=False, strict_port=True)
        with pytest.raises(PortUnavailableError, match=str(taken)):
            strict.start()
        assert not strict.is_running()


def test_refuses_to_initdb_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "foreign"
    data_dir.mkdir()
    (data_dir / "precious.txt").write_text("not a database")
    with pytest.raises(RuntimeError, match="no PG_VERSION"):
        EmbeddedPostgres(data_dir, durable=False).start()
    assert (data_dir / "precious.txt").read_text() == "not a database"


def test_startup_failure_shows_log_tail(tmp_path: Path) -> None:
    data_dir = tmp_path / "broken"
    with EmbeddedPostgres(data_dir, durable=False):
        pass
    # An invalid setting makes postgres exit during startup; the error must say why.
    (data_dir / "postgresql.auto.conf").write_text("shared_buffers = 'lots'\n")
    server = EmbeddedPostgres(data_dir, durable=False)
    with pytest.raises(RuntimeError, match="shared_buffers"):
        server.start()
    assert not server.is_running()


def test_interrupted_start_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    server = EmbeddedPostgres(tmp_path / "interrupted", durable=False)
    monkeypatch.setattr(server, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert not server.is_running()  # and the autouse fixture checks nothing leaked
