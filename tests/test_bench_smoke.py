"""The benchmarks run end to end and record their figures. Quick mode only (one repeat, small
workloads), and nothing about speed is asserted: tests never fail on timing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

RUN_SECONDS = 120


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_SECONDS)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the bench stops the PostgreSQL and broker it started.
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"bench did not finish within {RUN_SECONDS} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, output, None)


def test_isolation_quick_writes_its_figures(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    # An earlier result of another scenario is kept: results merge by scenario name.
    results.write_text(json.dumps({"format": 1, "scenarios": {"other": {"name": "other"}}}))

    done = run_bench("isolation", "--quick", "--output", str(results))

    assert done.returncode == 0, done.stdout[-4000:]
    data = json.loads(results.read_text())
    assert set(data["scenarios"]) == {"other", "isolation"}
    scenario = data["scenarios"]["isolation"]
    assert scenario["parameters"]["tenancies"] == 50
    assert scenario["parameters"]["repeat"] == 1
    assert scenario["parameters"]["durable"] is False
    for key in ("first_ms_per_tenancy", "last_ms_per_tenancy", "mean_ms_per_tenancy", "total_s"):
        item = scenario["figures"][key]
        for side in ("system", "floor", "ratio"):
            assert item[side]["median"] > 0, (key, side)
    assert scenario["figures"]["total_vs_parallel_s"]["floor"]["median"] > 0
    assert scenario["figures"]["roles_at_end"]["system"]["median"] >= 50
    machine = scenario["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["postgres"]
    assert machine["tansu"]
    assert all(machine["packages"][p] for p in ("faststream", "aiokafka", "asyncpg"))
    assert "per tenancy, first" in done.stdout  # the table was printed


def test_metering_quick_counts_exactly_and_writes_its_figures(tmp_path: Path) -> None:
    results = tmp_path / "results.json"

    done = run_bench("metering", "--quick", "--output", str(results))

    assert done.returncode == 0, done.stdout[-4000:]
    scenario = json.loads(results.read_text())["scenarios"]["metering"]
    assert scenario["parameters"]["events"] == 2000
    assert scenario["parameters"]["unique"] == 1600  # a fifth of the events are repeats
    assert scenario["parameters"]["repeat"] == 1
    assert scenario["exact"] is True, scenario["repeats"]
    assert scenario["repeats"][0]["system"]["counted"] == 1600
    for key in ("events_per_second", "us_per_event", "total_s"):
        item = scenario["figures"][key]
        for side in ("system", "floor", "ratio"):
            assert item[side]["median"] > 0, (key, side)
    assert scenario["machine"]["postgres"]
    assert "events per second" in done.stdout  # the table was printed


def test_onboarding_scenarios_quick_write_their_figures_and_the_chart(tmp_path: Path) -> None:
    results = tmp_path / "results.json"

    # Smaller than --quick: 12 councils at once, 12 one at a time, 12 in three batches.
    done = run_bench(
        "all-councils",
        "one-at-a-time",
        "scale",
        "--quick",
        "--tenancies",
        "12",
        "--batch",
        "4",
        "--output",
        str(results),
    )

    assert done.returncode == 0, done.stdout[-4000:]
    scenarios = json.loads(results.read_text())["scenarios"]
    assert set(scenarios) == {"all-councils", "one-at-a-time", "scale"}
    expected = {
        "all-councils": ("total_s", "councils_per_second", "p50_ms", "p95_ms", "p99_ms"),
        "one-at-a-time": ("p50_ms", "p99_ms", "mean_ms"),
        "scale": ("first_ms_per_tenancy", "last_ms_per_tenancy", "total_s"),
    }
    for name, keys in expected.items():
        scenario = scenarios[name]
        assert scenario["parameters"]["repeat"] == 1
        assert scenario["machine"]["postgres"]
        for key in keys:
            item = scenario["figures"][key]
            for side in ("system", "floor", "ratio"):
                assert item[side]["median"] > 0, (name, key, side)
    all_councils = scenarios["all-councils"]["figures"]
    # Two of each worker, and the floor on several connections, ran beside the rest.
    for key in ("total_vs_parallel_s", "total_x2_s"):
        assert all_councils[key]["floor"]["median"] > 0, key
    assert all_councils["speed_up_x2"]["system"]["median"] > 0
    assert scenarios["scale"]["figures"]["speed_up_x2"]["system"]["median"] > 0
    cpu = scenarios["all-councils"]["breakdowns"][1]["rows"]
    assert {row["label"] for row in cpu} >= {"onboarding", "isolation", "PostgreSQL", "broker"}
    assert scenarios["all-councils"]["parameters"]["councils"] == 12
    assert scenarios["one-at-a-time"]["parameters"]["runs"] == 12
    assert scenarios["scale"]["parameters"]["tenancies"] == 12
    assert len(scenarios["scale"]["series"]["system"]) == 3
    chart = results.with_suffix(".png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "councils per second" in done.stdout  # the tables were printed


def test_idle_quick_reads_the_cpu_of_each_process(tmp_path: Path) -> None:
    results = tmp_path / "results.json"

    done = run_bench("idle", "--quick", "--output", str(results))

    assert done.returncode == 0, done.stdout[-4000:]
    scenario = json.loads(results.read_text())["scenarios"]["idle"]
    # Nothing is asserted about how much: only that every process was found and read.
    rows = {row["label"]: row["values"][0] for row in scenario["breakdowns"][0]["rows"]}
    assert set(rows) == {"onboarding", "isolation", "branding", "metering", "PostgreSQL", "broker"}
    assert all(value >= 0 for value in rows.values())
    assert scenario["figures"]["stack_pct"]["system"]["median"] > 0
    assert "whole stack idle" in done.stdout
