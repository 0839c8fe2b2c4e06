from __future__ import annotations

from services.metering.repository import Meters
from shared.events import MeteringEnabled, MeteringEnabledData, TenancyRegistered
from shared.topics import Topic
from shared.worker import Worker

SOURCE = "tenancy/metering"


def register(worker: Worker) -> None:
    worker.publishes(MeteringEnabled)

    @worker.subscriber(Topic.TENANCY_REGISTERED)
    async def on_tenancy_registered(event: TenancyRegistered) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            service = event.data.service
            await Meters(tx.conn).open(event.subject, service.id, service.meters)
            data = MeteringEnabledData(meters=[m.key for m in service.meters])
            tx.emit(MeteringEnabled.new(source=SOURCE, subject=event.subject, data=data))
