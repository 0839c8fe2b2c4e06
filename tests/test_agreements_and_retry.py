"""A council joins only by accepting the service's current agreement, which is kept with its
tenancy; a failed tenancy can be retried once its cause is fixed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.onboarding.repository import CatalogueRepository
from services.onboarding.service import RequestRefused
from shared.catalogue import Migration
from shared.events import OnboardingRequested, OnboardingRequestedData
from shared.topics import Topic
from tests.harness import Client
from tests.harness import cli as tenancy


async def acceptance_of(client: Client, tenancy_id: str) -> dict[str, Any]:
    value: dict[str, Any] = await client.pool.fetchval(
        "SELECT acceptance FROM onboarding.tenancies WHERE id = $1", tenancy_id
    )
    return value


async def test_a_request_without_acceptance_is_refused(platform: Client) -> None:
    """An event made without the CLI or the API, that accepts nothing, is refused."""
    data = OnboardingRequestedData(council="E07000117", service_id="bin-collections")
    event = OnboardingRequested.new(source="tests", subject=_new_id(), data=data)
    await platform.publish_raw(
        Topic.ONBOARDING_REQUESTED, event.model_dump_json().encode(), key=event.subject
    )
    found = await platform.wait_for(event.subject)
    assert found["state"] == "failed"
    assert found["failed_step"] == "request"
    assert "acceptance: joining bin-collections needs acceptance of version 1" in found["reason"]


async def test_accepting_an_old_version_is_refused(platform: Client) -> None:
    with pytest.raises(RequestRefused, match=r"accept version 2\.1"):
        await platform.onboard("E07000192", "retry-drill", agreement_version="2.0")


async def test_the_cli_records_who_accepted(platform: Client) -> None:
    named = await tenancy(
        platform.slice, "onboard", "--council", "E07000069", "--service", "bin-collections",
        "--accepted-by", "Jo Bloggs", "--accepted-role", "Head of Digital", "--json",
    )  # fmt: skip
    assert named.returncode == 0, named.stderr
    accepted = await acceptance_of(platform, json.loads(named.stdout)["id"])
    assert accepted["name"] == "Jo Bloggs"
    assert accepted["role"] == "Head of Digital"
    assert accepted["agreement_version"] == "1"
    assert accepted["accepted_at"]

    operator = await tenancy(
        platform.slice, "onboard", "--council", "E07000069", "--service", "planning-comments",
        "--json",
    )  # fmt: skip
    assert operator.returncode == 0, operator.stderr
    accepted = await acceptance_of(platform, json.loads(operator.stdout)["id"])
    assert accepted["role"] == "operator, on the council's behalf"


async def test_a_failed_tenancy_is_retried_once_its_cause_is_fixed(platform: Client) -> None:
    tenancy_id = await platform.onboard("E07000106", "retry-drill", agreement_version="2.1")
    found = await platform.wait_for(tenancy_id)
    assert found["state"] == "failed"
    assert found["failed_step"] == "isolation"

    refused = await tenancy(platform.slice, "retry", tenancy_id)  # nothing fixed yet: it fails
    assert refused.returncode == 0, refused.stderr
    found = await platform.wait_for(tenancy_id, frozenset({"failed"}))
    async with platform.pool.acquire() as conn:
        catalogue = CatalogueRepository(conn)
        broken = await catalogue.get("retry-drill")
        assert broken is not None
        fixed = broken.model_copy(
            update={
                "migrations": [
                    broken.migrations[0],
                    Migration(version=2, sql="ALTER TABLE notes ADD COLUMN x int"),
                ]
            }
        )
        await catalogue.upsert(fixed)
    retried = await tenancy(platform.slice, "retry", tenancy_id)
    assert retried.returncode == 0, retried.stderr
    found = await platform.wait_for(tenancy_id, frozenset({"active"}), timeout=60)
    assert found["state"] == "active"
    assert found["reason"] is None

    again = await tenancy(platform.slice, "retry", tenancy_id)
    assert again.returncode == 1
    assert "only a failed tenancy is retried" in " ".join(again.stderr.split())


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())
