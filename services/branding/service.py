"""Branding use cases; each runs inside a unit of work that the handler opened.

A theme version is validated by the same rules the CLI runs, its files are written to the
themes folder, and it is recorded and made current in one transaction. The ``current`` pointer
in the folder follows the database only after the commit (see :func:`point_current`).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.branding import domains, rules
from services.branding.domains import DomainCheck
from services.branding.repository import BrandVersions, Domains, Requests, Version
from services.branding.theme import canonical, content_hash, theme_files
from services.branding.theme_folder import ThemeFolder
from shared.assets import AssetMissing, AssetStore
from shared.db import Pool
from shared.events import (
    Brand,
    BrandingApplied,
    BrandingAppliedData,
    DomainClaim,
    StepFailed,
    StepFailedData,
)
from shared.outbox import Transaction

SOURCE = "tenancy/branding"


@dataclass(frozen=True)
class Publishing:
    """Where the branding worker reads logos from and writes themes to."""

    assets: AssetStore
    themes: ThemeFolder
    check_domain: DomainCheck


class BrandRefused(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


async def brand_new_tenancy(
    tx: Transaction, publishing: Publishing, tenancy_id: str, brand: Brand
) -> None:
    """The first theme of a registered tenancy, or a step failure naming every problem."""
    current = await BrandVersions(tx.conn).current(tenancy_id)
    if current is None:
        try:
            applied = await publish(tx, publishing, tenancy_id, brand)
        except BrandRefused as refused:
            data = StepFailedData(step="branding", reason=f"brand refused: {refused}")
            tx.emit(StepFailed.new(source=SOURCE, subject=tenancy_id, data=data))
            return
    else:
        applied = await applied_data(tx, publishing, tenancy_id, current)
    tx.emit(BrandingApplied.new(source=SOURCE, subject=tenancy_id, data=applied))


async def change_brand(
    tx: Transaction, publishing: Publishing, request_id: str, tenancy_id: str, brand: Brand
) -> None:
    requests = Requests(tx.conn)
    await requests.record(request_id, tenancy_id, "change")
    current = await BrandVersions(tx.conn).current(tenancy_id)
    if current is None:
        problem = "tenancy: has no theme yet; its brand can change once it is provisioned"
        await requests.resolve(request_id, tenancy_id, "refused", problems=[problem])
        return
    if current.content_hash == content_hash(brand):
        await requests.resolve(request_id, tenancy_id, "unchanged", current.version)
        return
    try:
        applied = await publish(tx, publishing, tenancy_id, brand)
    except BrandRefused as refused:
        await requests.resolve(request_id, tenancy_id, "refused", problems=refused.problems)
        return
    await requests.resolve(request_id, tenancy_id, "applied", applied.version)
    tx.emit(BrandingApplied.new(source=SOURCE, subject=tenancy_id, data=applied))


async def roll_back(
    tx: Transaction, publishing: Publishing, request_id: str, tenancy_id: str, version: int
) -> None:
    requests = Requests(tx.conn)
    await requests.record(request_id, tenancy_id, "rollback")
    versions = BrandVersions(tx.conn)
    target = await versions.get(tenancy_id, version)
    if target is None:
        known = [v.version for v in await versions.history(tenancy_id)]
        have = f"it has versions {known[0]} to {known[-1]}" if known else "it has no theme yet"
        problem = f"version: the tenancy has no version {version}; {have}"
        await requests.resolve(request_id, tenancy_id, "refused", problems=[problem])
        return
    if target.current:
        await requests.resolve(request_id, tenancy_id, "unchanged", version)
        return
    await versions.make_current(tenancy_id, version)
    await requests.resolve(request_id, tenancy_id, "applied", version)
    applied = await applied_data(tx, publishing, tenancy_id, target)
    tx.emit(BrandingApplied.new(source=SOURCE, subject=tenancy_id, data=applied))


async def publish(
    tx: Transaction, publishing: Publishing, tenancy_id: str, brand: Brand
) -> BrandingAppliedData:
    """Validate a brand, publish it as the next version and make that version current."""
    try:
        logo_content = publishing.assets.get(brand.logo) if brand.logo else None
    except AssetMissing as missing:
        raise BrandRefused([f"logo: {missing}"]) from missing
    logo, problems = rules.check_brand(brand, logo_content)
    if problems:
        raise BrandRefused(problems)
    versions = BrandVersions(tx.conn)
    version = await versions.next_number(tenancy_id)
    digest = content_hash(brand)
    domain = await claim_domain(tx, publishing, tenancy_id, brand.domain)
    files = theme_files(brand, logo, version, digest, domain)
    paths = publishing.themes.publish(tenancy_id, version, files)
    await versions.add(tenancy_id, version, canonical(brand), digest, paths)
    await versions.make_current(tenancy_id, version)
    return BrandingAppliedData(version=version, content_hash=digest, paths=paths, domain=domain)


async def applied_data(
    tx: Transaction, publishing: Publishing, tenancy_id: str, version: Version
) -> BrandingAppliedData:
    domain = await claim_domain(tx, publishing, tenancy_id, version.brand.get("domain"))
    return BrandingAppliedData(
        version=version.version,
        content_hash=version.content_hash,
        paths=version.paths,
        domain=domain,
    )


async def claim_domain(
    tx: Transaction, publishing: Publishing, tenancy_id: str, domain: str | None
) -> DomainClaim | None:
    if domain is None:
        return None
    domain = rules.normalise_domain(domain)
    records = Domains(tx.conn)
    token, verified = await records.claim(tenancy_id, domain)
    pending = domains.claim(domain, token, verified)
    if not verified and await publishing.check_domain(
        domain, pending.txt_record, pending.txt_value
    ):
        await records.mark_verified(tenancy_id, domain)
        return domains.claim(domain, token, True)
    return pending


async def point_current(pool: Pool, themes: ThemeFolder, tenancy_id: str) -> None:
    """Make the folder's ``current`` pointer agree with the committed current version; run after
    every event, duplicates included, so a crash between commit and pointer heals on redelivery."""
    async with pool.acquire() as conn:
        current = await BrandVersions(conn).current(tenancy_id)
    if current is not None:
        themes.point_current(tenancy_id, current.version)
    else:  # never published, or withdrawn
        themes.withdraw(tenancy_id)


async def withdraw_theme(tx: Transaction, tenancy_id: str) -> None:
    """A reorganised tenancy's theme is withdrawn: its council no longer exists, and the
    successor's tenancy shows the successor's own."""
    await BrandVersions(tx.conn).withdraw(tenancy_id)
