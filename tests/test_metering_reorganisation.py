"""Metering's part in a council reorganisation (issue 18): a predecessor's meters close at the
instant its successor's billing begins, midnight starting vesting day in London, its usage from
then on counts for the successor's tenancy, and its final invoice is issued once, whatever
repeats. The Surrey merge and the Cumbria split, end to end, are in test_reorganisation_apply.py.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from services.metering.periods import Period
from services.metering.repository import BilledTenancy, usage_of
from services.metering.usage import TenancyMeters, Usage, counts_for
from services.onboarding.reorganisation import vesting_instant
from services.onboarding.repository import CatalogueRepository
from shared.catalogue import Aggregation, PeriodKind, ServiceManifest
from shared.events import CostShare, Council, TenancyReorganised, TenancyReorganisedData
from shared.messaging import publish_json
from shared.topics import Topic
from tests.harness import Client, drained
from tests.test_metering import close, counted, publish, usage_event, wait_counted

# 1 October 2026 is in British Summer Time: its midnight is 23:00 UTC the day before.
VESTING = date(2026, 10, 1)
CLOSES_AT = datetime(2026, 9, 30, 23, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
# A service of this file's own, so its periods close when these tests say (the session's other
# tests close the drill services' months themselves).
DRILL = ServiceManifest.model_validate(
    {
        "id": "reorganisation-drill",
        "name": "Reorganisation drill (test, pooled tier)",
        "owner_council": "E09000012",
        "isolation": "pooled",
        "migrations": [
            {
                "version": 1,
                "sql": "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " body text)",
            }
        ],
        "meters": [{"key": "api_calls", "aggregation": "count", "unit": "call"}],
        "pricing": {
            "period": "month",
            "flat_fee": "10.00",
            "charges": [{"meter": "api_calls", "free_allowance": 1, "unit_price": "0.25"}],
        },
    }
)


# -- the rules, free of I/O ------------------------------------------------------------------


def usage_at(instant: datetime, subject: str = "p") -> Usage:
    return Usage("svc", "1", subject, instant, "api_calls", Decimal(1), None, "d", "2026-09")


def test_the_vesting_instant_is_midnight_in_london() -> None:
    assert vesting_instant(VESTING) == CLOSES_AT
    assert vesting_instant(date(2027, 4, 1)) == datetime(2027, 3, 31, 23, tzinfo=UTC)
    assert vesting_instant(date(2026, 12, 1)) == datetime(2026, 12, 1, tzinfo=UTC)  # GMT


def test_usage_from_the_close_on_counts_for_the_successor() -> None:
    predecessor = TenancyMeters(
        "svc", PeriodKind.MONTH, False, {"api_calls": Aggregation.COUNT}, CLOSES_AT, "s"
    )
    assert counts_for(usage_at(CLOSES_AT - SECOND), predecessor) is None
    assert counts_for(usage_at(CLOSES_AT), predecessor) == "s"
    assert counts_for(usage_at(CLOSES_AT + SECOND), predecessor) == "s"
    # Any other tenancy's usage counts where it was sent, whatever its time: the successor's
    # own before vesting day too.
    own = TenancyMeters("svc", PeriodKind.MONTH, False, {"api_calls": Aggregation.COUNT})
    assert counts_for(usage_at(CLOSES_AT - SECOND, "s"), own) is None


def test_a_predecessors_last_period_ends_at_its_close() -> None:
    council = Council(gss="E07000207", name="Elmbridge", nation="E")
    ending = BilledTenancy("p", council, None, PeriodKind.MONTH, closes_at=CLOSES_AT)
    assert not ending.final_in(Period.parse("2026-09").start, Period.parse("2026-09").end)
    ended = BilledTenancy(
        "p", council, None, PeriodKind.MONTH, closes_at=CLOSES_AT, reorganised_into="s"
    )
    september, october = Period.parse("2026-09"), Period.parse("2026-10")
    assert ended.final_in(september.start, september.end)
    assert not ended.final_in(october.start, october.end)
    year = Period.parse("FY2026-27")
    assert ended.final_in(year.start, year.end)  # the close falls inside the financial year


# -- on the broker and the database -------------------------------------------------------------


async def drill_tenancy(client: Client, council: str) -> str:
    tenancy_id = await client.onboard(council, service=DRILL.id)
    assert (await client.wait_for(tenancy_id))["state"] == "active"
    # As if it had joined at the start of the year, so this year's periods are its own.
    await client.pool.execute(
        "UPDATE metering.tenancies SET opened_at = '2026-01-01T00:00Z' WHERE tenancy_id = $1",
        tenancy_id,
    )
    return tenancy_id


# The split's agreement: Cumberland hosts for Westmorland and Furness, bearing 9/20 of the cost.
SHARES = (
    CostShare.of(Council(gss="E06000063", name="Cumberland", nation="E"), Fraction(9, 20)),
    CostShare.of(
        Council(gss="E06000064", name="Westmorland and Furness", nation="E"), Fraction(11, 20)
    ),
)


def reorganised(
    predecessor: str,
    target: str,
    successor: str,
    served: tuple[str, ...] = (),
    shares: tuple[CostShare, ...] = (),
) -> TenancyReorganised:
    data = TenancyReorganisedData(
        target=target,
        successor=successor,
        service_id=DRILL.id,
        vesting=VESTING,
        closes_at=vesting_instant(VESTING),
        served=list(served),
        shares=list(shares),
    )
    return TenancyReorganised.new(source="tests", subject=predecessor, data=data)


async def send(client: Client, event: TenancyReorganised) -> None:
    """As onboarding's outbox relay publishes it; the same event sent twice is a redelivery."""
    await publish_json(
        client.broker,
        event.model_dump(mode="json"),
        topic=client.slice.topic(Topic.TENANCY_REORGANISED),
        key=event.subject,
        headers={},
    )


async def metered(client: Client, tenancy_id: str) -> dict[str, Any]:
    row = await client.pool.fetchrow(
        "SELECT closed_at, reorganised_into::text AS into, shared_with"
        " FROM metering.tenancies WHERE tenancy_id = $1",
        tenancy_id,
    )
    assert row is not None
    return dict(row)


async def wait_closed(client: Client, tenancy_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (await metered(client, tenancy_id))["into"] is None:
        assert time.monotonic() < deadline, f"metering did not close {tenancy_id}"
        await asyncio.sleep(0.1)


async def audited(client: Client, tenancy_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await client.pool.fetch(
        "SELECT action, detail FROM audit.log WHERE tenancy_id = $1"
        " AND actor = 'worker:metering' ORDER BY seq",
        tenancy_id,
    )
    return [(r["action"], r["detail"]) for r in rows]


async def invoices_of(client: Client, tenancy_id: str) -> list[dict[str, Any]]:
    rows = await client.pool.fetch(
        "SELECT period, final, total_pence, lines FROM metering.invoices"
        " WHERE tenancy_id = $1 ORDER BY period",
        tenancy_id,
    )
    return [dict(r) for r in rows]


async def test_a_split_closes_at_london_midnight_and_bills_the_predecessor_once(
    platform: Client,
) -> None:
    async with platform.pool.acquire() as conn:
        await CatalogueRepository(conn).upsert(DRILL)
    # A split as if it vested on 1 October 2026 (the register's councils that exist today, so
    # that they can join): Chichester's tenancy is hosted by Cumberland's for Westmorland. Not
    # Surrey's councils: the session's platform holds their real 2027 plan in other tests.
    predecessor = await drill_tenancy(platform, "E07000225")
    host = await drill_tenancy(platform, "E06000063")
    late = await drill_tenancy(platform, "E07000226")  # its reorganisation comes after a close
    split = reorganised(predecessor, host, "E06000063", ("E06000064",), SHARES)
    await send(platform, split)
    await send(platform, split)  # redelivered
    # Sent again under a new id, as a re-driven step would: the inbox does not know it.
    await send(platform, reorganised(predecessor, host, "E06000063", ("E06000064",), SHARES))
    await wait_closed(platform, predecessor)
    await drained(platform.slice)

    found = await metered(platform, predecessor)
    assert (found["closed_at"], found["into"]) == (CLOSES_AT, host)
    assert (await metered(platform, host))["shared_with"] == ["E06000064"]
    [(action, detail)] = await audited(platform, predecessor)
    assert action == "billing.reorganisation.closed"
    assert detail["final_invoice"] == "with the close of 2026-09"
    assert (detail["target"], detail["shared_with"]) == (host, "E06000064")
    assert detail["shares"] == "E06000063=9/20,E06000064=11/20"
    assert await invoices_of(platform, predecessor) == []  # its last period has not closed yet

    # One second either side of midnight, London time; after it, the old id counts for the host.
    await publish(
        platform.slice,
        [
            usage_event(predecessor, time=CLOSES_AT - SECOND, source=DRILL.id),
            usage_event(predecessor, time=CLOSES_AT - SECOND, source=DRILL.id),
            usage_event(predecessor, time=CLOSES_AT + SECOND, source=DRILL.id),
            usage_event(host, time=CLOSES_AT - SECOND, source=DRILL.id),  # the host's own
            usage_event(late, time=CLOSES_AT + SECOND, source=DRILL.id),
        ],
    )
    await wait_counted(platform.pool, predecessor, 2)
    await wait_counted(platform.pool, host, 2)
    await wait_counted(platform.pool, late, 1)
    async with platform.pool.acquire() as conn:
        assert await usage_of(conn, predecessor, ["2026-09"]) == {"api_calls": 2}
        assert await usage_of(conn, predecessor, ["2026-10"]) == {"api_calls": 0}
        assert await usage_of(conn, host, ["2026-09"]) == {"api_calls": 1}
        assert await usage_of(conn, host, ["2026-10"]) == {"api_calls": 1}

    september = {i["tenancy_id"]: i for i in await close(platform, DRILL.id, "2026-09")}
    assert (september[predecessor]["final"], september[host]["final"]) == (True, False)
    assert september[predecessor]["total_pence"] == 1000 + 25  # the fee, and one call past the free
    assert september[host]["total_pence"] == 1000
    assert september[host]["parties"] == []  # the month before vesting was the host's alone

    # A late reorganisation: the period before vesting was closed already, so the final invoice
    # is at once, for October, without the fee; what the old id counted in October moves to
    # the host.
    await send(platform, reorganised(late, host, "E06000063"))
    await wait_closed(platform, late)
    async with platform.pool.acquire() as conn:
        assert await usage_of(conn, late, ["2026-10"]) == {"api_calls": 0}
        assert await usage_of(conn, host, ["2026-10"]) == {"api_calls": 2}
    # And the predecessor's event once more, after its final invoice: nothing changes.
    await send(platform, reorganised(predecessor, host, "E06000063", ("E06000064",)))
    await drained(platform.slice)
    october = {i["tenancy_id"]: i for i in await close(platform, DRILL.id, "2026-10")}
    assert predecessor not in october  # it ended the instant the month began
    assert october[late]["final"]  # issued at once, before the month closed
    assert october[host]["total_pence"] == 1000 + 25  # its own and both predecessors' calls
    # From vesting on the host's invoice is divided by the agreement: 461.25p and 563.75p,
    # the odd penny to the larger remainder, so the parts add up to the total.
    parts = [(p["council"]["gss"], p["share"], p["amount_pence"]) for p in october[host]["parties"]]
    assert parts == [("E06000063", "9/20", 461), ("E06000064", "11/20", 564)]

    [final] = await invoices_of(platform, predecessor)
    assert (final["period"], final["final"], final["total_pence"]) == ("2026-09", True, 1025)
    actions = [action for action, _ in await audited(platform, predecessor)]
    assert actions == ["billing.reorganisation.closed", "billing.final_invoice"]
    assert [(i["period"], i["final"]) for i in await invoices_of(platform, late)] == [
        ("2026-09", False),
        ("2026-10", True),
    ]
    [(_, detail)] = [a for a in await audited(platform, late) if a[0].endswith("closed")]
    assert detail["final_invoice"] == "issued for 2026-10"
    october_late = (await invoices_of(platform, late))[1]
    assert [line["kind"] for line in october_late["lines"]] == ["usage"]
    assert october_late["total_pence"] == 0
    assert await counted(platform.pool, predecessor) == 2
