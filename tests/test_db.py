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
