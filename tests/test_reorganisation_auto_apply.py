"""Vesting day arrives and the onboarding worker applies the plan by itself (issue 18), on
workers of their own with the register of tests.test_reorganisation_apply (Surrey reorganised
in 2027, Cumbria's split replayed in 2028) and a clock that says which day it is in London:
Surrey's, with the county's split, as the operator scheduled it ahead of the day; Cumbria's,
never arranged, left to the operator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import structlog

from services.onboarding.councils import CouncilRegister
from services.onboarding.reorganisation import parse_hosts
from services.onboarding.reorganisation_repository import MoveRepository
from services.onboarding.reorganisation_service import joining_refusal, schedule
from services.onboarding.repository import CatalogueRepository
from services.onboarding.service import Person, RequestRefused
from services.onboarding.vesting_day import run_vesting_days
from shared import db, metrics
from shared.catalogue import ServiceManifest
from shared.outbox import UnitOfWork
from tests.harness import Client, in_process_workers
from tests.test_reorganisation import SURREY_VESTING
from tests.test_reorganisation_apply import (
    CUMBRIA,
    CUMBRIA_REPLAY,
    ELMBRIDGE,
    EPSOM,
    SURREY_COUNTY,
    WEST_SURREY,
    Area,
    ReorganisedSlice,
    apply_plan,
    eventually,
    register_csv,
    settled,
    tenancy_row,
)

CHECK_SECONDS = 0.2
# A service of this test's own: a successor's tenancy is named by successor, service and vesting
# day, and its role is the server's, so test_reorganisation_apply's services would clash.
DRILL = ServiceManifest.model_validate(
    {
        "id": "vesting-day-drill",
        "name": "Vesting day drill",
        "owner_council": "E09000012",
        "isolation": "schema",
        "migrations": [{"version": 1, "sql": "CREATE TABLE notes (id bigint PRIMARY KEY)"}],
    }
)
SERVICE = DRILL.id


@dataclass
class OwnClockSlice(ReorganisedSlice):
    def env(self) -> dict[str, str]:
        # The worker's own loop would go by the real day: the test runs one that pretends.
        return {**super().env(), "REORGANISE_AUTOMATICALLY": "false"}


@dataclass
class Today:
    day: date

    def __call__(self) -> date:
        return self.day


@dataclass
class Stack:
    area: Area
    uow: UnitOfWork  # the onboarding worker's, which its background loops are given
    councils_csv: Path


@pytest.fixture(scope="module")
async def stack(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("vesting-day")
    slice_ = OwnClockSlice(servers.postgres_dsn, servers.bootstrap, root)
    slice_.councils_csv = register_csv(root)
    await db.ensure_database(slice_.database_url)
    async with in_process_workers(slice_) as workers:
        onboarding = workers["onboarding"]
        async with onboarding.pool.acquire() as conn:
            await CatalogueRepository(conn).upsert(DRILL)
        async with Client(slice_, onboarding.pool) as client:
            client.councils = CouncilRegister.from_csv(slice_.councils_csv)
            ids = {
                (c, SERVICE): await client.onboard(c, SERVICE)
                for c in (ELMBRIDGE, EPSOM, SURREY_COUNTY, CUMBRIA)
            }
            for tenancy_id in ids.values():
                assert (await client.wait_for(tenancy_id))["state"] == "active"
            yield Stack(Area(client, client.councils, ids), onboarding.uow, slice_.councils_csv)


def blocked(vesting: date) -> float | None:
    """The gauge of a vesting day's plan not applied because it is blocked, if it is shown."""
    return metrics.REGISTRY.get_sample_value(
        "tenancy_reorganisations_waiting",
        {"vesting": vesting.isoformat(), "readiness": "blocked"},
    )


async def shown(vesting: date) -> bool:
    return blocked(vesting) == 1


async def gone(vesting: date) -> bool:
    return blocked(vesting) is None


async def schedule_surrey(area: Area, today: date, *hosts: str) -> Any:
    """``tenancy reorganise apply`` before vesting day, as the CLI calls it."""
    by = Person("Alex Operator", "operator, on the successor's behalf")
    chosen = parse_hosts(area.register, SURREY_VESTING, list(hosts))
    async with area.client.pool.acquire() as conn, conn.transaction():
        return await schedule(
            conn, area.register, SURREY_VESTING, chosen, {}, by, "cli:alex", today=today
        )


async def test_vesting_day_applies_a_scheduled_plan_and_leaves_an_unarranged_split_to_the_operator(
    stack: Stack,
) -> None:
    area = stack.area
    today = Today(date(2027, 3, 31))
    with structlog.testing.capture_logs() as logs:
        loop = asyncio.create_task(
            run_vesting_days(stack.uow, stack.councils_csv, CHECK_SECONDS, today)
        )
        try:
            # Surrey's county is split: the operator arranges its host ahead of the day, then
            # changes their mind; the second arrangement replaces the first.
            first = await schedule_surrey(area, today.day, "SRY=ESU")
            assert first.replaced is None
            again = await schedule_surrey(area, today.day, f"SRY/{SERVICE}=WSU")
            assert again.replaced is not None
            assert again.replaced.hosts == {"SRY": "ESU"}
            assert again.plan.readiness.value == "ready"
            await asyncio.sleep(3 * CHECK_SECONDS)
            async with area.client.pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM onboarding.reorganisations") == 0
                scheduled = await conn.fetch(
                    "SELECT actor, detail->>'hosts' AS hosts FROM audit.log"
                    " WHERE action = 'reorganise.scheduled' ORDER BY seq"
                )
                # Its predecessors can no longer newly join a service: their successors can.
                county = area.register.find(SURREY_COUNTY)
                assert county is not None
                refusal = await joining_refusal(conn, area.register, county)
            assert [(a["actor"], a["hosts"]) for a in scheduled] == [
                ("cli:alex", "SRY=ESU"),
                ("cli:alex", f"SRY/{SERVICE}=WSU"),
            ]
            assert refusal is not None
            assert "on 2027-04-01 and the plan for that day is scheduled: onboard East" in refusal
            # As an operator's join (CLI, API, web) meets it: refused, nothing recorded.
            with pytest.raises(RequestRefused, match="the plan for that day is scheduled"):
                await area.client.onboard(SURREY_COUNTY, service="parking-permits")

            # Vesting day: the worker carries it out as arranged, the split included.
            today.day = SURREY_VESTING
            moves = await settled(area, SURREY_VESTING)
            for council in (ELMBRIDGE, EPSOM, SURREY_COUNTY):
                move = moves[area.of(council, SERVICE)]
                assert move["status"] == "moved", move["reason"]
                row = await tenancy_row(area, area.of(council, SERVICE))
                assert (row["state"], row["into"]) == ("reorganised", move["target"])
            hosted = moves[area.of(SURREY_COUNTY, SERVICE)]
            assert (hosted["kind"], hosted["successor_gss"]) == ("split", WEST_SURREY)
            async with area.client.pool.acquire() as conn:
                by = await conn.fetchval(
                    "SELECT applied_by FROM onboarding.reorganisations WHERE vesting = $1",
                    SURREY_VESTING,
                )
                audited = await conn.fetch(
                    "SELECT actor, detail FROM audit.log WHERE action = 'reorganise.apply'"
                )
                request = await MoveRepository(conn).request(area.of(SURREY_COUNTY, SERVICE))
            assert by == "worker:onboarding"
            assert [(a["actor"], a["detail"]["reorganisation.vesting"]) for a in audited] == [
                ("worker:onboarding", "2027-04-01")
            ]
            assert audited[0]["detail"]["reorganisation.arranged_by"] == "cli:alex"
            assert request.agreement.acceptance.name == "Alex Operator"

            # Cumbria is split: only the operator can name the host, so it waits for them.
            today.day = CUMBRIA_REPLAY
            await eventually(lambda: shown(CUMBRIA_REPLAY))
            await asyncio.sleep(3 * CHECK_SECONDS)  # more rounds, no more warnings today
            warned = [e for e in logs if e["event"].startswith("reorganisation not applied")]
            assert [(e["vesting"], e["readiness"]) for e in warned] == [("2028-04-01", "blocked")]
            assert "must name the successor that hosts vesting-day-drill" in warned[0]["reasons"]
            assert (
                "tenancy reorganise apply --on 2028-04-01 --host CMA=SUCCESSOR"
                in (warned[0]["then"])
            )
            assert (await tenancy_row(area, area.of(CUMBRIA, SERVICE)))["state"] == "active"
            async with area.client.pool.acquire() as conn:
                asked = await conn.fetchval(
                    "SELECT count(*) FROM audit.log WHERE action IN"
                    " ('tenancy.reorganisation.requested', 'tenancy.reorganisation.retried')"
                )
            assert asked == 3  # Surrey's three moves, asked for once

            # Applied by the operator with a host, it is no longer waiting.
            await apply_plan(area, CUMBRIA_REPLAY, "CMA=CBD")
            await eventually(lambda: gone(CUMBRIA_REPLAY))
            assert {m["status"] for m in (await settled(area, CUMBRIA_REPLAY)).values()} == {
                "moved"
            }
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
