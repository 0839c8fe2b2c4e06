"""Onboarding use cases; each runs inside a unit of work that the caller opened."""

from __future__ import annotations

import uuid

from services.onboarding.councils import CouncilRecord, CouncilRefused, CouncilRegister
from services.onboarding.domain import State
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from shared.catalogue import ServiceManifest
from shared.events import (
    Brand,
    Colours,
    Contact,
    Council,
    IsolationRemovedData,
    OffboardingRequested,
    OffboardingRequestedData,
    OnboardingRequested,
    OnboardingRequestedData,
    Step,
    TenancyFailed,
    TenancyFailedData,
    TenancyOffboarded,
    TenancyOffboardedData,
    TenancyProvisioned,
    TenancyProvisionedData,
    TenancyRegistered,
    TenancyRegisteredData,
)
from shared.identifiers import new_tenancy_id
from shared.outbox import Transaction

SOURCE = "tenancy/onboarding"


class RequestRefused(ValueError):
    """A request that cannot be accepted; the message is written for the person who asked."""


async def check_request(
    tx: Transaction, register: CouncilRegister, council_code: str, service_id: str
) -> tuple[CouncilRecord, ServiceManifest]:
    try:
        council = register.resolve(council_code)
    except CouncilRefused as refusal:
        raise RequestRefused(str(refusal)) from refusal
    manifest = await CatalogueRepository(tx.conn).get(service_id)
    if manifest is None:
        known = ", ".join(m.id for m in await CatalogueRepository(tx.conn).list()) or "none yet"
        raise RequestRefused(
            f"service: {service_id!r} is not in the catalogue (services available: {known})"
        )
    return council, manifest


async def accept_request(
    tx: Transaction,
    register: CouncilRegister,
    *,
    council_code: str,
    service_id: str,
    contact: Contact | None,
    brand: Brand | None,
    source: str,
    purchase_order: str | None = None,
) -> str:
    """Record an onboarding request durably and queue its event; returns the tenancy id."""
    council, manifest = await check_request(tx, register, council_code, service_id)
    tenancies = TenancyRepository(tx.conn)
    existing = await tenancies.live_tenancy_of(council.gss, manifest.id)
    if existing:
        raise RequestRefused(
            f"council: {council.name} already has tenancy {existing} in {manifest.id}"
        )
    tenancy_id = new_tenancy_id()
    await tenancies.add_request(
        tenancy_id,
        council.gss,
        council.name,
        manifest.id,
        contact.model_dump(mode="json") if contact else {},
        brand.model_dump(mode="json") if brand else None,
    )
    data = OnboardingRequestedData(
        council=council.gss,
        service_id=manifest.id,
        contact=contact,
        brand=brand,
        purchase_order=purchase_order,
    )
    tx.emit(OnboardingRequested.new(source=source, subject=tenancy_id, data=data))
    return tenancy_id


def default_brand(council: CouncilRecord) -> Brand:
    return Brand(name=council.name, colours=Colours(primary="#0B0C0C"), logo_alt=council.name)


async def register_tenancy(
    tx: Transaction, register: CouncilRegister, event: OnboardingRequested
) -> None:
    request = event.data
    tenancies = TenancyRepository(tx.conn)
    try:
        council, manifest = await check_request(tx, register, request.council, request.service_id)
    except RequestRefused as refusal:
        await tenancies.add_request(
            event.subject,
            request.council,
            request.council,
            request.service_id,
            request.contact.model_dump(mode="json") if request.contact else {},
            None,
        )
        tenancy = await tenancies.lock(event.subject)
        assert tenancy is not None
        if tenancy.fail("request", str(refusal)):
            await tenancies.save(tenancy)
            tx.emit(_failed(tenancy.id, "request", str(refusal)))
        return
    await tenancies.add_request(
        event.subject,
        council.gss,
        council.name,
        manifest.id,
        request.contact.model_dump(mode="json") if request.contact else {},
        request.brand.model_dump(mode="json") if request.brand else None,
    )
    tenancy = await tenancies.lock(event.subject)
    assert tenancy is not None
    if tenancy.state is not State.REQUESTED:
        return
    tenancy.register()
    await tenancies.save(tenancy)
    data = TenancyRegisteredData(
        council=Council(gss=council.gss, name=council.name, nation=council.nation),
        service=manifest,
        brand=request.brand or default_brand(council),
        purchase_order=request.purchase_order,
    )
    tx.emit(TenancyRegistered.new(source=SOURCE, subject=tenancy.id, data=data))


async def step_completed(
    tx: Transaction, tenancy_id: str, step: Step, detail: dict[str, object]
) -> None:
    tenancies = TenancyRepository(tx.conn)
    tenancy = await tenancies.lock(tenancy_id)
    if tenancy is None:
        return
    now_active = tenancy.complete(step)
    await tenancies.save(tenancy, changed_step=step, detail=detail)
    if now_active:
        data = TenancyProvisionedData(council=tenancy.council_gss, service_id=tenancy.service_id)
        tx.emit(TenancyProvisioned.new(source=SOURCE, subject=tenancy.id, data=data))


async def fail_if_known(tx: Transaction, subject: str, reason: str) -> None:
    """An event of a tenancy that onboarding could not process fails that tenancy visibly."""
    try:
        tenancy_id = str(uuid.UUID(subject))
    except ValueError:
        return
    await step_failed(tx, tenancy_id, "onboarding", reason)


async def step_failed(tx: Transaction, tenancy_id: str, step: str, reason: str) -> None:
    tenancies = TenancyRepository(tx.conn)
    tenancy = await tenancies.lock(tenancy_id)
    if tenancy is None:
        return
    first_failure = tenancy.fail(step, reason)
    await tenancies.save(tenancy, changed_step=step, detail={"reason": reason})
    if first_failure:
        tx.emit(_failed(tenancy.id, step, reason))


async def request_offboarding(
    tx: Transaction, tenancy_id: str, source: str, reason: str = ""
) -> None:
    """Record that a council leaves its service and queue the request to export and remove
    its data; refused unless the tenancy is active or failed."""
    tenancies = TenancyRepository(tx.conn)
    tenancy = await tenancies.lock(tenancy_id)
    if tenancy is None:
        raise RequestRefused(f"tenancy: no tenancy {tenancy_id}")
    refusal = tenancy.offboarding_refusal()
    if refusal is not None:
        raise RequestRefused(refusal)
    manifest = await CatalogueRepository(tx.conn).get(tenancy.service_id)
    if manifest is None:
        raise RequestRefused(f"service: {tenancy.service_id!r} is no longer in the catalogue")
    tenancy.start_offboarding()
    await tenancies.save_state(tenancy)
    data = OffboardingRequestedData(service=manifest, reason=reason)
    tx.emit(OffboardingRequested.new(source=source, subject=tenancy.id, data=data))


async def isolation_removed(
    tx: Transaction, tenancy_id: str, removed: IsolationRemovedData
) -> None:
    tenancies = TenancyRepository(tx.conn)
    tenancy = await tenancies.lock(tenancy_id)
    if tenancy is None:
        return
    if tenancy.offboarded(removed.archive, removed.archive_sha256):
        await tenancies.save_state(tenancy)
        data = TenancyOffboardedData(archive=removed.archive, archive_sha256=removed.archive_sha256)
        tx.emit(TenancyOffboarded.new(source=SOURCE, subject=tenancy.id, data=data))


def _failed(tenancy_id: str, step: str, reason: str) -> TenancyFailed:
    return TenancyFailed.new(
        source=SOURCE, subject=tenancy_id, data=TenancyFailedData(step=step, reason=reason)
    )
