"""Credentials: an operator obtains a tenancy's connection string, and rotation makes the old
password useless at once, while no password ever appears in an event, an outbox row or a log."""

from __future__ import annotations

import json
import uuid
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
import structlog

from services.isolation.credentials import tenant_dsn
from services.isolation.databases import ServiceDatabases
from services.isolation.repository import Ledger
from services.isolation.rotation import rotate
from shared.identifiers import tenant_object_name
from shared.topics import Topic
from tests.harness import WORKERS, Client, cli, drained, events_on, onboarded

SERVICE = "credentials-drill"


@pytest.fixture(scope="module")
async def passwords_enforced(platform: Client) -> None:
    """Rotation can only be seen to work where the server checks tenant passwords; the
    embedded one does (stack/postgres.py trusts only the platform's superuser)."""
    assert await wrong_password_refused(platform), "the server lets tenant roles in unchecked"


async def wrong_password_refused(platform: Client) -> bool:
    role = "tenant_" + uuid.uuid4().hex
    await platform.pool.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right'")
    try:
        await (
            await asyncpg.connect(tenant_dsn(platform.slice.server_dsn, "postgres", role, "no"))
        ).close()
    except asyncpg.InvalidPasswordError:
        return True
    finally:
        await platform.pool.execute(f"DROP ROLE {role}")
    return False


def password_of(dsn: str) -> str:
    password = urlsplit(dsn).password
    assert password
    return unquote(password)


@pytest.mark.usefixtures("passwords_enforced")
async def test_operator_gets_a_working_dsn_and_rotation_refuses_the_old_one(
    platform: Client, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    (tenancy_id,) = await onboarded(platform, SERVICE, ("S12000014",))
    shown = await cli(platform.slice, "credentials", tenancy_id, "--json")
    assert shown.returncode == 0, shown.stderr
    old_dsn = json.loads(shown.stdout)["dsn"]
    plain = await cli(platform.slice, "credentials", tenancy_id)
    assert plain.stdout.strip() == old_dsn

    # A session opened with the old password, left open across the rotation.
    tenant = await asyncpg.connect(old_dsn)
    assert await tenant.fetchval("SELECT current_user") == tenant_object_name(tenancy_id)
    await tenant.execute("INSERT INTO notes (body) VALUES ('before the rotation')")

    # Every log line the in-process workers write while rotating, before any redaction.
    with structlog.testing.capture_logs() as logs:
        rotated = await cli(platform.slice, "credentials", tenancy_id, "--rotate", "--json")
        assert rotated.returncode == 0, rotated.stderr
        await drained(platform.slice)
    new_dsn = json.loads(rotated.stdout)["dsn"]
    assert new_dsn != old_dsn
    ended = (
        asyncpg.AdminShutdownError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.InterfaceError,
    )
    with pytest.raises(ended):
        await tenant.fetchval("SELECT 1")
    await tenant.close()

    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(old_dsn)
    tenant = await asyncpg.connect(new_dsn)
    try:
        assert await tenant.fetchval("SELECT current_user") == tenant_object_name(tenancy_id)
        assert await tenant.fetchval("SELECT count(*) FROM notes") == 1
    finally:
        await tenant.close()
    again = await cli(platform.slice, "credentials", tenancy_id, "--json")
    assert json.loads(again.stdout)["dsn"] == new_dsn

    # The rotation went through events, which name the login and where its secret is kept.
    requested = await events_on(platform.slice, Topic.CREDENTIALS_ROTATION_REQUESTED)
    done = await events_on(platform.slice, Topic.CREDENTIALS_ROTATED)
    mine = [json.loads(e["value"]) for e in requested + done if tenancy_id in e["value"]]
    assert sorted(e["type"].split(".")[-2] for e in mine) == ["rotated", "rotation_requested"]
    rotated_event = next(e for e in mine if e["type"].endswith("rotated.v1"))
    assert rotated_event["data"]["role"] == tenant_object_name(tenancy_id)
    assert rotated_event["data"]["credentials_ref"].endswith(f"/{tenancy_id}")
    assert any(entry["event"] == "credentials rotated" for entry in logs)

    # The DSN on stdout is the command's answer; everything else is scanned for the secrets.
    written = {
        f"kafka {topic}": "".join(e["value"] + json.dumps(e["headers"]) for e in events)
        for topic, events in (("requested", requested), ("rotated", done))
    }
    for schema in WORKERS:
        for table in ("outbox", "dead_letters"):
            rows = await platform.pool.fetch(f"SELECT payload, headers FROM {schema}.{table}")
            written[f"{schema}.{table}"] = "".join(
                str(r["payload"]) + json.dumps(r["headers"]) for r in rows
            )
    written["worker logs"] = "\n".join(repr(entry) for entry in logs)
    written["stdlib logs"] = caplog.text
    written["captured output"] = "".join(capfd.readouterr())
    written["cli stderr"] = "".join(r.stderr for r in (shown, plain, rotated, again))
    spans = platform.slice.root / "spans.jsonl"
    written["spans"] = spans.read_text() if spans.exists() else ""
    assert tenancy_id in written["isolation.outbox"]
    assert tenant_object_name(tenancy_id) in written["worker logs"]
    for password in (password_of(old_dsn), password_of(new_dsn)):
        assert [where for where, text in written.items() if password in text] == []


async def test_rotation_without_a_live_login_changes_nothing(platform: Client) -> None:
    (removed,) = await onboarded(platform, SERVICE, ("S12000017",))
    unknown = str(uuid.uuid4())
    databases = ServiceDatabases(platform.slice.server_dsn, platform.slice.name)
    try:
        pool, _ = await databases.pool_for(SERVICE)
        async with pool.acquire() as conn:
            await Ledger(conn).mark_removed(removed, {"reason": "test"})  # as offboarding does

        with structlog.testing.capture_logs() as logs:
            for tenancy_id in (removed, unknown):
                assert await rotate(databases, tenancy_id, SERVICE) is None

        assert [e["event"] for e in logs] == [
            "credentials not rotated: the tenancy has no live login"
        ] * 2
        async with pool.acquire() as conn:
            assert await Ledger(conn).get(unknown) is None
            entry = await Ledger(conn).get(removed)
            assert entry is not None
            assert entry.rotated_at is None
            assert await Ledger(conn).password(removed) is None
    finally:
        await databases.close()

    # The CLI says so itself, without asking the isolation worker for anything.
    refused = await cli(platform.slice, "credentials", removed, "--rotate")
    assert refused.returncode == 1
    assert "not isolated, or removed" in " ".join(refused.stderr.split())


async def test_unknown_or_malformed_tenancy_is_refused_clearly(platform: Client) -> None:
    unknown = str(uuid.uuid4())
    for args in ([unknown], [unknown, "--rotate"], [unknown, "--json"]):
        result = await cli(platform.slice, "credentials", *args)
        assert result.returncode == 1, args
        assert f"no tenancy {unknown}" in " ".join(result.stderr.split())
        assert result.stdout == ""
    malformed = await cli(platform.slice, "credentials", "not-a-tenancy")
    assert malformed.returncode != 0
    assert "is not a tenancy id" in malformed.stderr
