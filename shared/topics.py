"""Every topic and event type of Tenancy, in one place.

A topic carries exactly one event type, so a subscriber's signature is the whole contract of its
topic and the AsyncAPI document generated from the workers lists each type once.
"""

from __future__ import annotations

from enum import StrEnum

TYPE_PREFIX = "uk.gov.tenancy"
PARTITIONS = 6


class Topic(StrEnum):
    ONBOARDING_REQUESTED = "onboarding.requested"
    TENANCY_REGISTERED = "onboarding.registered"
    ISOLATION_READY = "isolation.ready"
    BRANDING_APPLIED = "branding.applied"
    BRAND_CHANGE_REQUESTED = "branding.change-requested"
    BRAND_ROLLBACK_REQUESTED = "branding.rollback-requested"
    METERING_ENABLED = "metering.enabled"
    STEP_FAILED = "provisioning.step-failed"
    TENANCY_PROVISIONED = "onboarding.provisioned"
    TENANCY_FAILED = "onboarding.failed"
    OFFBOARDING_REQUESTED = "offboarding.requested"
    ISOLATION_REMOVED = "isolation.removed"
    TENANCY_OFFBOARDED = "onboarding.offboarded"
    MIGRATION_REQUESTED = "isolation.migration-requested"
    TENANCY_MIGRATED = "isolation.migrated"
    CREDENTIALS_ROTATION_REQUESTED = "credentials.rotation-requested"
    CREDENTIALS_ROTATED = "credentials.rotated"
    MOVE_REQUESTED = "reorganisation.move-requested"
    DATA_MOVE_REQUESTED = "isolation.data-move-requested"
    DATA_MOVED = "isolation.data-moved"
    DATA_MOVE_FAILED = "isolation.data-move-failed"
    TENANCY_REORGANISED = "onboarding.reorganised"
    RETIREMENT_REQUESTED = "isolation.retirement-requested"
    PREDECESSOR_RETIRED = "isolation.retired"
    RETIREMENT_FAILED = "isolation.retirement-failed"
    USAGE_RECORDED = "usage.recorded"
    BILLING_CLOSE_REQUESTED = "billing.close-requested"
    INVOICE_ISSUED = "billing.invoice-issued"
    DLQ_ONBOARDING = "dlq.onboarding"
    DLQ_ISOLATION = "dlq.isolation"
    DLQ_BRANDING = "dlq.branding"
    DLQ_METERING = "dlq.metering"

    @property
    def event_type(self) -> str:
        return f"{TYPE_PREFIX}.{self.value.replace('-', '_')}.v1"


def dead_letter_topic(worker: str) -> Topic:
    return Topic(f"dlq.{worker}")
