"""Onboarding's subscribers: parse the event, run the use case in a unit of work, emit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.onboarding import reorganisation_service, retirement_service, service
from services.onboarding.councils import CouncilRegister
from shared.events import (
    BrandingApplied,
    CloudEvent,
    DataMoved,
    DataMoveFailed,
    DataMoveRequested,
    IsolationReady,
    IsolationRemoved,
    MeteringEnabled,
    MoveRequested,
    OffboardingRequested,
    OnboardingRequested,
    PredecessorRetired,
    RetirementFailed,
    RetirementRequested,
    Step,
    StepFailed,
    TenancyFailed,
    TenancyOffboarded,
    TenancyProvisioned,
    TenancyRegistered,
    TenancyReorganised,
)
from shared.topics import Topic
from shared.worker import Worker


def register(worker: Worker, councils: Callable[[], CouncilRegister]) -> None:
    worker.publishes(TenancyRegistered, TenancyProvisioned, TenancyFailed)
    worker.publishes(OffboardingRequested, TenancyOffboarded)
    worker.publishes(MoveRequested, DataMoveRequested, TenancyReorganised, RetirementRequested)

    async def complete(event: CloudEvent, step: Step, detail: dict[str, Any]) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await service.step_completed(tx, event.subject, step, detail)

    @worker.subscriber(Topic.ONBOARDING_REQUESTED)
    async def on_onboarding_requested(event: OnboardingRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await service.register_tenancy(tx, councils(), event)

    @worker.subscriber(Topic.ISOLATION_READY)
    async def on_isolation_ready(event: IsolationReady) -> None:
        detail = event.data.model_dump(mode="json", exclude={"migrations_applied"})
        await complete(event, "isolation", detail)

    @worker.subscriber(Topic.BRANDING_APPLIED)
    async def on_branding_applied(event: BrandingApplied) -> None:
        await complete(event, "branding", event.data.model_dump(mode="json"))

    @worker.subscriber(Topic.METERING_ENABLED)
    async def on_metering_enabled(event: MeteringEnabled) -> None:
        await complete(event, "metering", event.data.model_dump(mode="json"))

    @worker.subscriber(Topic.STEP_FAILED)
    async def on_step_failed(event: StepFailed) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await service.step_failed(tx, event.subject, event.data.step, event.data.reason)

    @worker.subscriber(Topic.ISOLATION_REMOVED)
    async def on_isolation_removed(event: IsolationRemoved) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await service.isolation_removed(tx, event.subject, event.data)

    # Council reorganisation (issue 18): every event is keyed by the successor's tenancy.
    @worker.subscriber(Topic.MOVE_REQUESTED)
    async def on_move_requested(event: MoveRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await reorganisation_service.move_requested(tx, event.subject, event.data)

    @worker.subscriber(Topic.DATA_MOVED)
    async def on_data_moved(event: DataMoved) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await reorganisation_service.data_moved(tx, event.subject, event.data)

    @worker.subscriber(Topic.DATA_MOVE_FAILED)
    async def on_data_move_failed(event: DataMoveFailed) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await reorganisation_service.data_move_failed(
                    tx, event.subject, event.data.source, event.data.reason
                )

    # A settled predecessor's retirement: every event is keyed by the predecessor's tenancy.
    @worker.subscriber(Topic.PREDECESSOR_RETIRED)
    async def on_predecessor_retired(event: PredecessorRetired) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await retirement_service.predecessor_retired(tx, event.subject, event.data)

    @worker.subscriber(Topic.RETIREMENT_FAILED)
    async def on_retirement_failed(event: RetirementFailed) -> None:
        async with worker.uow.transaction(event) as tx:
            if not tx.duplicate:
                await retirement_service.retirement_failed(tx, event.subject, event.data.reason)
