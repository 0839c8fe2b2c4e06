"""Benchmarks: ``python -m bench [scenario ...]`` (``make bench``).

Speed is measured, not asserted. Every scenario times the system and, in the same run on the
same machine, the raw floor (the same SQL or the same consuming done directly), and its figures
are merged by scenario name into ``.tenancy/bench/results.json`` with the facts of the machine.

A scenario is a module with ``NAME``, ``DESCRIPTION`` and ``run(options) -> dict``; add it to
:data:`SCENARIOS` (modules are imported only when their scenario runs).
"""

from __future__ import annotations

#: Scenario name -> module, in the order ``python -m bench`` runs them.
SCENARIOS: dict[str, str] = {
    "all-councils": "bench.all_councils",
    "one-at-a-time": "bench.one_at_a_time",
    "scale": "bench.scale",
    "isolation": "bench.isolation",
    "metering": "bench.metering",
    "application": "bench.application",
    "idle": "bench.idle",
}
