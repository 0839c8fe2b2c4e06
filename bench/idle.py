"""Scenario ``idle``: what a stack with nothing to do costs. The four workers run as real
processes (as in :mod:`bench.onboarding`) on the bench's servers and nobody onboards anything;
their CPU and the servers' is read over a quiet window after they are ready.

*Floor*: the same servers with no client at all, over a window of the same length: what
PostgreSQL and the broker cost on their own.

``python -m bench.idle CONFIG OUT`` is the system run's child process.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.child import child_main, run_child
from bench.common import (
    Figure,
    Options,
    figure,
    now_iso,
    on_embedded_servers,
    other_cpu_figure,
    run_machine,
    run_parameters,
    server_facts,
    sides_in_turn,
)
from bench.onboarding import (
    WORKERS,
    councils_csv,
    emptied,
    servers_cpu_seconds,
    workers_running,
)
from shared import db

NAME = "idle"
DESCRIPTION = "an idle stack: CPU the four workers and the servers use with nothing to do"
# After the workers are ready: their start-up (migrations, group joins) is over by then.
SETTLE_SECONDS = 3.0
SERVERS = ("PostgreSQL", "broker")


@dataclass(frozen=True)
class Plan:
    seconds: float
    repeat: int

    @classmethod
    def from_options(cls, options: Options) -> Plan:
        seconds, repeat = (3.0, 1) if options.quick else (30.0, 3)
        return cls(seconds, options.repeat or repeat)


def run(options: Options) -> dict[str, Any]:
    plan = Plan.from_options(options)
    return _result(plan, on_embedded_servers(partial(_measure, plan)))


async def _measure(plan: Plan, server: str, bootstrap: str, root: Path) -> dict[str, Any]:
    repeats = []
    for index in range(plan.repeat):
        sides = {
            "system": partial(_system, plan, server, bootstrap, root, index),
            "floor": partial(_servers_alone, plan),
        }
        repeats.append(await sides_in_turn(index, sides, before_each=partial(emptied, server)))
    return {"server": await server_facts(server), "repeats": repeats}


async def _system(
    plan: Plan, server: str, bootstrap: str, root: Path, index: int
) -> dict[str, Any]:
    from services.branding.settings import BrandingSettings
    from services.isolation.settings import IsolationSettings
    from services.metering.settings import MeteringSettings
    from services.onboarding.settings import OnboardingSettings

    config = {
        "bootstrap": bootstrap,
        "database_url": db.with_database(server, f"idle_r{index}"),
        "topic_prefix": f"idle.r{index}.",
        "councils_csv": str(councils_csv()),
        "seconds": plan.seconds,
    }
    settings = (OnboardingSettings, IsolationSettings, BrandingSettings, MeteringSettings)
    within = 120 + plan.seconds
    return await run_child(NAME, settings, root, index, config, within=within)


async def _servers_alone(plan: Plan) -> dict[str, Any]:
    before = servers_cpu_seconds(os.getpid())
    await asyncio.sleep(plan.seconds)
    after = servers_cpu_seconds(os.getpid())
    return {"cpu_seconds": {k: after[k] - before[k] for k in SERVERS}, "seconds": plan.seconds}


async def _system_run(config: dict[str, Any]) -> dict[str, Any]:
    """The child: the workers, ready and settled, then a quiet window."""
    async with workers_running(config) as workers:
        await asyncio.sleep(SETTLE_SECONDS)
        before = workers.cpu_seconds()
        await asyncio.sleep(config["seconds"])
        after = workers.cpu_seconds()
    return {
        "cpu_seconds": {k: after[k] - before[k] for k in after},
        "seconds": config["seconds"],
    }


def _share(side: dict[str, Any], *names: str) -> float:
    """Per cent of one core used by ``names`` over the window."""
    return 100 * float(sum(side["cpu_seconds"][n] for n in names)) / float(side["seconds"])


def _result(plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    repeats = measured["repeats"]
    systems = [r["system"] for r in repeats]
    floors = [r["floor"] for r in repeats]
    everything = (*WORKERS, *SERVERS)
    figures: dict[str, Figure] = {
        "stack_pct": figure(
            "whole stack idle (floor: the servers alone)",
            "% of a core",
            [_share(s, *everything) for s in systems],
            [_share(f, *SERVERS) for f in floors],
        ),
        "workers_pct": figure(
            "the four workers", "% of a core", [_share(s, *WORKERS) for s in systems]
        ),
        **{
            f"{name}_pct": figure(
                name,
                "% of a core",
                [_share(s, name) for s in systems],
                [_share(f, name) for f in floors],
            )
            for name in SERVERS
        },
        "other_cpu": other_cpu_figure(repeats),
    }
    rows = [
        {"label": name, "values": [statistics.median(_share(s, name) for s in systems)]}
        for name in everything
    ]
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "ran_at": now_iso(),
        "machine": run_machine(measured),
        "parameters": {**asdict(plan), **run_parameters(measured)},
        "figures": figures,
        "breakdowns": [
            {
                "title": "idle stack, CPU by process (median of repeats)",
                "unit": "% of a core",
                "columns": ["used"],
                "rows": rows,
            }
        ],
        "notes": [
            f"System: the four workers as real processes, {SETTLE_SECONDS:.0f} s after they are "
            f"ready, for {plan.seconds:.0f} s with nothing to do; their CPU and the servers' "
            "(PostgreSQL with every backend, the broker). Floor: the same servers with no "
            "client, for as long.",
        ],
        "repeats": [
            {"order": r["order"], "system": r["system"], "floor": r["floor"]} for r in repeats
        ],
    }


if __name__ == "__main__":
    sys.exit(child_main(NAME, _system_run, sys.argv[1:]))
