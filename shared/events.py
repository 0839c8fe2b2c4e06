"""The event contract: a CloudEvents 1.0 envelope and one pydantic model per event type.

Events are facts, named in the past tense, except ``OnboardingRequested``, which is the one
request that enters the system from outside. Every event's ``subject`` is the tenancy id, which
is also the Kafka message key, so all events of one tenancy stay in order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import ConfigDict, EmailStr, Field, HttpUrl, field_validator, model_validator

from shared.catalogue import IsolationTier, ServiceManifest
from shared.cloudevents import ExtensionName, ExtensionValue
from shared.identifiers import GssCode, ServiceId, TenancyId
from shared.text import NulFree
from shared.topics import Topic

HEX_COLOUR = r"^#[0-9A-Fa-f]{6}$"
PERIOD = r"^(\d{4}-(0[1-9]|1[0-2])|FY\d{4}-\d{2})$"
PurchaseOrder = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 /._-]*$",
        description="the council's purchase order reference, printed on its invoices",
    ),
]
Step = Literal["isolation", "branding", "metering"]
STEPS: tuple[Step, ...] = ("isolation", "branding", "metering")


class Contract(NulFree):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudEvent(Contract):
    """CloudEvents 1.0 structured-mode envelope; subclasses fix ``type`` and ``data``."""

    topic: ClassVar[Topic]

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str = Field(min_length=1, max_length=200)
    type: str
    subject: TenancyId
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"

    @classmethod
    def new(
        cls, *, source: str, subject: TenancyId | str, data: Any, id: uuid.UUID | None = None
    ) -> Self:
        fields = {"source": source, "type": cls.topic.event_type, "subject": str(subject)}
        return cls.model_validate({**fields, "data": data, "id": id or uuid.uuid4()})


# -- data shared by several events -------------------------------------------------------------


class Contact(Contract):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class Colours(Contract):
    primary: str = Field(pattern=HEX_COLOUR)
    secondary: str = Field(default="#FFFFFF", pattern=HEX_COLOUR)
    link: str = Field(default="#1D70B8", pattern=HEX_COLOUR)


class LogoRef(Contract):
    """A claim check: the logo's bytes stay in the asset store, events carry only this."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: Literal["image/png", "image/svg+xml"]
    size: int = Field(ge=1)


class BrandContact(Contract):
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=40)


class FooterLink(Contract):
    text: str = Field(min_length=1, max_length=100)
    url: HttpUrl


class Brand(Contract):
    name: str = Field(min_length=1, max_length=200)
    welsh_name: str | None = Field(default=None, max_length=200)
    logo: LogoRef | None = None
    logo_alt: str | None = Field(default=None, max_length=300)
    colours: Colours
    domain: str | None = Field(default=None, max_length=253)
    contact: BrandContact | None = None
    footer_links: list[FooterLink] = Field(default_factory=list, max_length=20)


class Council(Contract):
    gss: GssCode
    name: str
    nation: str
    slug: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="the council's short name as a URL segment, unique today (e.g. hackney)",
    )


# -- one model per event type ---------------------------------------------------------------


class Acceptance(Contract):
    """Who accepted which version of a service's agreement on the council's behalf, and when."""

    agreement_version: str = Field(min_length=1, max_length=20)
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=200)
    accepted_at: datetime


class OnboardingRequestedData(Contract):
    council: str = Field(description="GSS code as given; the onboarding worker validates it")
    service_id: str
    contact: Contact | None = None
    brand: Brand | None = None
    purchase_order: PurchaseOrder | None = None
    acceptance: Acceptance | None = Field(
        default=None, description="required: a request without it is refused"
    )


class OnboardingRequested(CloudEvent):
    topic = Topic.ONBOARDING_REQUESTED
    type: Literal["uk.gov.tenancy.onboarding.requested.v1"]
    data: OnboardingRequestedData


class TenancyRegisteredData(Contract):
    council: Council
    service: ServiceManifest = Field(description="the manifest as it was when the council joined")
    brand: Brand
    purchase_order: PurchaseOrder | None = None


class TenancyRegistered(CloudEvent):
    topic = Topic.TENANCY_REGISTERED
    type: Literal["uk.gov.tenancy.onboarding.registered.v1"]
    data: TenancyRegisteredData


class IsolationReadyData(Contract):
    service_id: ServiceId
    tier: IsolationTier
    database: str
    schema_name: str
    role: str
    credentials_ref: str = Field(
        description="where an operator obtains the secret; never the secret"
    )
    migrations_applied: list[int]


class IsolationReady(CloudEvent):
    topic = Topic.ISOLATION_READY
    type: Literal["uk.gov.tenancy.isolation.ready.v1"]
    data: IsolationReadyData


class ThemePaths(Contract):
    """Where a theme version's files are, relative to the themes folder the service mounts."""

    css: str
    tokens: str
    logo: str | None = None


DomainStatus = Literal["pending verification", "verified"]


class DomainClaim(Contract):
    name: str
    status: DomainStatus
    txt_record: str = Field(description="the DNS name of the TXT record the council publishes")
    txt_value: str = Field(description="the value that record must hold")


class BrandingAppliedData(Contract):
    version: int = Field(ge=1)
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    paths: ThemePaths
    domain: DomainClaim | None = None


class BrandChangeRequestedData(Contract):
    brand: Brand


class BrandChangeRequested(CloudEvent):
    topic = Topic.BRAND_CHANGE_REQUESTED
    type: Literal["uk.gov.tenancy.branding.change_requested.v1"]
    data: BrandChangeRequestedData


class BrandRollbackRequestedData(Contract):
    version: int = Field(ge=1, description="the earlier version to make current again")


class BrandRollbackRequested(CloudEvent):
    topic = Topic.BRAND_ROLLBACK_REQUESTED
    type: Literal["uk.gov.tenancy.branding.rollback_requested.v1"]
    data: BrandRollbackRequestedData


class BrandingApplied(CloudEvent):
    topic = Topic.BRANDING_APPLIED
    type: Literal["uk.gov.tenancy.branding.applied.v1"]
    data: BrandingAppliedData


class MeteringEnabledData(Contract):
    meters: list[str]


class MeteringEnabled(CloudEvent):
    topic = Topic.METERING_ENABLED
    type: Literal["uk.gov.tenancy.metering.enabled.v1"]
    data: MeteringEnabledData


class StepFailedData(Contract):
    step: Step
    reason: str = Field(min_length=1, max_length=2000)


class StepFailed(CloudEvent):
    topic = Topic.STEP_FAILED
    type: Literal["uk.gov.tenancy.provisioning.step_failed.v1"]
    data: StepFailedData


class TenancyProvisionedData(Contract):
    council: GssCode
    service_id: ServiceId


class TenancyProvisioned(CloudEvent):
    topic = Topic.TENANCY_PROVISIONED
    type: Literal["uk.gov.tenancy.onboarding.provisioned.v1"]
    data: TenancyProvisionedData


class TenancyFailedData(Contract):
    step: str
    reason: str


class TenancyFailed(CloudEvent):
    topic = Topic.TENANCY_FAILED
    type: Literal["uk.gov.tenancy.onboarding.failed.v1"]
    data: TenancyFailedData


class OffboardingRequestedData(Contract):
    service: ServiceManifest
    reason: str = Field(default="", max_length=500)


class OffboardingRequested(CloudEvent):
    """The council leaves the service: export its data, then remove it."""

    topic = Topic.OFFBOARDING_REQUESTED
    type: Literal["uk.gov.tenancy.offboarding.requested.v1"]
    data: OffboardingRequestedData


class ExportedTable(Contract):
    name: str
    file: str
    rows: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class IsolationRemovedData(Contract):
    service_id: ServiceId
    tier: IsolationTier
    archive: str = Field(description="where the export archive was written")
    archive_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tables: list[ExportedTable]


class IsolationRemoved(CloudEvent):
    """The tenancy's data was exported, then its schema, database or rows and its role dropped."""

    topic = Topic.ISOLATION_REMOVED
    type: Literal["uk.gov.tenancy.isolation.removed.v1"]
    data: IsolationRemovedData


class TenancyOffboardedData(Contract):
    archive: str
    archive_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TenancyOffboarded(CloudEvent):
    topic = Topic.TENANCY_OFFBOARDED
    type: Literal["uk.gov.tenancy.onboarding.offboarded.v1"]
    data: TenancyOffboardedData


class MigrationRequestedData(Contract):
    run_id: uuid.UUID
    service: ServiceManifest = Field(description="the manifest with the migrations to apply")


class MigrationRequested(CloudEvent):
    """Bring one tenancy up to the manifest's latest migration."""

    topic = Topic.MIGRATION_REQUESTED
    type: Literal["uk.gov.tenancy.isolation.migration_requested.v1"]
    data: MigrationRequestedData


class TenancyMigratedData(Contract):
    run_id: uuid.UUID
    ok: bool
    version: int = Field(ge=0, description="the tenancy's migration version now")
    applied: list[int]
    error: str | None = None


class TenancyMigrated(CloudEvent):
    topic = Topic.TENANCY_MIGRATED
    type: Literal["uk.gov.tenancy.isolation.migrated.v1"]
    data: TenancyMigratedData


class CredentialsRotationRequestedData(Contract):
    service_id: ServiceId


class CredentialsRotationRequested(CloudEvent):
    topic = Topic.CREDENTIALS_ROTATION_REQUESTED
    type: Literal["uk.gov.tenancy.credentials.rotation_requested.v1"]
    data: CredentialsRotationRequestedData


class CredentialsRotatedData(Contract):
    role: str
    credentials_ref: str = Field(description="where an operator gets the secret; not the secret")


class CredentialsRotated(CloudEvent):
    topic = Topic.CREDENTIALS_ROTATED
    type: Literal["uk.gov.tenancy.credentials.rotated.v1"]
    data: CredentialsRotatedData


# -- council reorganisation (issue 18) ---------------------------------------------------------
# Each move is keyed by the tenancy that takes the data, so the moves of several predecessors
# into one successor's tenancy run one after another, in the order they were asked for.

# An exact fraction, numerator/denominator: a third is a third, which no decimal writes exactly.
FRACTION = r"^(0|[1-9][0-9]{0,17})/[1-9][0-9]{0,17}$"


class CostShare(Contract):
    """One council's part of a cost shared under an inter-authority agreement."""

    council: Council
    share: str = Field(
        pattern=FRACTION,
        description="the exact fraction of the cost it bears, e.g. 9/20; an agreement's shares"
        " add up to exactly 1",
    )

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.share)

    @classmethod
    def of(cls, council: Council, share: Fraction) -> CostShare:
        return cls(council=council, share=f"{share.numerator}/{share.denominator}")


def _whole(shares: list[CostShare]) -> list[CostShare]:
    """Shares, if there are any, name each council once and add up to exactly 1: a cost divided
    by them is divided whole, to the penny."""
    if not shares:
        return shares
    named = [s.council.gss for s in shares]
    if len(set(named)) != len(named):
        raise ValueError(f"shares: a council has two shares ({', '.join(named)})")
    total = sum((s.fraction for s in shares), Fraction(0))
    if total != 1:
        raise ValueError(f"shares: they add up to {total}, not 1")
    return shares


class SuccessorAgreement(Contract):
    """The predecessor's agreement, novated to the successor that takes its data: for a split,
    the inter-authority agreement under which the host serves the other successors."""

    novated_from: TenancyId = Field(description="the predecessor's tenancy")
    host: Council
    served: list[Council] = Field(default_factory=list, description="a split's other successors")
    cost_shared: bool = Field(description="true when the host shares the cost with those served")
    acceptance: Acceptance = Field(description="the successor's acceptance of the agreement")
    shares: list[CostShare] = Field(
        default_factory=list,
        description="when the cost is shared: the host's and each served council's share of it,"
        " adding up to exactly 1",
    )

    _shares_whole = field_validator("shares")(_whole)

    @model_validator(mode="after")
    def _shares_are_the_parties(self) -> Self:
        parties = {self.host.gss, *(c.gss for c in self.served)}
        if self.shares and {s.council.gss for s in self.shares} != parties:
            raise ValueError("shares: give one to the host and to each council it serves")
        return self


class MoveRequestedData(Contract):
    vesting: date
    kind: Literal["merge", "split"]
    source: TenancyId = Field(description="the predecessor's tenancy, whose data move")
    predecessor: GssCode
    service_id: ServiceId
    tier: IsolationTier
    successor: Council = Field(description="the council whose tenancy takes the data")
    creates_target: bool = Field(description="the successor's tenancy is made for this move")
    agreement: SuccessorAgreement


class MoveRequested(CloudEvent):
    """Move a predecessor's tenancy into its successor's (the subject), making that first if
    the plan says so."""

    topic = Topic.MOVE_REQUESTED
    type: Literal["uk.gov.tenancy.reorganisation.move_requested.v1"]
    data: MoveRequestedData


class DataMoveRequestedData(Contract):
    source: TenancyId
    service: ServiceManifest = Field(description="the manifest both tenancies are migrated to")


class DataMoveRequested(CloudEvent):
    """Move every row of ``source`` into the subject's tables, verified by counts and checksums."""

    topic = Topic.DATA_MOVE_REQUESTED
    type: Literal["uk.gov.tenancy.isolation.data_move_requested.v1"]
    data: DataMoveRequestedData


class MovedTable(Contract):
    """One table's rows before and after; checksums are order-independent sums of row hashes,
    so the target's after less its before is the rows that arrived."""

    name: str
    source_rows: int = Field(ge=0)
    target_rows_before: int = Field(ge=0)
    target_rows_after: int = Field(ge=0)
    source_checksum: str = Field(pattern=r"^-?[0-9]{1,40}$")
    target_checksum_before: str = Field(pattern=r"^-?[0-9]{1,40}$")
    target_checksum_after: str = Field(pattern=r"^-?[0-9]{1,40}$")


class DataMovedData(Contract):
    source: TenancyId
    service_id: ServiceId
    tier: IsolationTier
    tables: list[MovedTable]


class DataMoved(CloudEvent):
    topic = Topic.DATA_MOVED
    type: Literal["uk.gov.tenancy.isolation.data_moved.v1"]
    data: DataMovedData


class DataMoveFailedData(Contract):
    source: TenancyId
    reason: str = Field(min_length=1, max_length=2000)


class DataMoveFailed(CloudEvent):
    """Nothing was moved: the source's data and login are as they were."""

    topic = Topic.DATA_MOVE_FAILED
    type: Literal["uk.gov.tenancy.isolation.data_move_failed.v1"]
    data: DataMoveFailedData


class TenancyReorganisedData(Contract):
    target: TenancyId = Field(description="the successor's tenancy that holds the data now")
    successor: GssCode
    service_id: ServiceId
    vesting: date
    closes_at: datetime = Field(
        description="the instant the predecessor's billing ends and the successor's continues:"
        " midnight starting vesting day, London time"
    )
    served: list[GssCode] = Field(
        default_factory=list, description="a split's successors the host serves, sharing cost"
    )
    shares: list[CostShare] = Field(
        default_factory=list,
        description="a split's agreement: each council's share of the host's invoices from"
        " closes_at on (the host's and every served council's, adding up to exactly 1)",
    )

    _shares_whole = field_validator("shares")(_whole)


class TenancyReorganised(CloudEvent):
    """The predecessor's tenancy (the subject) ended: its data are verified in ``target``."""

    topic = Topic.TENANCY_REORGANISED
    type: Literal["uk.gov.tenancy.onboarding.reorganised.v1"]
    data: TenancyReorganisedData


class RetirementRequestedData(Contract):
    target: TenancyId = Field(description="the successor's tenancy the data were moved into")
    service: ServiceManifest


class RetirementRequested(CloudEvent):
    """A reorganised predecessor (the subject), its move verified: export its frozen data as
    offboarding does, then drop its schema, database or rows and its role."""

    topic = Topic.RETIREMENT_REQUESTED
    type: Literal["uk.gov.tenancy.isolation.retirement_requested.v1"]
    data: RetirementRequestedData


class PredecessorRetired(CloudEvent):
    """The predecessor's frozen data were exported, then dropped, with its role."""

    topic = Topic.PREDECESSOR_RETIRED
    type: Literal["uk.gov.tenancy.isolation.retired.v1"]
    data: IsolationRemovedData


class RetirementFailedData(Contract):
    reason: str = Field(min_length=1, max_length=2000)


class RetirementFailed(CloudEvent):
    """Nothing was dropped: the predecessor's frozen data are as they were."""

    topic = Topic.RETIREMENT_FAILED
    type: Literal["uk.gov.tenancy.isolation.retirement_failed.v1"]
    data: RetirementFailedData


# -- usage and billing --------------------------------------------------------------------------


class UsageData(Contract):
    meter: str = Field(min_length=1, max_length=63, description="a meter key of the service")
    quantity: Decimal = Field(
        default=Decimal(1),
        ge=0,
        max_digits=20,
        decimal_places=6,
        description="units used; for a count meter a whole number",
    )
    value: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="what is counted once per period by a unique_count meter (e.g. a user id)",
    )


class UsageRecorded(Contract):
    """Usage a shared service reports, as a CloudEvent in structured or binary mode; (source,
    id) identify it.

    Not a :class:`CloudEvent` subclass: services choose their own ids (any string), ``time`` is
    required because it decides the billing period, and, this being the one event other teams
    produce, CloudEvents extension attributes are accepted (the platform's own events have none:
    an unknown field there is a bug to refuse)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[ExtensionName, ExtensionValue] = Field(init=False)

    topic: ClassVar[Topic] = Topic.USAGE_RECORDED

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200, description="the shared service")
    type: Literal["uk.gov.tenancy.usage.recorded.v1"]
    subject: TenancyId
    time: datetime = Field(description="when the usage happened; must carry a time zone")
    datacontenttype: Literal["application/json"] | None = None
    data: UsageData


class BillingCloseRequestedData(Contract):
    service: ServiceManifest = Field(description="the manifest whose pricing applies")
    period: str = Field(
        pattern=PERIOD, description="a month (2026-11) or a financial year (FY2026-27)"
    )


class BillingCloseRequested(CloudEvent):
    """Freeze a service's billing period, price every tenancy's usage and issue invoices."""

    topic = Topic.BILLING_CLOSE_REQUESTED
    type: Literal["uk.gov.tenancy.billing.close_requested.v1"]
    subject: ServiceId = Field(description="the service, which is also the message key")
    data: BillingCloseRequestedData


class InvoiceLine(Contract):
    kind: Literal["flat_fee", "usage", "cost_share", "adjustment"]
    description: str
    meter: str | None = None
    quantity: Decimal | None = None
    amount_pence: int


class InvoiceParty(Contract):
    """A council's part of an invoice shared under an inter-authority agreement."""

    council: Council
    share: str = Field(pattern=FRACTION, description="its exact share under the agreement")
    amount_pence: int = Field(description="its part of the total, in whole pence")


class InvoiceIssuedData(Contract):
    invoice_id: uuid.UUID
    service_id: ServiceId
    period: str = Field(pattern=PERIOD)
    council: Council
    purchase_order: PurchaseOrder | None = None
    lines: list[InvoiceLine]
    total_pence: int
    final: bool = Field(default=False, description="the last invoice of a tenancy that left")
    parties: list[InvoiceParty] = Field(
        default_factory=list,
        description="a split's host: each council's share of the total under the agreement,"
        " the amounts adding up to it exactly; empty when the council invoiced pays it all",
    )

    @model_validator(mode="after")
    def _parties_add_up(self) -> Self:
        if self.parties and sum(p.amount_pence for p in self.parties) != self.total_pence:
            raise ValueError("parties: their amounts must add up to the total")
        return self


class InvoiceIssued(CloudEvent):
    topic = Topic.INVOICE_ISSUED
    type: Literal["uk.gov.tenancy.billing.invoice_issued.v1"]
    data: InvoiceIssuedData


EVENT_TYPES: tuple[type[CloudEvent], ...] = (
    OnboardingRequested,
    TenancyRegistered,
    IsolationReady,
    BrandingApplied,
    BrandChangeRequested,
    BrandRollbackRequested,
    MeteringEnabled,
    StepFailed,
    TenancyProvisioned,
    TenancyFailed,
    OffboardingRequested,
    IsolationRemoved,
    TenancyOffboarded,
    MigrationRequested,
    TenancyMigrated,
    CredentialsRotationRequested,
    CredentialsRotated,
    BillingCloseRequested,
    InvoiceIssued,
    MoveRequested,
    DataMoveRequested,
    DataMoved,
    DataMoveFailed,
    TenancyReorganised,
    RetirementRequested,
    PredecessorRetired,
    RetirementFailed,
)
