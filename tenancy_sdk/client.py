"""The one object a shared service holds: which tenancy a request is for, that tenancy's
connections and theme, its usage, and hooks for tenancies arriving and leaving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

from aiokafka import AIOKafkaProducer

from shared.db import Connection
from shared.topics import Topic
from tenancy_sdk.connections import TenantPools
from tenancy_sdk.credentials import CredentialSource, PlatformCredentials
from tenancy_sdk.directory import Change, Directory, Tenancy
from tenancy_sdk.lifecycle import LifecycleFeed
from tenancy_sdk.settings import SdkSettings
from tenancy_sdk.snapshot import FileSnapshots, NoSnapshots, SnapshotStore
from tenancy_sdk.theme import Theme, load_theme
from tenancy_sdk.usage import UsageRelay

T = TypeVar("T")
Hook = Callable[[Tenancy], Awaitable[None]]


class NotServed(LookupError):
    """No tenancy of this service answers to the request, or it is not (or no longer) served;
    ``tenancy`` is the one it names, if any, so a page can say which council left."""

    def __init__(self, tenancy: Tenancy | None) -> None:
        self.tenancy = tenancy
        super().__init__("no tenancy" if tenancy is None else f"tenancy {tenancy.id} not served")


@dataclass(frozen=True)
class Resolved:
    tenancy: Tenancy
    # The part of the path that named the tenancy: "/hackney", or "" on its own domain.
    prefix: str

    def url(self, path: str) -> str:
        return self.prefix + path


class TenancyClient:
    def __init__(
        self,
        settings: SdkSettings,
        *,
        credentials: CredentialSource | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.settings = settings
        self.service_id = settings.tenancy_service_id
        self.themes_dir: Path = settings.themes_dir
        self._own_credentials = credentials is None
        self._credentials = credentials or PlatformCredentials(
            settings.tenancy_api_url,
            self.service_id,
            settings.tenancy_service_token.get_secret_value(),
        )
        self._snapshots = snapshots or (
            FileSnapshots(settings.tenancy_state_file)
            if settings.tenancy_state_file
            else NoSnapshots()
        )
        restored = self._snapshots.load()
        self._restored = restored
        self.directory = Directory(self.service_id, restored.tenancies if restored else [])
        self.pools = TenantPools(self._credentials, settings.tenancy_pool_size)
        self._arrival: list[Hook] = []
        self._departure: list[Hook] = []
        self._relay_task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._relay: UsageRelay | None = None
        self._feed: LifecycleFeed | None = None

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Returns once the directory holds every lifecycle event published before."""
        settings = self.settings
        # aiokafka's clients belong to the running loop: made here, not in __init__.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, acks="all"
        )
        self._relay = UsageRelay(
            self._producer,
            settings.topic(Topic.USAGE_RECORDED.value),
            self.service_id,
            self.pools,
            self.directory.tenancies,
            settings.tenancy_usage_sweep_seconds,
        )
        self._feed = LifecycleFeed(
            settings.kafka_bootstrap_servers,
            settings.topic_prefix,
            self.directory,
            self._snapshots,
            self._changed,
            settings.kafka_fetch_max_wait_ms,
        )
        await self._producer.start()
        await self._feed.start(self._restored)
        self._relay_task = asyncio.create_task(self._relay.run())

    async def stop(self) -> None:
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
        if self._feed is not None:
            await self._feed.stop()
        await self.pools.close()
        if self._producer is not None:
            await self._producer.stop()
        if self._own_credentials and isinstance(self._credentials, PlatformCredentials):
            await self._credentials.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- hooks -------------------------------------------------------------------------------

    def on_arrival(self, hook: Hook) -> Hook:
        """``@client.on_arrival``: called when a tenancy becomes served (provisioned)."""
        self._arrival.append(hook)
        return hook

    def on_departure(self, hook: Hook) -> Hook:
        """``@client.on_departure``: called when a tenancy stops being served (offboarding);
        its connections are already closed."""
        self._departure.append(hook)
        return hook

    async def _changed(self, tenancy: Tenancy, changes: list[Change]) -> None:
        if Change.LEFT in changes:
            self.pools.drop(tenancy.id)
            for hook in self._departure:
                await hook(tenancy)
        if Change.ARRIVED in changes:
            for hook in self._arrival:
                await hook(tenancy)

    # -- requests ----------------------------------------------------------------------------

    def resolve(self, host: str, path: str) -> Resolved:
        """The tenancy a request is for: by its verified custom domain, else by the council's
        slug as the path's first segment (``/hackney/...``). Raises :class:`NotServed`."""
        name = host.rsplit(":", 1)[0].lower() if host.count(":") <= 1 else host.lower()
        tenancy = self.directory.by_domain(name)
        prefix = ""
        if tenancy is None:
            slug = path.lstrip("/").split("/", 1)[0]
            tenancy = self.directory.by_slug(slug)
            prefix = f"/{slug}"
        if tenancy is None or not tenancy.serving:
            raise NotServed(tenancy)
        return Resolved(tenancy, prefix)

    def tenancies(self) -> list[Tenancy]:
        return [t for t in self.directory.tenancies() if t.serving]

    def theme(self, tenancy: Tenancy) -> Theme | None:
        return load_theme(self.themes_dir, tenancy.theme) if tenancy.theme else None

    def connection(self, tenancy: Tenancy) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection logged in as the tenancy's own role, from its pool."""
        return self.pools.connection(tenancy)

    async def run(self, tenancy: Tenancy, work: Callable[[Connection], Awaitable[T]]) -> T:
        """``work(conn)`` in one transaction as the tenancy's role; usage it records is sent
        once it commits. Run again, once, if a password rotation ended the session under it,
        so ``work`` must be safe to repeat (rows with the caller's own ids)."""
        result = await self.pools.run(tenancy, work)
        if self._relay is not None:
            self._relay.wake(tenancy)
        return result

    async def send_usage(self, tenancy: Tenancy) -> int:
        """Publish the tenancy's pending usage now; the number of events sent."""
        if self._relay is None:
            raise RuntimeError("the client is not started")
        return await self._relay.send(tenancy)
