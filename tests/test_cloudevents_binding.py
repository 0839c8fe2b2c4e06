"""The CloudEvents Kafka protocol binding: the platform publishes in structured mode with the
binding's content type, and the AsyncAPI document describes what really travels, on
usage.recorded in both modes and on the dead-letter topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from shared.cloudevents import STRUCTURED_CONTENT_TYPE, is_binary
from shared.topics import Topic
from tests.harness import WORKERS, Client, drained, records_on

STRUCTURED = STRUCTURED_CONTENT_TYPE.encode()


async def test_the_platform_publishes_its_events_in_structured_mode(platform: Client) -> None:
    tenancy_id = await platform.onboard("E07000045")
    # Consumed too: every worker reads the binding's content type as JSON.
    assert (await platform.wait_for(tenancy_id))["state"] == "active"
    await drained(platform.slice)
    topics = (
        Topic.ONBOARDING_REQUESTED,  # published by the operator's client, as the CLI does
        Topic.TENANCY_REGISTERED,
        Topic.ISOLATION_READY,
        Topic.BRANDING_APPLIED,
        Topic.METERING_ENABLED,
        Topic.TENANCY_PROVISIONED,
    )
    for topic in topics:
        records = await records_on(platform.slice, topic, tenancy_id)
        assert records, topic
        assert {headers["content-type"] for _, headers in records} == {STRUCTURED}, topic
        assert all(json.loads(value or b"")["subject"] == tenancy_id for value, _ in records)


async def test_the_relay_publishes_rows_written_earlier_in_structured_mode(
    platform: Client,
) -> None:
    """A row an outbox kept from before this version recorded application/json; the relay
    publishes it as the binding says all the same."""
    key = f"relay-{uuid.uuid4()}"
    # A dead-letter topic: nothing consumes it, so the row has no effects beyond its record.
    topic = platform.slice.topic(Topic.DLQ_BRANDING)
    await platform.pool.execute(
        "INSERT INTO onboarding.outbox (id, topic, key, payload, headers, created_at)"
        " VALUES ($1, $2, $3, $4, $5, now() - interval '1 minute')",
        uuid.uuid4(),
        topic,
        key,
        {"specversion": "1.0", "note": "written before the binding"},
        {"content-type": "application/json"},
    )
    deadline = time.monotonic() + 30
    while not (records := await records_on(platform.slice, Topic.DLQ_BRANDING, key)):
        assert time.monotonic() < deadline, "the relay did not publish the row"
        await asyncio.sleep(0.2)
    [(_, headers)] = records
    assert headers["content-type"] == STRUCTURED


@pytest.mark.parametrize(
    ("headers", "binary"),
    [
        ([("content-type", STRUCTURED)], False),
        ([("content-type", STRUCTURED + b"; charset=utf-8"), ("ce_specversion", b"1.0")], False),
        ([("content-type", b"application/json"), ("ce_specversion", b"1.0")], True),
        ([("ce_specversion", b"1.0")], True),
        ([("content-type", b"application/json")], False),  # as producers sent before
        ([], False),
    ],
)
def test_the_mode_is_told_from_the_headers(headers: list[tuple[str, bytes]], binary: bool) -> None:
    assert is_binary(headers) is binary


# -- the AsyncAPI document ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    from shared.asyncapi import document

    return document()


def resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def messages_on(spec: dict[str, Any], address: str) -> list[dict[str, Any]]:
    channels = [c for c in spec["channels"].values() if c["address"] == address]
    assert channels, f"no channel {address}"
    return [resolve(spec, m["$ref"]) for c in channels for m in c["messages"].values()]


def test_the_document_describes_usage_recorded_as_a_cloudevent_in_both_modes(
    spec: dict[str, Any],
) -> None:
    assert spec["defaultContentType"] == STRUCTURED_CONTENT_TYPE
    by_type = {m["contentType"]: m for m in messages_on(spec, Topic.USAGE_RECORDED.value)}
    assert set(by_type) == {STRUCTURED_CONTENT_TYPE, "application/json"}

    event = resolve(spec, by_type[STRUCTURED_CONTENT_TYPE]["payload"]["$ref"])
    attributes = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype"}
    assert attributes | {"data"} <= set(event["properties"])
    assert set(event["required"]) == attributes - {"datacontenttype"} | {"data"}
    assert event["properties"]["type"]["const"] == Topic.USAGE_RECORDED.event_type
    assert "anyOf" in event["additionalProperties"]  # extension attributes
    data = resolve(spec, event["properties"]["data"]["$ref"])
    assert {"meter", "quantity", "value"} <= set(data["properties"])

    binary = by_type["application/json"]
    assert binary["payload"] == event["properties"]["data"]
    headers = binary["headers"]["properties"]
    assert {f"ce_{a}" for a in attributes - {"datacontenttype"}} <= set(headers)
    assert headers["ce_specversion"]["const"] == "1.0"
    assert headers["content-type"]["const"] == "application/json"
    operations = [
        o for o in spec["operations"].values() if o["channel"]["$ref"].endswith(":OnUsageRecorded")
    ]
    assert [len(o["messages"]) for o in operations] == [2]


def test_the_document_lists_each_workers_dead_letter_channel(spec: dict[str, Any]) -> None:
    for worker in WORKERS:
        [message] = messages_on(spec, f"dlq.{worker}")
        headers = resolve(spec, message["headers"]["$ref"])
        assert {"x-error", "x-error-type", "x-original-topic", "x-dead-letter-id"} <= set(
            headers["required"]
        )
        assert headers["additionalProperties"]["type"] == "string"  # the record's own headers
        assert resolve(spec, message["payload"]["$ref"])["format"] == "binary"
    sent = {o["channel"]["$ref"] for o in spec["operations"].values() if o["action"] == "send"}
    assert {f"#/channels/dlq.{worker}:{worker}" for worker in WORKERS} <= sent
