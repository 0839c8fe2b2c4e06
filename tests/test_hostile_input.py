"""Identifiers built to inject SQL are refused with a clear error and change nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from shared.topics import Topic
from tests.harness import Client, Slice, drained

HOSTILE_SERVICE = 'bins"; DROP DATABASE postgres; --'


async def cli(slice_: Slice, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **slice_.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def databases_and_roles(platform: Client) -> tuple[set[str], set[str]]:
    dbs = {r[0] for r in await platform.pool.fetch("SELECT datname FROM pg_database")}
    roles = {r[0] for r in await platform.pool.fetch("SELECT rolname FROM pg_roles")}
    return dbs, roles


async def test_hostile_manifest_is_refused_naming_the_field(
    platform: Client, tmp_path: Path
) -> None:
    manifest = tmp_path / "evil.yaml"
    manifest.write_text(
        f"id: '{HOSTILE_SERVICE}'\nname: Evil\nowner_council: E09000012\n"
        "isolation: schema\nmeters: [{key: 'x; DROP TABLE y'}]\n"
    )
    result = await cli(platform.slice, "services", "load", str(manifest))
    assert result.returncode != 0
    text = " ".join(result.stderr.split())
    assert "id: String should match pattern" in text
    assert "meters.0.key: String should match pattern" in text


async def test_hostile_ids_on_the_command_line_are_refused(platform: Client) -> None:
    for args in (
        ["status", "1; DROP TABLE onboarding.tenancies"],
        ["onboard", "--council", "E09000012'; DROP TABLE x; --", "--service", "bin-collections"],
        ["onboard", "--council", "E09000012", "--service", HOSTILE_SERVICE],
    ):
        result = await cli(platform.slice, *args)
        assert result.returncode != 0, args
        assert "error" in result.stderr
    assert await platform.pool.fetchval("SELECT count(*) FROM onboarding.tenancies") >= 0


async def test_hostile_event_is_dead_lettered_and_creates_nothing(platform: Client) -> None:
    before = await databases_and_roles(platform)
    tenancy_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "attacker",
        "type": Topic.TENANCY_REGISTERED.event_type,
        "subject": tenancy_id,
        "time": "2026-11-22T12:00:00Z",
        "data": {
            "council": {"gss": "E09000012", "name": "Hackney", "nation": "England"},
            "service": {
                "id": HOSTILE_SERVICE,
                "name": "x",
                "owner_council": "E09000012",
                "migrations": [{"version": 1, "sql": "CREATE ROLE evil SUPERUSER"}],
            },
            "brand": {"name": "x", "colours": {"primary": "#000000"}},
        },
    }
    await platform.publish_raw(Topic.TENANCY_REGISTERED, json.dumps(event).encode(), key=tenancy_id)
    await drained(platform.slice)

    letters = await platform.pool.fetch(
        "SELECT error FROM isolation.dead_letters WHERE key = $1", tenancy_id
    )
    assert len(letters) == 1
    assert "data.service.id: String should match pattern" in letters[0]["error"]
    assert await databases_and_roles(platform) == before
