"""`tenancy trace`: one onboarding, one trace, through every worker, read from the spans file."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness import WORKERS, Client, Slice
from tests.harness import cli as run_cli

COUNCIL = "E07000242"  # East Hertfordshire: no other test onboards it


async def tenancy(
    slice_: Slice, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Wide enough that no span name is cut short in the waterfall.
    return await run_cli(slice_, *args, env={"COLUMNS": "200", **(env or {})})


def spans_of(path: Path, tenancy_id: str) -> list[dict[str, Any]]:
    spans = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [s for s in spans if s["attributes"].get("tenancy.id") == tenancy_id]


@pytest.fixture(scope="module")
async def onboarded(platform: Client) -> str:
    tenancy_id = await platform.onboard(COUNCIL)
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    # The last consume span ends just after the commit that made the tenancy active.
    path = platform.slice.root / "spans.jsonl"
    deadline = time.monotonic() + 10
    while True:
        names = {s["name"].split()[0] for s in spans_of(path, tenancy_id)}
        if set(WORKERS) <= names:
            break
        assert time.monotonic() < deadline, f"spans of {tenancy_id} name only {names}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return tenancy_id


async def test_the_waterfall_shows_every_worker_in_order(platform: Client, onboarded: str) -> None:
    shown = await tenancy(platform.slice, "trace", onboarded)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("trace "), shown.stdout
    rows = [line for line in lines[2:] if line.strip()]
    for worker in WORKERS:
        assert any(f"{worker} consume" in row for row in rows), shown.stdout
    # The topic prefix of the test slice is noise in a waterfall: names show the topic alone.
    assert platform.slice.prefix not in shown.stdout
    # The first span starts the trace; the request reaches onboarding before anything else.
    starts = [
        float(m.group(1)) for row in rows if (m := re.search(r"\s([\d,.]+)\s+[\d,.]+\s", row))
    ]
    assert starts
    assert starts[0] == 0.0
    first_consume = next(i for i, row in enumerate(rows) if "consume" in row)
    assert "onboarding consume onboarding.requested" in rows[first_consume]
    assert all("█" in row for row in rows)


async def test_json_gives_the_spans_of_one_trace_by_start(platform: Client, onboarded: str) -> None:
    shown = await tenancy(platform.slice, "trace", onboarded, "--json")
    assert shown.returncode == 0, shown.stderr
    spans = json.loads(shown.stdout)
    assert len({span["trace_id"] for span in spans}) == 1
    starts = [span["start_ns"] for span in spans]
    assert starts == sorted(starts)
    assert {span["name"].split()[0] for span in spans} >= set(WORKERS)
    assert all(span["end_ns"] >= span["start_ns"] for span in spans)


async def test_a_tenancy_without_spans_is_an_error(platform: Client) -> None:
    nobody = str(uuid.uuid4())
    shown = await tenancy(platform.slice, "trace", nobody)
    assert shown.returncode == 1
    assert f"no spans of tenancy {nobody}" in " ".join(shown.stderr.split())


async def test_a_half_written_last_line_is_skipped(
    platform: Client, onboarded: str, tmp_path: Path
) -> None:
    whole = (platform.slice.root / "spans.jsonl").read_text()
    mine = [line for line in whole.splitlines() if onboarded in line]
    spans = tmp_path / "spans.jsonl"
    # A worker killed mid-write leaves a line without its end (and without its newline).
    spans.write_text(whole + mine[-1][: len(mine[-1]) // 2])
    shown = await tenancy(
        platform.slice, "trace", onboarded, "--json", env={"SPANS_FILE": str(spans)}
    )
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) >= len(mine)
    assert shown.stderr == ""

    # A broken line in the middle is not expected: it is skipped, and said so.
    spans.write_text(mine[0][:60] + "\n" + whole)
    shown = await tenancy(
        platform.slice, "trace", onboarded, "--json", env={"SPANS_FILE": str(spans)}
    )
    assert shown.returncode == 0, shown.stderr
    assert "skipped 1 unreadable lines" in shown.stderr


async def test_with_a_collector_it_links_to_the_trace_in_jaeger(
    platform: Client, onboarded: str
) -> None:
    trace_ids = {s["trace_id"] for s in spans_of(platform.slice.root / "spans.jsonl", onboarded)}
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "JAEGER_UI_URL": "http://jaeger.test/",
    }
    shown = await tenancy(platform.slice, "trace", onboarded, env=env)
    assert shown.returncode == 0, shown.stderr
    link = shown.stdout.strip()
    assert link.startswith("http://jaeger.test/trace/")
    assert link.removeprefix("http://jaeger.test/trace/") in trace_ids

    nobody = str(uuid.uuid4())
    shown = await tenancy(platform.slice, "trace", nobody, env=env)
    assert shown.returncode == 1
    assert "tenancy.id" in shown.stderr
    assert "http://jaeger.test/search" in shown.stderr
