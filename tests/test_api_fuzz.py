"""Fuzz every operation of the API's OpenAPI document with schemathesis: whatever a caller
sends, with a token or without, the API answers it and never fails with a 5xx.

The fuzzer registers services and asks for tenancies with whatever it makes up, so it runs
against an API process of its own, on a fresh slice (its own database and topics, no workers):
nothing it creates can reach the session's platform or another test."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared import db
from shared.kafka_admin import ensure_topics
from shared.topics import PARTITIONS, Topic
from stack.ports import free_port
from tests.conftest import Api, Servers, new_slice
from tests.harness import WorkerProcess, load_example_catalogue

MANIFESTS = Path(__file__).parent / "manifests"
REGISTER = "register_service_services_post"
# Per operation and caller; with the coverage phase's own cases this keeps both runs, which go
# side by side, well under a minute.
MAX_EXAMPLES = 25
SEED = 20260914  # the same cases every run, so a failure reproduces


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzzed(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    slice_ = new_slice(servers, tmp_path_factory.mktemp("fuzz"))
    await db.ensure_database(slice_.database_url)
    # The API publishes what it accepts; with its topics in place a publish never waits on
    # metadata for a topic that will not come (the broker does not create them on demand).
    await ensure_topics(slice_.bootstrap, [slice_.topic(t) for t in Topic], PARTITIONS)
    port = free_port()
    # The fuzzer makes up tokens by the hundred from 127.0.0.1, beside the run with a real one:
    # with the usual bound on wrong tokens, that run would be answered 429 and test nothing.
    env = {"API_PORT": str(port), "AUTH_FAILURE_LIMIT": "1000000"}
    process = WorkerProcess("api", slice_, env, module="api", ready="api ready")
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready)
        pool = await db.create_pool(slice_.database_url, max_size=2)
        try:
            # The API migrated the schemas at start; give it the catalogue the platform has.
            await load_example_catalogue(pool, [MANIFESTS])
            api = Api(f"http://127.0.0.1:{port}", pool, process)
            await seed(api)
            yield api
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(process.stop)


async def seed(api: Api) -> None:
    """One stored tenancy, so listings have rows to show while the fuzzer reads them."""
    joining = {
        "council": "E09000012",
        "service": "bin-collections",
        "acceptance": {"agreement_version": "1", "name": "Fuzz Seed", "role": "tests"},
    }
    async with httpx.AsyncClient(base_url=api.url) as http:
        answer = await http.post("/tenancies", json=joining, headers=await api.token("operator"))
    assert answer.status_code == 202, answer.text


def schemathesis(url: str, headers: dict[str, str], folder: Path, *only: str) -> dict[str, Any]:
    """Run the schemathesis CLI (synchronous: call it in a thread) on every operation, or on
    the operations named as ``+operation_id`` or ``-operation_id``; return its JSON report."""
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--checks=not_a_server_error",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--generation-database=none",  # no .hypothesis folder anywhere
        # One worker: in several threads CPython 3.11 can fail in ast.parse ("AST constructor
        # recursion depth mismatch") while hypothesis describes a filter, aborting the run.
        "--workers=1",
        "--request-timeout=10",
        "--continue-on-failure",
        "--no-color",
        "--report=json",
        f"--report-json-path={report}",
        *(f"--header={name}: {value}" for name, value in headers.items()),
        *(f"--{'include' if o[0] == '+' else 'exclude'}-operation-id={o[1:]}" for o in only),
    ]
    # Everything goes to 127.0.0.1; any other address would meet a proxy that is not there.
    dead_proxy = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "ALL_PROXY": dead_proxy,
        "NO_PROXY": "127.0.0.1",
    }
    ran = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert report.exists(), ran.stdout[-8000:] + ran.stderr[-3000:]
    found: dict[str, Any] = json.loads(report.read_text())
    found["output"] = ran.stdout
    assert found["complete"], ran.stdout[-8000:]
    assert not found["errors"], ran.stdout[-8000:]  # the fuzzer itself could not run a case
    return found


def server_errors(log: str) -> list[str]:
    """Each traceback in the API's output: the app logs each 500 it answers as JSON with its
    traceback, and uvicorn prints the same exception again as plain text."""
    found: list[str] = []
    block: list[str] | None = None
    for line in log.splitlines():
        if line.startswith("{"):
            block = None
            entry = json.loads(line)
            if entry.get("exception"):
                found.append(f"{entry.get('path')}: {entry['exception']}")
        elif line.startswith(("INFO:", "WARNING:", "ERROR:")):
            block = [line] if "Exception" in line or "Traceback" in line else None
            if block is not None:
                found.append("")
        elif block is not None:
            block.append(line)
            found[-1] = "\n".join(block)
    return found


def unexplained_failures(log: str, reports: list[dict[str, Any]]) -> list[str]:
    """Every server error in ``log`` (the API's output during the runs), and every failure the
    fuzzer reported."""
    found = [trace[-3000:] for trace in server_errors(log)]
    for report in reports:
        for failure in report["failures"]:
            found.append(
                f"{failure['title']} on {failure['operations']}:\n{report['output'][-6000:]}"
            )
    return found


async def test_no_request_makes_the_api_fail(fuzzed: Api, tmp_path: Path) -> None:
    api, logged = fuzzed, len(fuzzed.process.output())
    operator = await api.token("operator")
    # With a token and without (the fuzzer then makes up Authorization headers of its own),
    # side by side. Registering services runs last, alone: what it stores is read by others.
    with_token, anonymous = await asyncio.gather(
        asyncio.to_thread(schemathesis, api.url, operator, tmp_path / "operator", f"-{REGISTER}"),
        asyncio.to_thread(schemathesis, api.url, {}, tmp_path / "anonymous"),
    )
    registering = await asyncio.to_thread(
        schemathesis, api.url, operator, tmp_path / "register", f"+{REGISTER}"
    )
    every = anonymous["operations"]["total"]  # each path and method of the OpenAPI document
    assert anonymous["operations"]["tested"] == every
    assert with_token["operations"]["tested"] + registering["operations"]["tested"] == every
    log = fuzzed.process.output()[logged:]
    assert not unexplained_failures(log, [with_token, anonymous, registering])
    # Without a token nothing gets past authentication, malformed or not.
    assert not anonymous["failures"], anonymous["output"][-6000:]


LONG_URL = "https://" + (("b" * 62 + ".") * 40)[: 2083 - 12] + ".com"  # 2,083 characters


async def test_an_empty_logo_is_refused_as_invalid(fuzzed: Api) -> None:
    brand = {"name": "Fuzz", "colours": {"primary": "#00664F"}, "logo_base64": ""}
    async with httpx.AsyncClient(base_url=fuzzed.url) as http:
        answer = await http.post(
            f"/tenancies/{uuid.uuid4()}/brand",
            json=brand,
            headers=await fuzzed.token("operator"),
        )
    assert answer.status_code == 422, answer.text


async def test_a_registered_service_can_be_read_back(fuzzed: Api) -> None:
    assert len(LONG_URL) == 2083
    manifest = {
        "id": "fuzz-long-url",
        "name": "Long agreement URL",
        "owner_council": "E09000012",
        "agreement": {"version": "1", "url": LONG_URL},
    }
    operator = await fuzzed.token("operator")
    try:
        async with httpx.AsyncClient(base_url=fuzzed.url) as http:
            registered = await http.post("/services", json=manifest, headers=operator)
            assert registered.status_code == 422, registered.text
            assert "agreement.url" in registered.json()["detail"]
            listed = await http.get("/services", headers=operator)
            assert listed.status_code == 200, listed.text
    finally:
        # The row would break every later read of this slice's catalogue.
        await fuzzed.pool.execute("DELETE FROM onboarding.services WHERE id = 'fuzz-long-url'")
