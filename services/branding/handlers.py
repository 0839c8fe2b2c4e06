from __future__ import annotations

from services.branding.repository import BrandVersions
from services.branding.theme import canonical, content_hash
from shared.assets import AssetMissing, AssetStore
from shared.events import (
    BrandingApplied,
    BrandingAppliedData,
    StepFailed,
    StepFailedData,
    TenancyRegistered,
)
from shared.topics import Topic
from shared.worker import Worker

SOURCE = "tenancy/branding"


def register(worker: Worker, assets: AssetStore) -> None:
    worker.publishes(BrandingApplied, StepFailed)

    @worker.subscriber(Topic.TENANCY_REGISTERED)
    async def on_tenancy_registered(event: TenancyRegistered) -> None:
        brand = event.data.brand
        async with worker.uow.transaction(event) as tx:
            if tx.duplicate:
                return
            try:
                if brand.logo is not None:
                    assets.get(brand.logo)
            except AssetMissing as missing:
                data = StepFailedData(step="branding", reason=str(missing))
                tx.emit(StepFailed.new(source=SOURCE, subject=event.subject, data=data))
                return
            versions = BrandVersions(tx.conn)
            current = await versions.current(event.subject)
            if current is None:
                digest = content_hash(brand)
                number = await versions.add_and_make_current(
                    event.subject, canonical(brand), digest
                )
                current = (number, digest)
            applied = BrandingAppliedData(version=current[0], content_hash=current[1])
            tx.emit(BrandingApplied.new(source=SOURCE, subject=event.subject, data=applied))
