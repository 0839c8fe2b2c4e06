"""The audit log: a hash chain that the database keeps append-only and `verify` checks."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared import audit, db
from tests.conftest import Servers

TENANCY = "6f1c2b9e-1d4a-4c55-9b0e-3a7d2f8e4c10"


@pytest.fixture
async def url(servers: Servers) -> str:
    dsn = db.with_database(servers.postgres_dsn, "audit_" + uuid.uuid4().hex[:12])
    await db.ensure_database(dsn)
    return dsn


@pytest.fixture
async def pool(url: str) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(url, max_size=5)
    try:
        await db.migrate(pool, "audit", audit.MIGRATIONS)
        yield pool
    finally:
        await pool.close()


async def fill(pool: db.Pool, count: int) -> list[audit.Entry]:
    written = []
    async with pool.acquire() as conn, conn.transaction():
        for n in range(count):
            entry = await audit.append(
                conn,
                actor="cli:alice",
                action="tenancy.onboard",
                tenancy_id=TENANCY if n % 2 else None,
                detail={"n": n, "council": "E09000012", "note": "café"},
            )
            written.append(entry)
    return written


async def tamper(pool: db.Pool, sql: str, *args: object) -> None:
    """Change the log as its owner can: with the append-only trigger switched off."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit.log DISABLE TRIGGER log_append_only")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE audit.log ENABLE TRIGGER log_append_only")


async def verify(pool: db.Pool, anchor: tuple[int, str] | None = None) -> audit.Verification:
    async with pool.acquire() as conn:
        return await audit.verify(conn, anchor=anchor)


async def test_entries_chain_from_genesis_and_read_back_as_written(pool: db.Pool) -> None:
    written = await fill(pool, 5)

    assert [e.seq for e in written] == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == audit.GENESIS
    for before, after in itertools.pairwise(written):
        assert after.prev_hash == before.hash
    async with pool.acquire() as conn:
        assert await audit.entries(conn) == written
        assert await audit.head(conn) == (5, written[-1].hash)
        assert await audit.entries(conn, since_seq=3) == written[3:]
        assert await audit.entries(conn, tenancy_id=TENANCY) == written[1::2]
        assert await audit.entries(conn, limit=2, latest=True) == written[3:]
    assert written[0].at.utcoffset() is not None


async def test_details_are_hashed_as_postgresql_stores_them(pool: db.Pool) -> None:
    # jsonb rewrites 1e+20 as 100000000000000000000 and drops -0.0's sign: re-read, the
    # detail must still hash to what was written.
    detail = {"big": 1e20, "neg": -0.0, "nested": {"b": [1.5, None, True], "a": "ü\n"}}
    async with pool.acquire() as conn, conn.transaction():
        entry = await audit.append(conn, actor="worker:metering", action="usage", detail=detail)
    async with pool.acquire() as conn:
        [read] = await audit.entries(conn)
    assert read == entry
    assert (await verify(pool)).ok


async def test_an_intact_log_verifies_across_chunks(pool: db.Pool) -> None:
    written = await fill(pool, 2500)

    result = await verify(pool)

    assert result == audit.Verification(True, 2500, None, None, (2500, written[-1].hash))


async def test_concurrent_appends_form_one_contiguous_chain(pool: db.Pool) -> None:
    async def one(n: int) -> audit.Entry:
        async with pool.acquire() as conn, conn.transaction():
            entry = await audit.append(conn, actor=f"worker:{n % 5}", action="service.register")
            await asyncio.sleep(0.001)  # hold the lock a moment, so appends really queue
            return entry

    written = await asyncio.gather(*(one(n) for n in range(50)))

    assert sorted(e.seq for e in written) == list(range(1, 51))
    result = await verify(pool)
    assert result.ok
    assert result.checked == 50


async def test_a_rolled_back_entry_leaves_no_trace_and_no_gap(pool: db.Pool) -> None:
    await fill(pool, 1)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await audit.append(conn, actor="worker:onboarding", action="tenancy.provisioned")
        await tx.rollback()  # the change it recorded failed
    async with pool.acquire() as conn, conn.transaction():
        after = await audit.append(conn, actor="worker:onboarding", action="tenancy.failed")

    assert after.seq == 2
    async with pool.acquire() as conn:
        assert [e.action for e in await audit.entries(conn)] == [
            "tenancy.onboard",
            "tenancy.failed",
        ]
    assert (await verify(pool)).ok


async def test_append_refuses_to_run_outside_a_read_committed_transaction(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(audit.AuditError, match="inside the transaction"):
            await audit.append(conn, actor="cli:alice", action="token.create")
        async with conn.transaction(isolation="repeatable_read"):
            with pytest.raises(audit.AuditError, match="READ COMMITTED"):
                await audit.append(conn, actor="cli:alice", action="token.create")
    async with pool.acquire() as conn:
        assert await audit.head(conn) == (0, audit.GENESIS)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit.log SET actor = 'cli:mallory'",
        "DELETE FROM audit.log WHERE seq = 2",
        "TRUNCATE audit.log",
    ],
)
async def test_the_database_refuses_to_change_or_remove_entries(pool: db.Pool, sql: str) -> None:
    await fill(pool, 3)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="the audit log is append-only"):
            await conn.execute(sql)
    assert (await verify(pool)).checked == 3


async def test_a_changed_entry_is_named(pool: db.Pool) -> None:
    await fill(pool, 10)
    await tamper(pool, "UPDATE audit.log SET detail = '{\"n\": 99}' WHERE seq = 4")

    result = await verify(pool)

    assert (result.ok, result.broken_seq, result.checked) == (False, 4, 3)
    assert result.reason == "entry 4: its hash does not match its content (changed)"


async def test_a_changed_entry_with_an_honest_new_hash_breaks_the_next_link(
    pool: db.Pool,
) -> None:
    written = await fill(pool, 10)
    old = written[3]
    new_detail = {"n": 99}
    new_hash = audit.entry_hash(
        old.prev_hash,
        old.seq,
        old.at,
        old.actor,
        old.action,
        old.tenancy_id,
        old.trace_id,
        new_detail,
    )
    await tamper(
        pool,
        "UPDATE audit.log SET detail = $1::text::jsonb, hash = $2 WHERE seq = 4",
        json.dumps(new_detail),
        new_hash,
    )

    result = await verify(pool)

    assert (result.broken_seq, result.checked) == (5, 4)
    assert result.reason == "entry 5: prev_hash does not match entry 4's hash"


async def test_a_deleted_entry_is_named_by_the_one_after_it(pool: db.Pool) -> None:
    await fill(pool, 10)
    await tamper(pool, "DELETE FROM audit.log WHERE seq = 6")

    result = await verify(pool)

    assert result.broken_seq == 7
    assert result.reason == "entry 7 follows entry 5: entry 6 was deleted"


async def test_a_replaced_first_entry_does_not_start_from_genesis(pool: db.Pool) -> None:
    written = await fill(pool, 3)
    first = written[0]
    forged_prev = "f" * 64
    forged = audit.entry_hash(
        forged_prev,
        1,
        first.at,
        first.actor,
        first.action,
        first.tenancy_id,
        first.trace_id,
        first.detail,
    )
    await tamper(
        pool, "UPDATE audit.log SET prev_hash = $1, hash = $2 WHERE seq = 1", forged_prev, forged
    )

    result = await verify(pool)

    assert (result.broken_seq, result.reason) == (1, "entry 1 does not start from the genesis hash")


async def test_entries_cut_off_the_end_are_caught_only_against_an_anchor(pool: db.Pool) -> None:
    await fill(pool, 10)
    async with pool.acquire() as conn:
        anchor = await audit.head(conn)
    await tamper(pool, "DELETE FROM audit.log WHERE seq > 8")

    assert (await verify(pool)).ok  # the shorter chain is still a valid chain
    result = await verify(pool, anchor=anchor)

    assert result.broken_seq == 9
    assert result.reason == "the log ends at entry 8: anchored entries 9 to 10 were deleted"


def invoke(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, in its own process: in-process it would also
    reconfigure this test session's logging."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", *args],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_reports_an_intact_trail_and_names_a_broken_one(
    pool: db.Pool, url: str
) -> None:
    written = await fill(pool, 5)

    intact = await asyncio.to_thread(invoke, url, "verify")
    assert intact.returncode == 0, intact.stderr
    assert f"audit trail intact: 5 entries, head 5 {written[-1].hash[:16]}" in intact.stdout

    listed = await asyncio.to_thread(invoke, url, "list", "--tenancy", TENANCY, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["seq"] for row in json.loads(listed.stdout)] == [2, 4]

    await tamper(pool, "UPDATE audit.log SET actor = 'cli:mallory' WHERE seq = 3")
    broken = await asyncio.to_thread(invoke, url, "verify", "--json")

    assert broken.returncode == 1, broken.stderr
    report = json.loads(broken.stdout)
    assert report["ok"] is False
    assert report["broken_seq"] == 3
    assert report["checked"] == 2
    assert "entry 3: its hash does not match" in report["reason"]
