"""Scenario ``one-at-a-time``: single onboarding latency on an idle system (onboard one, wait
until it is active, then the next), and one tenancy's database work done raw (see
:mod:`bench.onboarding`).

``python -m bench.one_at_a_time CONFIG OUT`` is the system run's child process.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from bench.child import child_main
from bench.common import Figure, Options, figure, on_embedded_servers
from bench.onboarding import (
    Load,
    councils_csv,
    current_councils,
    latencies,
    latency_figures,
    measure,
    result,
    system_run,
)

NAME = "one-at-a-time"
DESCRIPTION = "one onboarding at a time on an idle system: four workers vs the same writes raw"
# The first onboarding creates the service database and warms every connection: not timed.
WARMUP = 1


@dataclass(frozen=True)
class Plan:
    runs: int
    repeat: int
    warmup: int

    @classmethod
    def from_options(cls, options: Options, available: int) -> Plan:
        runs, repeat = (10, 1) if options.quick else (50, 3)
        runs = min(options.tenancies or runs, available - WARMUP)
        if runs < 2:
            raise ValueError("--tenancies must be at least 2 for one-at-a-time")
        return cls(runs, options.repeat or repeat, WARMUP)


def run(options: Options) -> dict[str, Any]:
    codes = current_councils(councils_csv())
    plan = Plan.from_options(options, len(codes))
    used = codes[: plan.warmup + plan.runs]
    load = Load(used, councils_csv(), "one-at-a-time", batch=1, warmup=plan.warmup)
    return _result(plan, on_embedded_servers(partial(measure, NAME, load, plan.repeat)))


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]
    figures: dict[str, Figure] = {
        **latency_figures(repeats, "single onboarding", 50, 99),
        "mean_ms": figure(
            "single onboarding, mean",
            "ms",
            [statistics.fmean(latencies(r["system"])) * 1000 for r in repeats],
            [statistics.fmean(latencies(r["floor"])) * 1000 for r in repeats],
        ),
        "observed_p50_ms": figure(
            "seen by the caller p50, submit → active seen (polled every 5 ms)",
            "ms",
            [statistics.median(r["system"]["observed_seconds"]) * 1000 for r in repeats],
            [statistics.median(latencies(r["floor"])) * 1000 for r in repeats],
        ),
    }
    return result(
        NAME,
        DESCRIPTION,
        measured,
        asdict(plan),
        figures,
        [
            f"{plan.runs} onboardings one after another, each submitted once the previous is "
            f"active; {plan.warmup} untimed warm-up first (it creates the service database).",
        ],
    )


if __name__ == "__main__":
    sys.exit(child_main(NAME, system_run, sys.argv[1:]))
