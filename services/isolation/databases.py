"""Connections to the databases tenant data lives in: one per shared service, and one per
tenancy in the database tier. Each is locked down when first created."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.isolation.plan import database_setup, shared_database_setup
from shared import db
from shared.identifiers import service_database_name


class ServiceDatabases:
    def __init__(self, server_dsn: str, platform_database: str) -> None:
        self.server_dsn = server_dsn
        self._platform_database = platform_database
        self._pools: dict[str, db.Pool] = {}
        self._lock = asyncio.Lock()

    def name_for(self, service_id: str) -> str:
        return service_database_name(self._platform_database, service_id)

    def dsn(self, database: str) -> str:
        return db.with_database(self.server_dsn, database)

    async def pool_for(self, service_id: str) -> tuple[db.Pool, str]:
        """The service database's pool, creating and locking down the database on first use."""
        name = self.name_for(service_id)
        async with self._lock:
            if name not in self._pools:
                await self.prepare(name, shared=True)
                self._pools[name] = await db.create_pool(
                    self.dsn(name), max_size=4, runs_foreign_sql=True
                )
        return self._pools[name], name

    async def prepare(self, database: str, *, shared: bool = False) -> None:
        """Lock a database down; one that tenancies ``shared`` also gets their group role."""
        await db.ensure_database(self.dsn(database))
        conn = await db.connect(self.dsn(database))
        statements = database_setup(database) + (shared_database_setup(database) if shared else [])
        try:
            async with db.session_lock(conn, "tenancy:setup"):
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def tenant_database(self, database: str) -> AsyncIterator[db.Connection]:
        """A short-lived connection to a database-tier tenancy's own database."""
        await self.prepare(database)
        conn = await db.connect(self.dsn(database))
        try:
            yield conn
        finally:
            await conn.close()

    async def drop_database(self, database: str) -> None:
        conn = await db.connect(self.dsn("postgres"))
        try:
            from shared.identifiers import quote_ident

            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
        finally:
            await conn.close()

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()
