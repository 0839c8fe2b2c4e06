"""Plain-Python rules, tested without Kafka or PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from services.isolation.plan import TenantNames, login_role, scram_verifier
from services.onboarding.councils import CouncilRefused, CouncilRegister
from services.onboarding.domain import State, Tenancy
from shared.catalogue import IsolationTier, ServiceManifest
from shared.events import EVENT_TYPES, OnboardingRequested
from shared.identifiers import quote_ident, service_database_name, tenant_object_name
from shared.settings import DEFAULT_COUNCILS_CSV

register = CouncilRegister.from_csv(DEFAULT_COUNCILS_CSV)


def test_reference_data_has_every_current_council() -> None:
    assert len(register.current(date(2026, 11, 22))) == 397


def test_council_with_several_successors_names_them_all() -> None:
    with pytest.raises(CouncilRefused) as refusal:
        register.resolve("E10000006")  # Cumbria County Council, split in 2023
    assert "Cumberland Council (E06000063)" in str(refusal.value)
    assert "Westmorland and Furness Council (E06000064)" in str(refusal.value)


def test_codes_are_normalised_before_lookup() -> None:
    assert register.resolve(" e09000012 ").name == "London Borough of Hackney"


def test_tenancy_becomes_active_only_when_every_step_is_done() -> None:
    tenancy = Tenancy(id="t", council_gss="E09000012", service_id="s", state=State.REQUESTED)
    tenancy.register()
    assert not tenancy.complete("isolation")
    assert not tenancy.complete("branding")
    assert not tenancy.complete("branding")
    assert tenancy.complete("metering")
    assert tenancy.state is State.ACTIVE
    assert not tenancy.complete("metering")


def test_first_failure_wins_and_later_results_do_not_revive_it() -> None:
    tenancy = Tenancy(id="t", council_gss="E09000012", service_id="s", state=State.REQUESTED)
    tenancy.register()
    assert tenancy.fail("isolation", "boom")
    assert not tenancy.fail("branding", "later")
    for step in ("isolation", "branding", "metering"):
        tenancy.complete(step)  # type: ignore[arg-type]
    assert tenancy.state is State.FAILED
    assert (tenancy.failed_step, tenancy.reason) == ("isolation", "boom")


@pytest.mark.parametrize(
    "hostile",
    ['x"; DROP TABLE tenancies; --', "Robert'); DROP", "UPPER", "a-b", "", "x" * 64, "é"],
)
def test_hostile_identifiers_never_reach_sql(hostile: str) -> None:
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        quote_ident(hostile)


@pytest.mark.parametrize("hostile", ['bins"; DROP DATABASE x; --', "Bins", "b", "-bins", "bins-"])
def test_hostile_service_ids_are_refused_by_the_manifest(hostile: str) -> None:
    with pytest.raises(ValidationError, match="id"):
        ServiceManifest(id=hostile, name="x", owner_council="E09000012")


def test_hostile_tenancy_ids_are_refused_by_events() -> None:
    with pytest.raises(ValidationError, match="subject"):
        OnboardingRequested.new(
            source="tests",
            subject="1; DROP SCHEMA x",
            data={"council": "E09000012", "service_id": "bin-collections"},
        )


TENANCY = "5f0c7a3e-0000-4000-8000-000000000001"
OWN = "tenant_5f0c7a3e000040008000000000000001"


@pytest.mark.parametrize(
    ("tier", "database", "schema"),
    [
        (IsolationTier.POOLED, "tenancy_bin_collections", "pooled"),
        (IsolationTier.SCHEMA, "tenancy_bin_collections", OWN),
        (IsolationTier.DATABASE, OWN, OWN),
    ],
)
def test_tenant_names_are_derived_from_the_tenancy_and_service_only(
    tier: IsolationTier, database: str, schema: str
) -> None:
    service_db = service_database_name("tenancy", "bin-collections")
    names = TenantNames.for_tenancy(TENANCY, tier, service_db)
    assert (names.database, names.schema, names.role) == (database, schema, OWN)
    assert tenant_object_name(TENANCY) == OWN


def test_login_role_is_sent_a_verifier_never_the_password() -> None:
    names = TenantNames.for_tenancy(TENANCY, IsolationTier.SCHEMA, "tenancy_bins")
    verifier = scram_verifier("correct horse battery staple")
    statements = "\n".join(login_role(names, verifier, 20))
    assert "correct horse" not in statements
    assert "SCRAM-SHA-256$4096:" in statements
    assert "NOBYPASSRLS" in statements
    assert "NOINHERIT" in statements


def test_every_event_type_names_its_topic_and_version() -> None:
    for event in EVENT_TYPES:
        schema = event.model_json_schema()
        assert schema["properties"]["type"]["const"] == event.topic.event_type
        assert event.topic.event_type.endswith(".v1")


def test_asyncapi_document_lists_every_event_type() -> None:
    from shared.asyncapi import document

    spec = document()
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert {event.topic.value for event in EVENT_TYPES} <= addresses
    assert spec["asyncapi"].startswith("3.")


def test_published_asyncapi_document_is_up_to_date() -> None:
    from shared.asyncapi import document, to_yaml
    from shared.settings import REPO_ROOT

    published = (REPO_ROOT / "docs" / "asyncapi.yaml").read_text()
    assert published.strip() == to_yaml(document()).strip(), "run `make asyncapi` and commit"
