"""Isolation's subscribers: parse the event, run the use case in a unit of work, emit."""

from __future__ import annotations

from services.isolation import merge, offboarding, retirement, rollout, rotation
from services.isolation.databases import ServiceDatabases
from services.isolation.service import IsolationFailed, isolate
from services.isolation.settings import IsolationSettings
from shared.events import (
    CredentialsRotated,
    CredentialsRotationRequested,
    DataMoved,
    DataMoveFailed,
    DataMoveFailedData,
    DataMoveRequested,
    IsolationReady,
    IsolationRemoved,
    MigrationRequested,
    OffboardingRequested,
    PredecessorRetired,
    RetirementFailed,
    RetirementFailedData,
    RetirementRequested,
    StepFailed,
    StepFailedData,
    TenancyMigrated,
    TenancyRegistered,
)
from shared.topics import Topic
from shared.worker import Worker

SOURCE = "tenancy/isolation"


def register(worker: Worker, databases: ServiceDatabases, settings: IsolationSettings) -> None:
    worker.publishes(IsolationReady, StepFailed, IsolationRemoved, TenancyMigrated)
    worker.publishes(CredentialsRotated, DataMoved, DataMoveFailed)
    worker.publishes(PredecessorRetired, RetirementFailed)
    connection_limit, exports_dir = settings.tenant_connection_limit, settings.exports_dir

    @worker.subscriber(Topic.TENANCY_REGISTERED, concurrency=settings.tenancies_at_once)
    async def on_tenancy_registered(event: TenancyRegistered) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            try:
                ready = await isolate(
                    databases, event.subject, event.data.service, connection_limit
                )
            except IsolationFailed as failure:
                data = StepFailedData(step="isolation", reason=str(failure))
                tx.emit(StepFailed.new(source=SOURCE, subject=event.subject, data=data))
                return
            tx.emit(IsolationReady.new(source=SOURCE, subject=event.subject, data=ready))

    @worker.subscriber(Topic.OFFBOARDING_REQUESTED)
    async def on_offboarding_requested(event: OffboardingRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            removed = await offboarding.remove(
                databases, exports_dir, event.subject, event.data.service
            )
            tx.emit(IsolationRemoved.new(source=SOURCE, subject=event.subject, data=removed))

    @worker.subscriber(Topic.MIGRATION_REQUESTED)
    async def on_migration_requested(event: MigrationRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            result = await rollout.migrate(
                databases, event.subject, event.data, tx.conn, connection_limit
            )
            tx.emit(TenancyMigrated.new(source=SOURCE, subject=event.subject, data=result))

    @worker.subscriber(Topic.CREDENTIALS_ROTATION_REQUESTED)
    async def on_credentials_rotation_requested(event: CredentialsRotationRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            rotated = await rotation.rotate(databases, event.subject, event.data.service_id)
            if rotated is not None:
                tx.emit(CredentialsRotated.new(source=SOURCE, subject=event.subject, data=rotated))

    @worker.subscriber(Topic.DATA_MOVE_REQUESTED)
    async def on_data_move_requested(event: DataMoveRequested) -> None:
        # One at a time: the moves into one successor's tenancy share its key, and each
        # counts the target's rows before and after.
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            source = event.data.source
            try:
                moved = await merge.move(databases, source, event.subject, event.data.service)
            except merge.MoveFailed as failure:
                data = DataMoveFailedData(source=source, reason=str(failure))
                tx.emit(DataMoveFailed.new(source=SOURCE, subject=event.subject, data=data))
                return
            tx.emit(DataMoved.new(source=SOURCE, subject=event.subject, data=moved))

    @worker.subscriber(Topic.RETIREMENT_REQUESTED)
    async def on_retirement_requested(event: RetirementRequested) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            target, manifest = event.data.target, event.data.service
            try:
                retired = await retirement.retire(
                    databases, exports_dir, event.subject, target, manifest
                )
            except retirement.RetirementRefused as refusal:
                data = RetirementFailedData(reason=str(refusal))
                tx.emit(RetirementFailed.new(source=SOURCE, subject=event.subject, data=data))
                return
            tx.emit(PredecessorRetired.new(source=SOURCE, subject=event.subject, data=retired))
