"""The AsyncAPI document of Tenancy, generated from the workers' own subscribers and models."""

from __future__ import annotations

import json
from typing import Any

import yaml
from faststream.specification import AsyncAPI

DOCUMENTED_BOOTSTRAP = "localhost:9092"


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
            "Every message is a CloudEvents 1.0 envelope in structured mode; the Kafka key "
            "is the tenancy id and W3C trace context travels in the headers."
        ),
    )
    raw: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return raw


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=True, allow_unicode=True)
