"""Scenario ``all-councils``: every current UK council onboarded into one schema-tier service
at once, and the same database work done raw (see :mod:`bench.onboarding`).

``python -m bench.all_councils CONFIG OUT`` is the system run's child process.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from bench.child import child_main
from bench.common import FLOOR_CONNECTIONS, Figure, Options, figure, on_embedded_servers
from bench.onboarding import (
    Load,
    councils_csv,
    current_councils,
    floor_name,
    latency_figures,
    measure,
    replica_figures,
    result,
    system_run,
    total_seconds,
)

NAME = "all-councils"
DESCRIPTION = (
    "every current council onboarded at once: four workers (and two of each) vs the same "
    "writes raw, serial and in parallel"
)


@dataclass(frozen=True)
class Plan:
    councils: int
    repeat: int

    @classmethod
    def from_options(cls, options: Options, available: int) -> Plan:
        councils, repeat = (50, 1) if options.quick else (available, 3)
        return cls(min(options.tenancies or councils, available), options.repeat or repeat)


def run(options: Options) -> dict[str, Any]:
    codes = current_councils(councils_csv())
    plan = Plan.from_options(options, len(codes))
    load = Load(
        codes[: plan.councils],
        councils_csv(),
        "at-once",
        batch=plan.councils,
        replicas=(1, 2),
        floors=(1, FLOOR_CONNECTIONS),
    )
    return _result(plan, on_embedded_servers(partial(measure, NAME, load, plan.repeat)))


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]
    n = plan.councils
    totals = {side: [total_seconds(r[side]) for r in repeats] for side in repeats[0]["order"]}
    parallel = floor_name(FLOOR_CONNECTIONS)
    figures: dict[str, Figure] = {
        "total_s": figure(f"total, {n} councils at once", "s", totals["system"], totals["floor"]),
        "total_vs_parallel_s": figure(
            f"… against the floor on {FLOOR_CONNECTIONS} connections at once",
            "s",
            totals["system"],
            totals[parallel],
        ),
        "councils_per_second": figure(
            "councils per second",
            "councils/s",
            [n / t for t in totals["system"]],
            [n / t for t in totals["floor"]],
            note="ratio: the share of the floor's rate the system reaches",
        ),
        **latency_figures(repeats, "time to active", 50, 95, 99),
        **replica_figures(repeats, "total", parallel, f"{FLOOR_CONNECTIONS} connections"),
    }
    return result(
        NAME,
        DESCRIPTION,
        measured,
        {**asdict(plan), "csv": str(councils_csv())},
        figures,
        [
            f"{n} councils (every current one in the reference data unless --tenancies) "
            "submitted at once; total = first requested_at to last active_at. The system's "
            "first tenancy also creates the service database; the floor creates it untimed.",
        ],
    )


if __name__ == "__main__":
    sys.exit(child_main(NAME, system_run, sys.argv[1:]))
