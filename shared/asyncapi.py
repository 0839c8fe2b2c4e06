"""The AsyncAPI document of Tenancy, generated from the workers' own subscribers and models."""

from __future__ import annotations

import json
from typing import Any

import yaml
from faststream.specification import AsyncAPI

from shared.cloudevents import STRUCTURED_CONTENT_TYPE, binary_headers_schema
from shared.events import UsageData, UsageRecorded
from shared.messaging import DeadLetterHeaders
from shared.topics import Topic

DOCUMENTED_BOOTSTRAP = "localhost:9092"
SCHEMAS = "#/components/schemas/"


def document() -> dict[str, Any]:
    """The document as plain data with sorted keys, so it is the same on every run."""
    from services.branding.app import build as branding
    from services.branding.settings import BrandingSettings
    from services.isolation.app import build as isolation
    from services.isolation.settings import IsolationSettings
    from services.metering.app import build as metering
    from services.metering.settings import MeteringSettings
    from services.onboarding.app import build as onboarding
    from services.onboarding.settings import OnboardingSettings

    # Explicit settings: the document must not depend on the environment it is generated in.
    fixed: dict[str, Any] = {
        "_env_file": None,
        "kafka_bootstrap_servers": DOCUMENTED_BOOTSTRAP,
        "topic_prefix": "",
    }
    workers = [
        onboarding(OnboardingSettings(**fixed)),
        isolation(IsolationSettings(**fixed)),
        branding(BrandingSettings(**fixed)),
        metering(MeteringSettings(**fixed)),
    ]
    spec = AsyncAPI(
        *(worker.broker for worker in workers),
        title="Tenancy",
        version="1.0.0",
        description=(
            "Events through which Tenancy provisions UK councils into shared services. "
            "Every event is a CloudEvents 1.0 envelope in the Kafka binding's structured mode "
            "(content-type application/cloudevents+json; usage.recorded also takes binary "
            "mode); the Kafka key is the tenancy id and W3C trace context travels in the headers."
        ),
    )
    raw: dict[str, Any] = json.loads(spec.to_specification().to_json())
    raw["defaultContentType"] = STRUCTURED_CONTENT_TYPE
    _describe_usage_recorded(raw)
    _describe_dead_letters(raw)
    return raw


def _add_schemas(doc: dict[str, Any], model: type[UsageRecorded]) -> None:
    schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
    schemas = doc["components"]["schemas"]
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


def _describe_usage_recorded(doc: dict[str, Any]) -> None:
    """Metering reads usage.recorded as raw batches, so that one bad record cannot fail its
    batch, and faststream can describe only its handler's argument: an array of bytes. What each
    record holds is a UsageRecorded event, in either of the binding's two modes."""
    _add_schemas(doc, UsageRecorded)
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]
    for key, channel in doc["channels"].items():
        if channel["address"] != Topic.USAGE_RECORDED.value:
            continue
        for ref in channel["messages"].values():
            structured = messages[ref["$ref"].rsplit("/", 1)[1]]
            schemas.pop(structured["payload"]["$ref"].removeprefix(SCHEMAS), None)
            structured["payload"] = {"$ref": SCHEMAS + UsageRecorded.__name__}
            structured["contentType"] = STRUCTURED_CONTENT_TYPE
            structured["summary"] = "structured mode: the whole event is the record's value"
        binary = f"{key}:BinaryMessage"
        messages[binary] = {
            "title": binary,
            "summary": "binary mode: the attributes are ce_ headers, the data is the value",
            "contentType": "application/json",
            "headers": binary_headers_schema(UsageRecorded),
            "payload": {"$ref": SCHEMAS + UsageData.__name__},
        }
        channel["messages"]["BinaryMessage"] = {"$ref": f"#/components/messages/{binary}"}
        for operation in doc["operations"].values():
            if operation["channel"]["$ref"] == f"#/channels/{key}":
                operation["messages"].append({"$ref": f"#/channels/{key}/messages/BinaryMessage"})


def _describe_dead_letters(doc: dict[str, Any]) -> None:
    """faststream describes no message headers; a dead letter is mostly its headers."""
    headers = DeadLetterHeaders.model_json_schema(by_alias=True, mode="serialization")
    headers["additionalProperties"] = {
        "type": "string",
        "description": "the original record's own headers (content-type, traceparent, ce_*)",
    }
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]
    schemas[DeadLetterHeaders.__name__] = headers
    for channel in doc["channels"].values():
        if not channel["address"].startswith("dlq."):
            continue
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            message["headers"] = {"$ref": SCHEMAS + DeadLetterHeaders.__name__}
            message["contentType"] = "application/octet-stream"
            payload = schemas[message["payload"]["$ref"].removeprefix(SCHEMAS)]
            payload["description"] = "the original record's value, byte for byte"


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=True, allow_unicode=True)
