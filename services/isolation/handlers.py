from __future__ import annotations

from services.isolation.service import IsolationFailed, ServiceDatabases, isolate
from shared.events import IsolationReady, StepFailed, StepFailedData, TenancyRegistered
from shared.topics import Topic
from shared.worker import Worker

SOURCE = "tenancy/isolation"


def register(worker: Worker, databases: ServiceDatabases, connection_limit: int) -> None:
    worker.publishes(IsolationReady, StepFailed)

    @worker.subscriber(Topic.TENANCY_REGISTERED)
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
