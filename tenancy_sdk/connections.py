"""A small pool of connections per tenancy, each logged in as that tenancy's own role.

A service never holds a login that reaches more than one council's data: a bug in a query can
at worst read the tenancy it was asked for. Pools open lazily, so an idle council costs no
connection, and are replaced when the platform rotates the tenancy's password: a rotation is
announced by ``credentials.rotated``, and a login refused, or a session the platform ended, makes
the pool fetch the new password at once rather than wait for the event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from shared.db import Connection, Pool
from tenancy_sdk.credentials import CredentialSource
from tenancy_sdk.directory import Tenancy

T = TypeVar("T")

# A login refused (the password was rotated) or a session ended by the server (rotation ends
# the sessions of the old password): fetch the credentials again and retry once.
STALE_LOGIN_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
)
IDLE_CONNECTION_SECONDS = 60.0


@dataclass
class _Pool:
    pool: Pool
    credentials_version: int


class TenantPools:
    def __init__(self, credentials: CredentialSource, max_size: int = 4) -> None:
        self._credentials = credentials
        self._max_size = max_size
        self._pools: dict[str, _Pool] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def pool(self, tenancy: Tenancy, stale: Pool | None = None) -> Pool:
        """The tenancy's pool, opened with its current password; ``stale`` is one that was
        refused, to be replaced even if no rotation was announced yet."""
        entry = self._pools.get(tenancy.id)
        if entry is not None and _fresh(entry, tenancy, stale):
            return entry.pool
        async with self._locks.setdefault(tenancy.id, asyncio.Lock()):
            entry = self._pools.get(tenancy.id)
            if entry is not None and _fresh(entry, tenancy, stale):
                return entry.pool  # another request replaced it meanwhile
            login = await self._credentials.fetch(tenancy.id)
            pool = await asyncpg.create_pool(
                login.dsn,
                min_size=0,
                max_size=self._max_size,
                max_inactive_connection_lifetime=IDLE_CONNECTION_SECONDS,
            )
            self._pools[tenancy.id] = _Pool(pool, tenancy.credentials_version)
            if entry is not None:
                self._close_later(entry.pool)
            return pool

    @contextlib.asynccontextmanager
    async def connection(self, tenancy: Tenancy) -> AsyncIterator[Connection]:
        pool = await self.pool(tenancy)
        try:
            conn = await pool.acquire()
        except STALE_LOGIN_ERRORS:
            pool = await self.pool(tenancy, stale=pool)
            conn = await pool.acquire()
        try:
            yield conn
        finally:
            await pool.release(conn)

    async def run(self, tenancy: Tenancy, work: Callable[[Connection], Awaitable[T]]) -> T:
        """``work`` in one transaction; run again, once, on a fresh login if the session was
        ended under it (so ``work`` must be safe to repeat: give rows the caller's own ids)."""
        try:
            return await self._once(tenancy, work)
        except STALE_LOGIN_ERRORS:
            stale = self._pools.get(tenancy.id)
            await self.pool(tenancy, stale=stale.pool if stale else None)
            return await self._once(tenancy, work)

    async def _once(self, tenancy: Tenancy, work: Callable[[Connection], Awaitable[T]]) -> T:
        async with self.connection(tenancy) as conn, conn.transaction():
            return await work(conn)

    def drop(self, tenancy_id: str) -> None:
        """The tenancy left: its connections are closed and no new one is opened."""
        entry = self._pools.pop(tenancy_id, None)
        self._locks.pop(tenancy_id, None)
        if entry is not None:
            self._close_later(entry.pool)

    def _close_later(self, pool: Pool) -> None:
        # Requests still holding one of its connections finish first; then it is closed.
        task = asyncio.create_task(_close(pool))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        pools = [entry.pool for entry in self._pools.values()]
        self._pools.clear()
        await asyncio.gather(*(_close(p) for p in pools), *self._closing)


def _fresh(entry: _Pool, tenancy: Tenancy, stale: Pool | None) -> bool:
    return entry.pool is not stale and entry.credentials_version >= tenancy.credentials_version


async def _close(pool: Pool, grace: float = 10.0) -> None:
    try:
        await asyncio.wait_for(pool.close(), grace)
    except (TimeoutError, asyncpg.PostgresError, OSError):
        pool.terminate()
