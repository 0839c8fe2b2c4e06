"""``python -m stack`` (what ``make run`` runs), as a real process on free ports with its state
in a temporary folder, so the developer's own ``.tenancy`` is never touched."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from dotenv import dotenv_values

from stack.launcher import StackError, render_env_file
from stack.ports import free_port
from tests.stack.conftest import RESERVED_PORTS

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("onboarding", "isolation", "branding", "metering")
# Anything that would point the launcher at other servers or another stack.
_INHERITED = re.compile(
    r"^(KAFKA_BOOTSTRAP_SERVERS|DATABASE_URL|TOPIC_PREFIX|SPANS_FILE|ASSETS_DIR|COUNCILS_CSV"
    r"|KAFKA_SESSION_TIMEOUT_MS|LOG_FORMAT|LOG_LEVEL|TENANCY_.*|PG.*)$"
)
READY_LINE = "Ctrl-C stops everything."


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port not in RESERVED_PORTS:
            ports.append(port)
    return ports


class Ports:
    def __init__(self) -> None:
        self.kafka, self.postgres = _distinct_free_ports(2)


@pytest.fixture
def ports() -> Ports:
    return Ports()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def env(state: Path, ports: Ports) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not _INHERITED.match(k)}
    return {
        **clean,
        "TENANCY_STATE_DIR": str(state),
        "TENANCY_KAFKA_PORT": str(ports.kafka),
        "TENANCY_PG_PORT": str(ports.postgres),
        "NO_COLOR": "1",
    }


@pytest.fixture
def leftovers(state: Path) -> Iterator[Callable[[], list[psutil.Process]]]:
    """Lists processes of this test's stack, found anywhere: once the launcher has exited its
    children are no longer ours, so the autouse child-process check cannot see them."""
    marker = str(state)

    def find() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get("TENANCY_STATE_DIR") == marker:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    yield find
    # A failed test must not leave servers running on the machine.
    stray = find()
    for proc in stray:
        proc.kill()
    psutil.wait_procs(stray, timeout=5)


def wait_gone(find: Callable[[], list[psutil.Process]], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [f"{p.pid} {p.name()}" for p in left]


class Launcher:
    """``python -m stack`` in the background, its console collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stack", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 90.0, after: int = 0) -> int:
        """Index of the first line from ``after`` on matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i in range(after, len(self.lines)):
                    if regex.search(self.lines[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def tenancy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def launch() -> Iterator[Callable[..., Launcher]]:
    started: list[Launcher] = []

    def start(env: dict[str, str], *args: str) -> Launcher:
        launcher = Launcher(env, *args)
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.stop()


@pytest.mark.slow
def test_check_starts_everything_then_leaves_nothing_behind(
    env: dict[str, str],
    state: Path,
    ports: Ports,
    leftovers: Callable[[], list[psutil.Process]],
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stack", "--check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert f"127.0.0.1:{ports.kafka}" in result.stdout
    assert f"postgresql://postgres@127.0.0.1:{ports.postgres}/tenancy" in result.stdout
    assert str(state / "stack.env") in result.stdout
    for worker in WORKERS:
        assert re.search(rf"^\[{worker}\] +.*worker ready", output, re.MULTILINE), output
    assert "catalogue loaded: bin-collections" in output
    assert "tenancy onboard --council E09000012 --service bin-collections" in result.stdout
    # Stopped: the CLI must not be pointed at a dead stack, and no server outlives it.
    assert not (state / "stack.env").exists()
    assert (state / "pgdata" / "PG_VERSION").exists()  # durable: kept for the next run
    assert wait_gone(leftovers) == []


@pytest.mark.slow
def test_supervises_workers_and_stops_on_ctrl_c(
    env: dict[str, str],
    state: Path,
    launch: Callable[..., Launcher],
    leftovers: Callable[[], list[psutil.Process]],
) -> None:
    stack = launch(env)
    stack.wait_for(re.escape(READY_LINE))

    written = dotenv_values(state / "stack.env")
    assert written["KAFKA_SESSION_TIMEOUT_MS"] == "3000"
    assert written["SPANS_FILE"] == str(state / "spans.jsonl")
    assert written["ASSETS_DIR"] == str(state / "assets")
    assert "TOPIC_PREFIX" not in written
    cli_env = {**env, **{k: v for k, v in written.items() if v is not None}}
    services = tenancy(cli_env, "services", "--json")
    assert services.returncode == 0, services.stderr
    assert '"id": "bin-collections"' in services.stdout

    onboarding = next(
        p for p in psutil.Process(stack.proc.pid).children() if "services.onboarding" in p.cmdline()
    )
    onboarding.kill()
    died = stack.wait_for(r"^\[stack\] +onboarding was killed by SIGKILL", timeout=10)
    stack.wait_for(r"^\[stack\] +restarting onboarding \(restart 1 of 5", timeout=5, after=died)
    stack.wait_for(r"^\[onboarding\] .*worker ready", timeout=60, after=died)

    # The broker dies too: it is started again, empty, with its topics, and the stack goes on.
    broker = next(
        p
        for p in psutil.Process(stack.proc.pid).children(recursive=True)
        if "tansu" in " ".join(p.cmdline()).lower()
    )
    broker.kill()
    gone = stack.wait_for(r"^\[stack\] +the broker stopped unexpectedly", timeout=10)
    stack.wait_for(r"^\[stack\] +restarting the broker \(restart 1 of 5", timeout=5, after=gone)
    stack.wait_for(r"^\[stack\] +the broker is back at", timeout=30, after=gone)
    # ...and a council still joins: the workers found the new topics and their groups again.
    onboarded = tenancy(cli_env, "onboard", "--council", "E09000012", "--service",
                        "bin-collections", "--json")  # fmt: skip
    assert onboarded.returncode == 0, onboarded.stderr
    tenancy_id = json.loads(onboarded.stdout)["id"]
    shown = tenancy(cli_env, "status", tenancy_id, "--wait", "90", "--json")
    assert json.loads(shown.stdout)["state"] == "active", shown.stdout + stack.output
    assert stack.proc.poll() is None, stack.output

    stack.proc.send_signal(signal.SIGINT)
    assert stack.wait() == 0, stack.output
    assert "stopped" in stack.lines[-1]
    assert not (state / "stack.env").exists()
    assert wait_gone(leftovers) == []


@pytest.mark.slow
def test_interrupted_start_up_stops_what_was_started(
    env: dict[str, str],
    state: Path,
    launch: Callable[..., Launcher],
    leftovers: Callable[[], list[psutil.Process]],
) -> None:
    stack = launch(env)
    stack.wait_for(r"starting workers")
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.wait() == 130, stack.output
    assert "interrupted before the stack was ready" in stack.output
    assert not (state / "stack.env").exists()
    assert wait_gone(leftovers) == []


def test_missing_reference_data_exits_2_before_starting_anything(
    env: dict[str, str], state: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "uk_local_authorities.csv"
    result = subprocess.run(
        [sys.executable, "-m", "stack", "--check"],
        cwd=REPO_ROOT,
        env={**env, "COUNCILS_CSV": str(missing)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Council reference data not found at {missing}" in result.stderr
    assert "COUNCILS_CSV=" in result.stderr
    assert not (state / "pgdata").exists()


def test_stack_env_reads_back_unchanged(tmp_path: Path) -> None:
    values = {
        "DATABASE_URL": "postgresql://app:s3cr%40t@db.example:5432/tenancy?sslmode=require",
        "SPANS_FILE": "/srv/with space/spans.jsonl",
        "TOPIC_PREFIX": "dev.",
    }
    path = tmp_path / "stack.env"
    path.write_text(render_env_file(values), encoding="utf-8")
    assert dotenv_values(path) == values
    # Also usable from a shell: `set -a; . stack.env`.
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; printf "%s\\n" "$DATABASE_URL" "$SPANS_FILE"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.splitlines() == [values["DATABASE_URL"], values["SPANS_FILE"]]


def test_stack_env_refuses_values_it_cannot_quote() -> None:
    with pytest.raises(StackError, match=r"stack\.env"):
        render_env_file({"SPANS_FILE": "/srv/it's/spans.jsonl"})
