"""Worker schema migrations: applied once, in order, and cheap to ask for again."""

from __future__ import annotations

import uuid
from pathlib import Path

from shared import db
from tests.conftest import Servers


async def test_migrations_apply_once_and_pick_up_new_files(
    servers: Servers, tmp_path: Path
) -> None:
    dsn = db.with_database(servers.postgres_dsn, "m" + uuid.uuid4().hex[:12])
    await db.ensure_database(dsn)
    pool = await db.create_pool(dsn, max_size=2)
    try:
        (tmp_path / "001_things.sql").write_text("CREATE TABLE drill.things (id int);")
        assert await db.migrate(pool, "drill", tmp_path) == [-db.PLUMBING_REVISION, 1]
        assert await db.migrate(pool, "drill", tmp_path) == []

        (tmp_path / "002_more.sql").write_text("ALTER TABLE drill.things ADD COLUMN name text;")
        assert await db.migrate(pool, "drill", tmp_path) == [2]
        columns = await pool.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'drill' AND table_name = 'outbox'"
        )
        assert "caused_by" in {c["column_name"] for c in columns}
    finally:
        await pool.close()


async def test_a_session_lock_is_released_or_its_connection_dropped(servers: Servers) -> None:
    dsn = db.with_database(servers.postgres_dsn, "m" + uuid.uuid4().hex[:12])
    await db.ensure_database(dsn)
    # One connection, released without asyncpg's reset: only session_lock stands between a
    # lock taken here and the next user of the connection.
    pool = await db.create_pool(dsn, max_size=1)
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    try:
        async with pool.acquire() as conn, db.session_lock(conn, "drill"):
            assert await conn.fetchval(held) == 1
        assert await pool.fetchval(held) == 0

        killer = await db.connect(dsn)
        broken = False
        try:
            async with pool.acquire() as conn, db.session_lock(conn, "drill"):
                first = await conn.fetchval("SELECT pg_backend_pid()")
                # The connection breaks while the lock is held: the unlock cannot run.
                await killer.execute("SELECT pg_terminate_backend($1, 5000)", first)
        except Exception:  # whichever way asyncpg reports the lost connection
            broken = True
        assert broken
        await killer.close()
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != first
            assert await conn.fetchval(held) == 0
    finally:
        await pool.close()


async def test_only_pools_that_run_foreign_sql_reset_the_session(servers: Servers) -> None:
    dsn = db.with_database(servers.postgres_dsn, "m" + uuid.uuid4().hex[:12])
    await db.ensure_database(dsn)
    for foreign, expected in ((True, ""), (False, "left behind")):
        pool = await db.create_pool(dsn, max_size=1, runs_foreign_sql=foreign)
        try:
            await pool.execute("SET application_name = 'left behind'")
            assert await pool.fetchval("SHOW application_name") == expected
        finally:
            await pool.close()
