"""The AsyncAPI document of Tenancy, generated from the workers' own subscribers and models."""

from __future__ import annotations

from faststream.specification import AsyncAPI
from faststream.specification.base import Specification


def document() -> Specification:
    from services.branding.app import build as branding
    from services.isolation.app import build as isolation
    from services.metering.app import build as metering
    from services.onboarding.app import build as onboarding

    workers = [build() for build in (onboarding, isolation, branding, metering)]
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
    return spec.to_specification()
