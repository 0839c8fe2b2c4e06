"""Scenario ``scale``: 10,000 synthetic tenancies onboarded in batches of 1,000 (each batch at
once, the next when it is active), and the same database work done raw: does a tenancy cost
more when 9,000 are already there? See :mod:`bench.onboarding`.

Each tenancy needs a council of its own (one live tenancy per council and service), so the
workers read a synthetic councils CSV of made-up parish councils written in the bench's
temporary folder.

``python -m bench.scale CONFIG OUT`` is the system run's child process.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.child import child_main
from bench.common import Figure, Options, figure, on_embedded_servers
from bench.onboarding import (
    Load,
    measure,
    replica_figures,
    result,
    system_run,
    total_seconds,
    write_synthetic_councils,
)

NAME = "scale"
DESCRIPTION = "tenancies in batches: time per tenancy, first batch vs last, vs raw"


@dataclass(frozen=True)
class Plan:
    tenancies: int
    batch: int
    repeat: int

    @classmethod
    def from_options(cls, options: Options) -> Plan:
        tenancies, batch = (300, 100) if options.quick else (10_000, 1_000)
        tenancies = options.tenancies or tenancies
        batch = min(options.batch or batch, tenancies)
        if tenancies < 2 * batch:
            raise ValueError("scale needs at least two batches (--tenancies, --batch)")
        return cls(tenancies, batch, options.repeat or 1)


def run(options: Options) -> dict[str, Any]:
    plan = Plan.from_options(options)
    return _result(plan, on_embedded_servers(partial(_measure, plan)))


async def _measure(plan: Plan, server: str, bootstrap: str, root: Path) -> dict[str, Any]:
    csv_file = root / "synthetic_councils.csv"
    codes = write_synthetic_councils(csv_file, plan.tenancies)
    load = Load(codes, csv_file, "at-once", batch=plan.batch, replicas=(1, 2))
    return await measure(NAME, load, plan.repeat, server, bootstrap, root)


def per_batch(side: dict[str, Any], batch: int) -> list[float]:
    """Seconds per tenancy in each batch: its first start (request) to its last end (active),
    over its size."""
    starts, ends = (
        (side["requested"], side["active"])
        if "active" in side
        else (
            side["started"],
            side["ended"],
        )
    )
    return [
        (max(ends[i : i + batch]) - min(starts[i : i + batch])) / len(starts[i : i + batch])
        for i in range(0, len(starts), batch)
    ]


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]
    curves = {s: [per_batch(r[s], plan.batch) for r in repeats] for s in ("system", "floor")}
    b, n = plan.batch, plan.tenancies

    def ms(side: str, at: int) -> list[float]:
        return [curve[at] * 1000 for curve in curves[side]]

    figures: dict[str, Figure] = {
        "first_ms_per_tenancy": figure(
            f"per tenancy, first {b:,}", "ms", ms("system", 0), ms("floor", 0)
        ),
        "last_ms_per_tenancy": figure(
            f"per tenancy, last {b:,}", "ms", ms("system", -1), ms("floor", -1)
        ),
        "growth": figure(
            f"growth, last {b:,} / first {b:,} (flat = 1)",
            "x",
            [c[-1] / c[0] for c in curves["system"]],
            [c[-1] / c[0] for c in curves["floor"]],
            ratio=False,
        ),
        "total_s": figure(
            f"total, {n:,} tenancies",
            "s",
            [total_seconds(r["system"]) for r in repeats],
            [total_seconds(r["floor"]) for r in repeats],
        ),
        **replica_figures(repeats, f"total, {n:,} tenancies", "floor"),
    }
    windows = len(curves["system"][0])
    return result(
        NAME,
        f"{n:,} {DESCRIPTION}",
        measured,
        asdict(plan),
        figures,
        [
            f"{n:,} synthetic parish councils (E04…) in batches of {b:,}; per tenancy in a "
            "batch = (its last active_at - its first requested_at) / its size; the floor's = "
            "(its last end - its first start) / its size.",
        ],
        {
            "window": b,
            "unit": "ms per tenancy",
            "x_label": "tenancies onboarded by the end of the batch",
            "system": [
                statistics.median([c[i] * 1000 for c in curves["system"]]) for i in range(windows)
            ],
            "floor": [
                statistics.median([c[i] * 1000 for c in curves["floor"]]) for i in range(windows)
            ],
        },
    )


if __name__ == "__main__":
    sys.exit(child_main(NAME, system_run, sys.argv[1:]))
