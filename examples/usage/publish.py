"""How a shared service reports usage: CloudEvents on ``usage.recorded``, in the Kafka binding's
structured mode (the whole event is the value) or, with ``--binary``, binary mode (the
attributes are ``ce_*`` headers and the value is the data).

    python examples/usage/publish.py <tenancy-id> missed_bin_reports --count 3
    python examples/usage/publish.py <tenancy-id> missed_bin_reports --binary

With ``make run`` up it reads the broker's address from ``.tenancy/stack.env``; otherwise set
``KAFKA_BOOTSTRAP_SERVERS``. The same ``--id`` and ``--time`` again counts nothing, in either
mode; the same ``--id`` with another payload is refused to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.settings import CommonSettings

STRUCTURED = "application/cloudevents+json"


def record(event: dict[str, Any], *, binary: bool) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The Kafka value and headers that carry ``event`` in one mode or the other."""
    if not binary:
        return json.dumps(event).encode(), [("content-type", STRUCTURED.encode())]
    attributes = {k: v for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers = [(f"ce_{name}", str(value).encode()) for name, value in attributes.items()]
    headers.append(("content-type", event["datacontenttype"].encode()))
    return json.dumps(event["data"]).encode(), headers


async def publish(args: argparse.Namespace) -> None:
    settings = CommonSettings()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n in range(args.count):
            event = {
                "specversion": "1.0",
                "id": f"{args.id}-{n}" if args.id else uuid.uuid4().hex,
                "source": args.source,
                "type": "uk.gov.tenancy.usage.recorded.v1",
                "subject": args.tenancy_id,
                "time": (args.time or datetime.now(UTC)).isoformat(),
                "datacontenttype": "application/json",
                "data": {"meter": args.meter, "quantity": args.quantity}
                | ({"value": args.value} if args.value else {}),
            }
            value, headers = record(event, binary=args.binary)
            await producer.send_and_wait(
                settings.topic("usage.recorded"),
                value,
                key=args.tenancy_id.encode(),
                headers=headers,
            )
        mode = "binary" if args.binary else "structured"
        print(f"published {args.count} usage event(s) for {args.meter} in {mode} mode")
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tenancy_id")
    parser.add_argument("meter")
    parser.add_argument("--count", type=int, default=1, help="how many events")
    parser.add_argument("--quantity", default="1", help="what each event adds")
    parser.add_argument("--value", help="for a unique_count meter: what is counted once")
    parser.add_argument("--id", help="event id prefix; the same prefix again counts nothing")
    parser.add_argument("--source", default="example-service", help="the service's name")
    parser.add_argument("--time", type=datetime.fromisoformat, help="when, e.g. 2026-10-05T10:00Z")
    parser.add_argument(
        "--binary", action="store_true", help="binary mode: attributes in ce_* headers"
    )
    asyncio.run(publish(parser.parse_args()))


if __name__ == "__main__":
    main()
