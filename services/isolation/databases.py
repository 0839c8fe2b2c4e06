"""Connections to the databases tenant data lives in: one per shared service, and one per
tenancy in the database tier. Each is locked down when first created.

Two logins reach them. The platform's (the isolation worker's own) creates databases, schemas
and roles. The service owner's runs the service's manifest SQL: a role of that service alone,
logging in with its own password, so nothing in that SQL can reach past the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.isolation.credentials import tenant_dsn
from services.isolation.plan import (
    database_setup,
    new_password,
    owner_access,
    owner_role,
    scram_verifier,
    service_owner,
    shared_database_setup,
)
from shared import db
from shared.identifiers import quote_ident, service_database_name


class ServiceDatabases:
    def __init__(self, server_dsn: str, platform_database: str, connections: int = 4) -> None:
        """``connections``: of each pool, the platform's and the owner's, to each service
        database; as many as tenancies are isolated at once."""
        self.server_dsn = server_dsn
        self._platform_database = platform_database
        self._connections = connections
        self._pools: dict[str, db.Pool] = {}
        self._owner_pools: dict[str, db.Pool] = {}
        self._owner_passwords: dict[str, str] = {}
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
                await db.ensure_database(self.dsn(name))
                conn = await db.connect(self.dsn(name))
                try:
                    await self._set_up(conn, name, name)
                finally:
                    await conn.close()
                self._pools[name] = await db.create_pool(self.dsn(name), max_size=self._connections)
        return self._pools[name], name

    async def owner_pool_for(self, service_id: str) -> db.Pool:
        """Connections to the service database that log in as the service's owner."""
        _, name = await self.pool_for(service_id)
        async with self._lock:
            if name not in self._owner_pools:
                self._owner_pools[name] = await db.create_pool(
                    self._owner_dsn(name, name),
                    max_size=self._connections,
                    runs_foreign_sql=True,
                )
        return self._owner_pools[name]

    @contextlib.asynccontextmanager
    async def tenant_database(self, service_id: str, database: str) -> AsyncIterator[db.Connection]:
        """A short-lived platform connection to a database-tier tenancy's own database,
        creating and locking it down first."""
        _, service_database = await self.pool_for(service_id)
        await db.ensure_database(self.dsn(database))
        conn = await db.connect(self.dsn(database))
        try:
            await self._set_up(conn, database, service_database)
            yield conn
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def as_owner(self, service_id: str, database: str) -> AsyncIterator[db.Connection]:
        """A short-lived owner's connection to a database-tier tenancy's own database."""
        _, service_database = await self.pool_for(service_id)
        conn = await db.connect(self._owner_dsn(service_database, database))
        try:
            yield conn
        finally:
            await conn.close()

    def _owner_dsn(self, service_database: str, database: str) -> str:
        owner = service_owner(service_database)
        return tenant_dsn(self.server_dsn, database, owner, self._owner_passwords[service_database])

    async def _set_up(self, conn: db.Connection, database: str, service_database: str) -> None:
        """Lock down a database holding a service's tenant data: the service's own, which its
        tenancies share, or a database-tier tenancy's."""
        shared = database == service_database
        statements = database_setup(database) + (shared_database_setup(database) if shared else [])
        async with db.session_lock(conn, "tenancy:setup"):
            for statement in statements:
                await conn.execute(statement)
            if shared:
                await self._ensure_owner(conn, database)
            for statement in owner_access(database, service_owner(service_database)):
                await conn.execute(statement)

    async def _ensure_owner(self, conn: db.Connection, service_database: str) -> None:
        """The service's owner role, with its password kept in the service database's
        ``tenancy_platform``, which only the platform reads."""
        owner = service_owner(service_database)
        async with conn.transaction():
            password = await conn.fetchval(
                "SELECT password FROM tenancy_platform.service_owner WHERE role_name = $1", owner
            )
            if password is None:
                password = new_password()
                exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", owner)
                for statement in owner_role(owner, scram_verifier(password), exists=bool(exists)):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO tenancy_platform.service_owner (role_name, password)"
                    " VALUES ($1, $2)",
                    owner,
                    password,
                )
        self._owner_passwords[service_database] = password

    async def drop_database(self, database: str) -> None:
        conn = await db.connect(self.dsn("postgres"))
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
        finally:
            await conn.close()

    async def close(self) -> None:
        for pool in [*self._owner_pools.values(), *self._pools.values()]:
            await pool.close()
        self._owner_pools.clear()
        self._pools.clear()
