from __future__ import annotations

from services.branding.repository import BrandVersions
from services.branding.theme import canonical, content_hash
from shared.events import BrandingApplied, BrandingAppliedData, TenancyRegistered
from shared.topics import Topic
from shared.worker import Worker

SOURCE = "tenancy/branding"


def register(worker: Worker) -> None:
    @worker.subscriber(Topic.TENANCY_REGISTERED)
    async def on_tenancy_registered(event: TenancyRegistered) -> None:
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            versions = BrandVersions(tx.conn)
            current = await versions.current(event.subject)
            if current is None:
                digest = content_hash(event.data.brand)
                number = await versions.add_and_make_current(
                    event.subject, canonical(event.data.brand), digest
                )
                current = (number, digest)
            data = BrandingAppliedData(version=current[0], content_hash=current[1])
            tx.emit(BrandingApplied.new(source=SOURCE, subject=event.subject, data=data))
