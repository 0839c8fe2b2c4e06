"""`tenancy dlq`: a poison event is listed with its error; once its cause is fixed, replaying it
sends it back where it came from, and it is counted exactly once however often it is replayed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from shared.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.topics import Topic
from tests.harness import Client, Slice, drained, records_on
from tests.test_metering import (
    binary,
    counted,
    drill_tenancy,
    publish,
    send,
    structured,
    usage_event,
    wait_counted,
)


async def tenancy(slice_: Slice, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the in-process workers share this event loop and must keep running.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **slice_.env(), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def listed(slice_: Slice, *args: str) -> list[dict[str, Any]]:
    shown = await tenancy(slice_, "dlq", "list", "--json", *args)
    assert shown.returncode == 0, shown.stderr
    letters: list[dict[str, Any]] = json.loads(shown.stdout)
    return letters


async def wait_letters(
    platform: Client, schema: str, key: str, expected: int, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = await platform.pool.fetchval(
            f"SELECT count(*) FROM {schema}.dead_letters WHERE key = $1", key
        )
        if found >= expected:
            return
        assert time.monotonic() < deadline, f"{found} of {expected} dead letters in {schema}"
        await asyncio.sleep(0.1)


async def open_meter(platform: Client, tenancy_id: str, meter: str) -> None:
    """The fix an operator would make: the service gained a meter this tenancy lacked."""
    await platform.pool.execute(
        "INSERT INTO metering.meters (tenancy_id, service_id, meter_key, aggregation, unit)"
        " VALUES ($1, 'metering-drill', $2, 'count', 'call')",
        tenancy_id,
        meter,
    )


async def test_a_fixed_poison_event_is_replayed_and_counted_once(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000079")
    event = usage_event(tenancy_id, "exports", 3, time=datetime.now(UTC))
    await publish(platform.slice, [event])
    await wait_letters(platform, "metering", tenancy_id, 1)

    [letter] = await listed(platform.slice, "--tenancy", tenancy_id)
    assert letter["worker"] == "metering"
    assert letter["topic"] == platform.slice.topic(Topic.USAGE_RECORDED)
    assert letter["error_type"] == "unknown_meter"
    assert "'exports' is not a meter of metering-drill" in letter["error"]
    assert letter["payload_encoding"] == "utf-8"
    assert json.loads(letter["payload"])["id"] == event["id"]
    assert letter["replayed_at"] is None
    table = await tenancy(platform.slice, "dlq", "list", "--tenancy", tenancy_id)
    assert table.returncode == 0, table.stderr
    assert letter["id"] in table.stdout
    assert "unknown_meter" in table.stdout

    await open_meter(platform, tenancy_id, "exports")
    replayed = await tenancy(platform.slice, "dlq", "replay", letter["id"])
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {letter['id']}" in replayed.stdout
    await wait_counted(platform.pool, tenancy_id, 1)

    [letter] = await listed(platform.slice, "--tenancy", tenancy_id)
    assert letter["replayed_at"] is not None
    assert letter["replayed_by"].startswith("cli:")

    # Replayed already: nothing is published.
    again = await tenancy(platform.slice, "dlq", "replay", letter["id"])
    assert again.returncode == 0, again.stderr
    assert "already replayed" in again.stdout
    # Forced: published, and the metering worker recognises the event it has counted.
    forced = await tenancy(platform.slice, "dlq", "replay", letter["id"], "--again")
    assert forced.returncode == 0, forced.stderr
    await drained(platform.slice)
    assert await counted(platform.pool, tenancy_id) == 1
    assert len(await listed(platform.slice, "--tenancy", tenancy_id)) == 1

    audited = await platform.pool.fetch(
        "SELECT actor, detail FROM audit.log WHERE action = 'dlq.replay' AND tenancy_id = $1",
        tenancy_id,
    )
    assert [row["detail"]["dead_letter"] for row in audited] == [letter["id"]] * 2
    assert all(row["actor"].startswith("cli:") for row in audited)


async def test_replay_all_replays_what_the_filter_selects_once(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000137")
    now = datetime.now(UTC)
    await publish(platform.slice, [usage_event(tenancy_id, "prints", n, time=now) for n in (1, 2)])
    # Another worker's dead letter of the same tenancy, which the filter leaves alone.
    await platform.publish_raw(Topic.ONBOARDING_REQUESTED, b"\xff\xfe binary", key=tenancy_id)
    await wait_letters(platform, "metering", tenancy_id, 2)
    await wait_letters(platform, "onboarding", tenancy_id, 1)

    await open_meter(platform, tenancy_id, "prints")
    scope = ("--worker", "metering", "--topic", "usage.recorded", "--tenancy", tenancy_id)
    replayed = await tenancy(platform.slice, "dlq", "replay", "--all", *scope, "--json")
    assert replayed.returncode == 0, replayed.stderr
    outcomes = json.loads(replayed.stdout)
    assert len(outcomes) == 2
    assert all(o["replayed"] and o["workers"] == ["metering"] for o in outcomes)
    await wait_counted(platform.pool, tenancy_id, 2)

    letters = await listed(platform.slice, "--tenancy", tenancy_id)
    replayed_by_worker = {(x["worker"], x["replayed_at"] is not None) for x in letters}
    assert replayed_by_worker == {("metering", True), ("onboarding", False)}

    nothing = await tenancy(platform.slice, "dlq", "replay", "--all", *scope)
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to replay" in nothing.stdout
    await drained(platform.slice)
    assert await counted(platform.pool, tenancy_id) == 2


async def test_a_replayed_event_goes_back_in_its_mode_as_the_binding_says(
    platform: Client,
) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000044")
    now = datetime.now(UTC)
    # Sent as producers did before the platform followed the binding, and in binary mode.
    legacy = usage_event(tenancy_id, "scans", 1, time=now)
    in_headers = usage_event(tenancy_id, "scans", 2, time=now)
    await send(platform.slice, [structured(legacy, "application/json"), binary(in_headers)])
    await wait_letters(platform, "metering", tenancy_id, 2)

    await open_meter(platform, tenancy_id, "scans")
    scope = ("--worker", "metering", "--tenancy", tenancy_id)
    replayed = await tenancy(platform.slice, "dlq", "replay", "--all", *scope)
    assert replayed.returncode == 0, replayed.stderr
    await wait_counted(platform.pool, tenancy_id, 2)

    sent = await records_on(platform.slice, Topic.USAGE_RECORDED, tenancy_id)
    whole = [h["content-type"] for _, h in sent if "ce_id" not in h]
    assert whole == [b"application/json", STRUCTURED_CONTENT_TYPE.encode()]
    attributes = [(h["content-type"], h["ce_id"], h["ce_subject"]) for _, h in sent if "ce_id" in h]
    assert attributes == [(b"application/json", in_headers["id"].encode(), tenancy_id.encode())] * 2
    assert not any(name.startswith("x-") for _, h in sent for name in h)


async def test_list_filters_by_worker_and_topic(platform: Client) -> None:
    tenancy_id = await drill_tenancy(platform, "E07000035")
    await publish(platform.slice, [usage_event(tenancy_id, "faxes", 1, time=datetime.now(UTC))])
    binary = b"\xff\xfe binary"
    await platform.publish_raw(Topic.ONBOARDING_REQUESTED, binary, key=tenancy_id)
    await wait_letters(platform, "metering", tenancy_id, 1)
    await wait_letters(platform, "onboarding", tenancy_id, 1)

    metering = await listed(platform.slice, "--worker", "metering", "--topic", "usage.recorded")
    assert {x["worker"] for x in metering} == {"metering"}
    assert {x["topic"] for x in metering} == {platform.slice.topic(Topic.USAGE_RECORDED)}
    assert tenancy_id in {x["key"] for x in metering}
    newest_first = [x["dead_lettered_at"] for x in metering]
    assert newest_first == sorted(newest_first, reverse=True)

    # The topic as stored, with the deployment's prefix, selects the same letters.
    prefixed = platform.slice.topic(Topic.ONBOARDING_REQUESTED)
    [onboarding] = await listed(platform.slice, "--topic", prefixed, "--tenancy", tenancy_id)
    assert onboarding["worker"] == "onboarding"
    assert onboarding["payload_encoding"] == "base64"
    assert base64.b64decode(onboarding["payload"]) == binary
    assert await listed(platform.slice, "--worker", "branding", "--tenancy", tenancy_id) == []

    refused = await tenancy(platform.slice, "dlq", "list", "--worker", "billing")
    assert refused.returncode == 1
    assert "not one of onboarding, isolation, branding, metering" in refused.stderr


async def test_workers_that_never_ran_have_no_dead_letters(crash_slice: Slice) -> None:
    # A database of its own where no worker has created its schema yet.
    assert await listed(crash_slice) == []
    shown = await tenancy(crash_slice, "dlq", "list")
    assert shown.returncode == 0, shown.stderr
    assert "no dead letters" in shown.stdout
    replayed = await tenancy(crash_slice, "dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "nothing to replay" in replayed.stdout
    missing = await tenancy(crash_slice, "dlq", "replay", "00000000-0000-0000-0000-000000000001")
    assert missing.returncode == 1
    assert "no dead letter 00000000-0000-0000-0000-000000000001" in missing.stderr
