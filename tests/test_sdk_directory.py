"""The SDK's read model, without Kafka: lifecycle events in any order give the same tenancies;
resolving by slug and verified domain; hooks fire once; the snapshot comes back as it was."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from services.branding.domains import claim
from shared.catalogue import load_catalogue
from shared.events import (
    Brand,
    BrandingApplied,
    BrandingAppliedData,
    CloudEvent,
    Colours,
    Council,
    CredentialsRotated,
    CredentialsRotatedData,
    IsolationReady,
    IsolationReadyData,
    OffboardingRequested,
    OffboardingRequestedData,
    TenancyOffboarded,
    TenancyOffboardedData,
    TenancyProvisioned,
    TenancyProvisionedData,
    TenancyRegistered,
    TenancyRegisteredData,
    TenancyReorganised,
    TenancyReorganisedData,
    ThemePaths,
)
from shared.settings import REPO_ROOT
from tenancy_sdk import NotServed, TenancyClient
from tenancy_sdk.directory import Change, Directory
from tenancy_sdk.settings import SdkSettings
from tenancy_sdk.snapshot import FileSnapshots, Snapshot

MANIFESTS = {m.id: m for m in load_catalogue(REPO_ROOT / "catalogue")}
SERVICE = "bin-collections"
SHA = "a" * 64


def registered(tenancy_id: str, slug: str = "hackney", service: str = SERVICE) -> CloudEvent:
    data = TenancyRegisteredData(
        council=Council(
            gss="E09000012", name="London Borough of Hackney", nation="England", slug=slug
        ),
        service=MANIFESTS[service],
        brand=Brand(name="London Borough of Hackney", colours=Colours(primary="#00664F")),
    )
    return TenancyRegistered.new(source="t", subject=tenancy_id, data=data)


def ready(tenancy_id: str, service: str = SERVICE) -> CloudEvent:
    data = IsolationReadyData(
        service_id=service,
        tier=MANIFESTS[service].isolation,
        database="db",
        schema_name="tenant_x",
        role="tenant_x",
        credentials_ref="isolation:db/x",
        migrations_applied=[1, 2],
    )
    return IsolationReady.new(source="t", subject=tenancy_id, data=data)


def applied(tenancy_id: str, version: int = 1, domain: str | None = None, ok: bool = False) -> Any:
    paths = ThemePaths(css=f"{tenancy_id}/v{version}/theme.css", tokens=f"{tenancy_id}/v1/t.json")
    data = BrandingAppliedData(
        version=version,
        content_hash=SHA,
        paths=paths,
        domain=claim(domain, "token", ok) if domain else None,
    )
    return BrandingApplied.new(source="t", subject=tenancy_id, data=data)


def provisioned(tenancy_id: str, service: str = SERVICE) -> CloudEvent:
    data = TenancyProvisionedData(council="E09000012", service_id=service)
    return TenancyProvisioned.new(source="t", subject=tenancy_id, data=data)


def leaving(tenancy_id: str) -> CloudEvent:
    data = OffboardingRequestedData(service=MANIFESTS[SERVICE])
    return OffboardingRequested.new(source="t", subject=tenancy_id, data=data)


def offboarded(tenancy_id: str) -> CloudEvent:
    data = TenancyOffboardedData(archive="a.zip", archive_sha256=SHA)
    return TenancyOffboarded.new(source="t", subject=tenancy_id, data=data)


def rotated(tenancy_id: str) -> CloudEvent:
    data = CredentialsRotatedData(role="tenant_x", credentials_ref="isolation:db/x")
    return CredentialsRotated.new(source="t", subject=tenancy_id, data=data)


def new_id() -> str:
    return str(uuid.uuid4())


def test_the_events_of_a_provisioning_give_one_served_tenancy_in_any_order() -> None:
    tenancy_id = new_id()
    events = [
        registered(tenancy_id),
        ready(tenancy_id),
        applied(tenancy_id),
        provisioned(tenancy_id),
    ]
    outcomes = set()
    for order in itertools.permutations(events):
        directory = Directory(SERVICE)
        changes = [c for e in order for c in directory.apply(e)]
        assert changes.count(Change.ARRIVED) == 1, order
        found = directory.by_slug("hackney")
        assert found is not None
        assert found.serving
        outcomes.add(found)
    assert len(outcomes) == 1


def test_a_repeated_event_changes_nothing_and_fires_no_hook() -> None:
    tenancy_id, directory = new_id(), Directory(SERVICE)
    for event in (registered(tenancy_id), ready(tenancy_id), provisioned(tenancy_id)):
        directory.apply(event)
        assert directory.apply(event) == []


def test_another_services_tenancies_are_not_kept() -> None:
    tenancy_id, directory = new_id(), Directory(SERVICE)
    for event in (
        applied(tenancy_id, domain="x.gov.uk", ok=True),
        registered(tenancy_id, service="parking-permits"),
        ready(tenancy_id, service="parking-permits"),
        provisioned(tenancy_id, service="parking-permits"),
    ):
        assert directory.apply(event) == []
    assert directory.get(tenancy_id) is None
    assert directory.by_slug("hackney") is None
    assert directory.by_domain("x.gov.uk") is None
    assert directory.tenancies() == []


def test_only_a_verified_domain_resolves() -> None:
    tenancy_id, directory = new_id(), Directory(SERVICE)
    for event in (registered(tenancy_id), ready(tenancy_id), provisioned(tenancy_id)):
        directory.apply(event)
    directory.apply(applied(tenancy_id, domain="bins.hackney.gov.uk", ok=False))
    assert directory.by_domain("bins.hackney.gov.uk") is None
    assert directory.apply(applied(tenancy_id, 2, domain="Bins.Hackney.gov.uk", ok=True)) == [
        Change.REBRANDED
    ]
    assert directory.by_domain("bins.hackney.gov.uk") is not None


def test_leaving_ends_serving_once_and_a_council_that_joins_again_takes_its_slug_back() -> None:
    first, second, directory = new_id(), new_id(), Directory(SERVICE)
    for event in (registered(first), ready(first), provisioned(first)):
        directory.apply(event)
    assert directory.apply(leaving(first)) == [Change.LEFT]
    assert directory.apply(offboarded(first)) == []
    gone = directory.by_slug("hackney")
    assert gone is not None
    assert gone.state == "gone"
    assert not gone.serving
    for event in (registered(second), ready(second)):
        directory.apply(event)
    assert directory.apply(provisioned(second)) == [Change.ARRIVED]
    back = directory.by_slug("hackney")
    assert back is not None
    assert back.id == second
    assert back.serving


def test_a_rotation_is_a_change_for_a_served_tenancy() -> None:
    tenancy_id, directory = new_id(), Directory(SERVICE)
    for event in (registered(tenancy_id), ready(tenancy_id), provisioned(tenancy_id)):
        directory.apply(event)
    assert directory.apply(rotated(tenancy_id)) == [Change.ROTATED]
    found = directory.get(tenancy_id)
    assert found is not None
    assert found.credentials_version == 1


def test_the_snapshot_restores_the_same_directory(tmp_path: Path) -> None:
    tenancy_id, other, directory = new_id(), new_id(), Directory(SERVICE)
    for event in (
        registered(tenancy_id),
        ready(tenancy_id),
        applied(tenancy_id, domain="bins.hackney.gov.uk", ok=True),
        provisioned(tenancy_id),
        registered(other, service="parking-permits"),
    ):
        directory.apply(event)
    store = FileSnapshots(tmp_path / "sdk" / "directory.json")
    store.save(Snapshot(offsets={"onboarding.registered:0": 7}, tenancies=directory.snapshot()))
    restored = store.load()
    assert restored is not None
    assert restored.offsets == {"onboarding.registered:0": 7}
    again = Directory(SERVICE, restored.tenancies)
    assert again.tenancies() == directory.tenancies()
    assert again.by_domain("bins.hackney.gov.uk") == directory.get(tenancy_id)
    assert again.get(other) is None


def test_resolve_by_domain_then_slug_and_refuse_the_rest(tmp_path: Path) -> None:
    served, left = new_id(), new_id()
    client = TenancyClient(SdkSettings(_env_file=None, themes_dir=tmp_path))
    for event in (
        registered(served),
        ready(served),
        applied(served, domain="bins.hackney.gov.uk", ok=True),
        provisioned(served),
        registered(left, slug="lambeth"),
        ready(left),
        provisioned(left),
        leaving(left),
    ):
        client.directory.apply(event)
    on_domain = client.resolve("BINS.hackney.gov.uk:443", "/report")
    assert (on_domain.tenancy.id, on_domain.prefix) == (served, "")
    by_path = client.resolve("127.0.0.1:18090", "/hackney/report")
    assert (by_path.tenancy.id, by_path.url("/report")) == (served, "/hackney/report")
    with pytest.raises(NotServed) as refused:
        client.resolve("127.0.0.1", "/lambeth/report")
    assert refused.value.tenancy is not None
    assert refused.value.tenancy.id == left
    with pytest.raises(NotServed) as unknown:
        client.resolve("127.0.0.1", "/nowhere/")
    assert unknown.value.tenancy is None


def reorganised(tenancy_id: str, into: str) -> CloudEvent:
    data = TenancyReorganisedData(
        target=into,
        successor="E06000067",
        service_id=SERVICE,
        vesting=date(2027, 4, 1),
        closes_at=datetime(2027, 3, 31, 23, tzinfo=UTC),
    )
    return TenancyReorganised.new(source="t", subject=tenancy_id, data=data)


def test_a_reorganised_councils_slug_and_domain_lead_to_its_successor(tmp_path: Path) -> None:
    """Residents' links to Elmbridge's pages keep working after it merged into East Surrey:
    they reach East Surrey's tenancy, which holds Elmbridge's data now."""
    elmbridge, east_surrey = new_id(), new_id()
    client = TenancyClient(SdkSettings(_env_file=None, themes_dir=tmp_path))
    directory = client.directory
    for event in (
        registered(elmbridge, slug="elmbridge"),
        ready(elmbridge),
        applied(elmbridge, domain="bins.elmbridge.gov.uk", ok=True),
        provisioned(elmbridge),
        registered(east_surrey, slug="east-surrey"),
        ready(east_surrey),
        provisioned(east_surrey),
    ):
        directory.apply(event)
    assert directory.apply(reorganised(elmbridge, east_surrey)) == [Change.LEFT]
    predecessor = directory.get(elmbridge)
    assert predecessor is not None
    assert predecessor.state == "gone"
    assert predecessor.moved_into == east_surrey
    by_path = client.resolve("127.0.0.1", "/elmbridge/report")
    assert (by_path.tenancy.id, by_path.url("/report")) == (east_surrey, "/elmbridge/report")
    assert client.resolve("bins.elmbridge.gov.uk", "/").tenancy.id == east_surrey
    assert client.resolve("127.0.0.1", "/east-surrey/").tenancy.id == east_surrey
    again = Directory(SERVICE, directory.snapshot())  # as a restart restores it
    found = again.by_slug("elmbridge")
    assert found is not None
    assert found.id == east_surrey


def test_every_current_council_has_a_slug_of_its_own() -> None:
    from services.onboarding.councils import CouncilRegister
    from shared.settings import DEFAULT_COUNCILS_CSV

    slugs = [c.slug for c in CouncilRegister.from_csv(DEFAULT_COUNCILS_CSV).current()]
    assert all(slugs)
    assert len(set(slugs)) == len(slugs)
    assert {"hackney", "lambeth", "the-vale-of-glamorgan"} <= set(slugs)
