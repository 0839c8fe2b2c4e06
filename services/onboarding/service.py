"""Onboarding use cases; each runs inside a unit of work that the caller opened."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.onboarding import reorganisation_service
from services.onboarding.councils import CouncilRecord, CouncilRefused, CouncilRegister
from services.onboarding.domain import State
from services.onboarding.reorganisation_repository import MoveRepository
from services.onboarding.repository import CatalogueRepository, TenancyRepository
from shared import audit, metrics
from shared.catalogue import ServiceManifest
from shared.events import (
    Acceptance,
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
    # A council whose replacement is applied or scheduled would join only to be moved again.
    replaced = await reorganisation_service.joining_refusal(tx.conn, register, council)
    if replaced is not None:
        raise RequestRefused(replaced)
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
    accepted_by: Person,
    agreement_version: str | None = None,
    purchase_order: str | None = None,
) -> str:
    """Record an onboarding request durably and queue its event; returns the tenancy id.

    ``agreement_version`` is the version the person accepting was shown; None means the current
    one, which is what an operator accepting on the council's behalf agrees to."""
    council, manifest = await check_request(tx, register, council_code, service_id)
    current = manifest.agreement.version
    if agreement_version is not None and agreement_version != current:
        raise RequestRefused(
            f"acceptance.agreement_version: {manifest.id} asks joiners to accept version"
            f" {current} of {manifest.agreement.title!r}, not {agreement_version!r}"
        )
    tenancies = TenancyRepository(tx.conn)
    existing = await tenancies.live_tenancy_of(council.gss, manifest.id)
    if existing:
        raise RequestRefused(
            f"council: {council.name} already has tenancy {existing} in {manifest.id}"
        )
    tenancy_id = new_tenancy_id()
    acceptance = Acceptance(
        agreement_version=current,
        name=accepted_by.name,
        role=accepted_by.role,
        accepted_at=datetime.now(UTC),
    )
    data = OnboardingRequestedData(
        council=council.gss,
        service_id=manifest.id,
        contact=contact,
        brand=brand,
        purchase_order=purchase_order,
        acceptance=acceptance,
    )
    await tenancies.add_request(tenancy_id, council.gss, council.name, manifest.id, data)
    tx.emit(OnboardingRequested.new(source=source, subject=tenancy_id, data=data))
    return tenancy_id


@dataclass(frozen=True)
class Person:
    name: str
    role: str


def acceptance_refusal(request: OnboardingRequestedData, manifest: ServiceManifest) -> str | None:
    accepted = request.acceptance
    if accepted is None:
        return (
            f"acceptance: joining {manifest.id} needs acceptance of version"
            f" {manifest.agreement.version} of {manifest.agreement.title!r}"
        )
    if accepted.agreement_version != manifest.agreement.version:
        return (
            f"acceptance.agreement_version: version {accepted.agreement_version!r} was accepted;"
            f" {manifest.id} now asks for version {manifest.agreement.version}"
        )
    return None


def default_brand(council: CouncilRecord) -> Brand:
    return Brand(name=council.name, colours=Colours(primary="#0B0C0C"), logo_alt=council.name)


async def register_tenancy(
    tx: Transaction, register: CouncilRegister, event: OnboardingRequested
) -> None:
    request = event.data
    tenancies = TenancyRepository(tx.conn)
    try:
        council, manifest = await check_request(tx, register, request.council, request.service_id)
        refusal = acceptance_refusal(request, manifest)
        if refusal is not None:
            raise RequestRefused(refusal)
    except RequestRefused as refusal:
        await tenancies.add_request(
            event.subject, request.council, request.council, request.service_id, request
        )
        tenancy = await tenancies.lock(event.subject)
        assert tenancy is not None
        if tenancy.fail("request", str(refusal)):
            await tenancies.save(tenancy)
            tx.emit(_failed(tenancy.id, "request", str(refusal)))
            await record(tx, "tenancy.refused", tenancy.id, reason=str(refusal)[:500])
        return
    await tenancies.add_request(event.subject, council.gss, council.name, manifest.id, request)
    tenancy = await tenancies.lock(event.subject)
    assert tenancy is not None
    if tenancy.state is not State.REQUESTED:
        return
    tenancy.register()
    await tenancies.save(tenancy)
    await record(tx, "tenancy.registered", tenancy.id, council=council.gss, service=manifest.id)
    _emit_registered(tx, tenancy.id, council, manifest, request.brand, request.purchase_order)


def _emit_registered(
    tx: Transaction,
    tenancy_id: str,
    council: CouncilRecord,
    manifest: ServiceManifest,
    brand: Brand | None,
    purchase_order: str | None,
) -> None:
    data = TenancyRegisteredData(
        council=Council(
            gss=council.gss, name=council.name, nation=council.nation, slug=council.slug or None
        ),
        service=manifest,
        brand=brand or default_brand(council),
        purchase_order=purchase_order,
    )
    tx.emit(TenancyRegistered.new(source=SOURCE, subject=tenancy_id, data=data))


async def retry(tx: Transaction, register: CouncilRegister, tenancy_id: str) -> None:
    """Provision a failed tenancy again: it is registered anew (with the service's current
    manifest) and every step runs again; the steps are idempotent, so what was done stays."""
    tenancies = TenancyRepository(tx.conn)
    tenancy = await tenancies.lock(tenancy_id)
    if tenancy is None:
        raise RequestRefused(f"tenancy: no tenancy {tenancy_id}")
    refusal = tenancy.retry_refusal()
    if refusal is not None:
        raise RequestRefused(refusal)
    manifest = await CatalogueRepository(tx.conn).get(tenancy.service_id)
    if manifest is None:
        raise RequestRefused(f"service: {tenancy.service_id!r} is no longer in the catalogue")
    stored = await tenancies.registration(tenancy_id)
    assert stored is not None
    council = register.resolve(stored["council_gss"])
    brand = Brand.model_validate(stored["brand"]) if stored["brand"] else None
    tenancy.retry()
    await tenancies.save(tenancy)
    await tenancies.count_retry(tenancy_id)
    _emit_registered(tx, tenancy_id, council, manifest, brand, stored["purchase_order"])


async def step_completed(
    tx: Transaction, tenancy_id: str, step: Step, detail: dict[str, object]
) -> None:
    tenancies = TenancyRepository(tx.conn)
    tenancy = await tenancies.lock(tenancy_id)
    if tenancy is None:
        return
    now_active = tenancy.complete(step)
    await tenancies.save(tenancy, changed_step=step, detail=detail)
    await record(tx, f"tenancy.{step}.done", tenancy.id)
    if now_active:
        data = TenancyProvisionedData(council=tenancy.council_gss, service_id=tenancy.service_id)
        tx.emit(TenancyProvisioned.new(source=SOURCE, subject=tenancy.id, data=data))
        await record(tx, "tenancy.active", tenancy.id)
        # A successor's tenancy made by a reorganisation now takes its predecessors' data.
        await reorganisation_service.target_active(tx, tenancy.id)
        took = await tx.conn.fetchval(
            "SELECT extract(epoch FROM active_at - requested_at)::float8"
            " FROM onboarding.tenancies WHERE id = $1",
            tenancy.id,
        )
        if took is not None:
            metrics.TIME_TO_ACTIVE.observe(took)


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
    await record(tx, f"tenancy.{step}.failed", tenancy.id, reason=reason[:500])
    if first_failure:
        tx.emit(_failed(tenancy.id, step, reason))
        await reorganisation_service.target_failed(tx, tenancy.id, reason)


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
    if await MoveRepository(tx.conn).in_progress(tenancy_id):
        raise RequestRefused(
            f"tenancy {tenancy_id} is being moved into its successor's in a reorganisation;"
            " offboard it if the move fails"
        )
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
        await record(tx, "tenancy.offboarded", tenancy.id, archive_sha256=removed.archive_sha256)


async def record(tx: Transaction, action: str, tenancy_id: str, **detail: str) -> None:
    """A lifecycle change into the audit trail, in the transaction that makes it."""
    await audit.append(
        tx.conn, actor="worker:onboarding", action=action, tenancy_id=tenancy_id, detail=detail
    )


def _failed(tenancy_id: str, step: str, reason: str) -> TenancyFailed:
    return TenancyFailed.new(
        source=SOURCE, subject=tenancy_id, data=TenancyFailedData(step=step, reason=reason)
    )
