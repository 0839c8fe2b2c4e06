"""Branding's subscribers: parse the event, run the use case in a unit of work, emit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.branding import service
from services.branding.service import Publishing
from shared.events import (
    BrandChangeRequested,
    BrandingApplied,
    BrandRollbackRequested,
    CloudEvent,
    StepFailed,
    TenancyRegistered,
    TenancyReorganised,
)
from shared.outbox import Transaction
from shared.topics import Topic
from shared.worker import Worker


def register(worker: Worker, publishing: Publishing) -> None:
    worker.publishes(BrandingApplied, StepFailed)

    async def handle(event: CloudEvent, use_case: Callable[[Transaction], Awaitable[None]]) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await use_case(tx)
        # Duplicates too: the pointer may have missed a commit that a crash interrupted.
        await service.point_current(worker.pool, publishing.themes, event.subject)

    @worker.subscriber(Topic.TENANCY_REGISTERED)
    async def on_tenancy_registered(event: TenancyRegistered) -> None:
        brand = event.data.brand
        await handle(
            event, lambda tx: service.brand_new_tenancy(tx, publishing, event.subject, brand)
        )

    @worker.subscriber(Topic.BRAND_CHANGE_REQUESTED)
    async def on_brand_change_requested(event: BrandChangeRequested) -> None:
        brand, request_id = event.data.brand, str(event.id)
        await handle(
            event,
            lambda tx: service.change_brand(tx, publishing, request_id, event.subject, brand),
        )

    @worker.subscriber(Topic.BRAND_ROLLBACK_REQUESTED)
    async def on_brand_rollback_requested(event: BrandRollbackRequested) -> None:
        version, request_id = event.data.version, str(event.id)
        await handle(
            event, lambda tx: service.roll_back(tx, publishing, request_id, event.subject, version)
        )

    @worker.subscriber(Topic.TENANCY_REORGANISED)
    async def on_tenancy_reorganised(event: TenancyReorganised) -> None:
        await handle(event, lambda tx: service.withdraw_theme(tx, event.subject))
