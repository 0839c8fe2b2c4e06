"""``python -m bench [scenario ...]``: run all scenarios, or those named, and record the results.

Each scenario's figures are merged by name into the results file (``--output``, by default
``.tenancy/bench/results.json``) and printed as a table; the whole file is then drawn as a PNG
beside it (same name, ``.png``). Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

from rich.console import Console

from bench import SCENARIOS
from bench.chart import draw
from bench.common import RESULTS_FILE, Options, print_result, write_result


def parse_args(argv: list[str]) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Tenancy against its raw floor on this machine; results go to JSON.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"scenarios to run (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--tenancies",
        type=int,
        help="tenancies per measurement (isolation: default 1000, --quick 50; metering: 50;"
        " all-councils: every current council, --quick 50; one-at-a-time: 50, --quick 10;"
        " scale: 10000, --quick 300)",
    )
    parser.add_argument(
        "--repeat", type=int, help="repeats; figures are their median and spread (default 3)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="published at once before waiting for them (isolation: 100; scale: 1000, --quick 100)",
    )
    parser.add_argument(
        "--events",
        type=int,
        help="usage events per measurement (metering: default 50000, --quick 2000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only shows the benchmark works"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_FILE, help=f"results file (default {RESULTS_FILE})"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    for name in ("tenancies", "repeat", "batch", "events"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    options = Options(
        tenancies=args.tenancies,
        repeat=args.repeat,
        batch=args.batch,
        events=args.events,
        quick=args.quick,
        output=args.output,
    )
    return list(dict.fromkeys(args.scenarios)) or list(SCENARIOS), options


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C, so the embedded servers a scenario started are stopped.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    names, options = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    console = Console()
    failed = []
    for name in names:
        console.print(f"[bold]bench {name}[/bold] …")
        module = importlib.import_module(SCENARIOS[name])
        try:
            result = module.run(options)
        except Exception:
            console.print(f"[red]bench {name} failed[/red]\n{traceback.format_exc()}")
            failed.append(name)
            continue
        write_result(options.output, result)
        print_result(result, console)
        console.print(f"[dim]written to {options.output}[/dim]")
    if options.output.exists():
        console.print(f"[dim]chart drawn to {draw(options.output)}[/dim]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
