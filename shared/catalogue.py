"""The shared-service manifest: what a service needs from every council that joins it.

A new shared service is added by writing one of these as YAML, never by writing code.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared import migration_sql
from shared.identifiers import GssCode, ServiceId
from shared.text import NulFree


class Manifest(NulFree):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Governance(StrEnum):
    HOSTED = "hosted"  # one council runs it and charges the others
    JOINT = "joint"  # owned jointly; running costs shared by usage
    FREE = "free"  # provided at no charge


class IsolationTier(StrEnum):
    POOLED = "pooled"  # shared tables, rows kept apart by forced row-level security
    SCHEMA = "schema"  # one schema per tenancy in the service's database
    DATABASE = "database"  # one database per tenancy


def _allowed_sql(sql: str) -> str:
    refused = migration_sql.problems(sql)
    if refused:
        raise _rule("", "; ".join(refused))
    return sql


class Migration(Manifest):
    version: int = Field(ge=1)
    description: str = Field(default="", max_length=200)
    # Checked with PostgreSQL's parser against what a migration may do (shared.migration_sql).
    sql: Annotated[str, Field(min_length=1), AfterValidator(_allowed_sql)]


class Aggregation(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"


class Meter(Manifest):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    aggregation: Aggregation = Aggregation.COUNT
    unit: str = Field(default="unit", max_length=40)
    description: str = Field(default="", max_length=200)


def _exact_decimal(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("write a number, not true or false")
    if isinstance(value, float):
        # YAML reads 0.1 as a binary float; its str() is the shortest text that reads back as
        # the same float, which is what the author wrote, so the price stays exactly 0.1.
        return Decimal(str(value))
    return value


# Pounds, written in YAML as a string ("0.25") or a number (50). Four decimal places let a unit
# cost a fraction of a penny; invoices round each line to the penny (services.metering.pricing).
Pounds = Annotated[
    Decimal, BeforeValidator(_exact_decimal), Field(ge=0, max_digits=12, decimal_places=4)
]
Units = Annotated[Decimal, BeforeValidator(_exact_decimal), Field(ge=0)]


class PeriodKind(StrEnum):
    MONTH = "month"  # calendar month, Europe/London
    FINANCIAL_YEAR = "financial_year"  # 1 April to 31 March, as councils budget


class Tier(Manifest):
    # Inclusive upper bound of the billable units this tier prices; the last tier has none.
    up_to: int | None = Field(default=None, ge=1)
    unit_price: Pounds


class Package(Manifest):
    size: int = Field(ge=1)  # units per package
    price: Pounds  # per package started: 101 units in packages of 100 pay for two


class Charge(Manifest):
    """How one meter's usage in a period is charged, after its free allowance.

    Exactly one model: ``unit_price`` (every billable unit at one price), ``tiers`` (graduated:
    each unit at the price of the tier it falls in, as income tax bands work) or ``package``.
    The last tier must leave ``up_to`` out: a finance officer reading a last tier "up to 5,000"
    would fairly assume units above it are free, so the manifest has to say what they cost.
    """

    meter: str
    free_allowance: Units = Decimal(0)
    unit_price: Pounds | None = None
    tiers: list[Tier] | None = None
    package: Package | None = None

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        chosen = [
            name for name in ("unit_price", "tiers", "package") if getattr(self, name) is not None
        ]
        if len(chosen) != 1:
            found = " and ".join(chosen) if chosen else "none of them"
            raise _rule("", f"give exactly one of unit_price, tiers or package (found {found})")
        if self.tiers is not None:
            if not self.tiers:
                raise _rule("tiers", "give at least one tier")
            *bounded, last = self.tiers
            if last.up_to is not None:
                raise _rule(
                    f"tiers.{len(bounded)}.up_to",
                    "leave up_to out of the last tier: it prices every unit above the tier "
                    "before it",
                )
            previous = 0
            for index, tier in enumerate(bounded):
                if tier.up_to is None:
                    raise _rule(f"tiers.{index}.up_to", "only the last tier may leave up_to out")
                if tier.up_to <= previous:
                    raise _rule(
                        f"tiers.{index}.up_to",
                        f"{tier.up_to} is not above the tier before it ({previous}); "
                        "tiers go in ascending order of up_to",
                    )
                previous = tier.up_to
        return self


class CostShare(Manifest):
    running_cost: Pounds  # per period, shared among the councils using the service
    meter: str  # whose usage decides each council's share


class Pricing(Manifest):
    period: PeriodKind = PeriodKind.MONTH
    flat_fee: Pounds = Decimal(0)  # per tenancy per period
    charges: list[Charge] = Field(default_factory=list)
    cost_share: CostShare | None = None

    @property
    def charges_anything(self) -> bool:
        return bool(self.charges) or self.flat_fee > 0 or self.cost_share is not None


class BrandingNeeds(Manifest):
    logo_required: bool = False
    custom_domain: bool = False


def _at_most_2000_characters(url: HttpUrl) -> HttpUrl:
    if len(str(url)) > 2000:
        raise ValueError("a URL of at most 2,000 characters")
    return url


class Agreement(Manifest):
    """The terms a council accepts to join; a new version must be accepted by new joiners."""

    version: str = Field(default="1", pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,19}$")
    title: str = Field(default="Terms of joining", min_length=1, max_length=200)
    # Well under HttpUrl's own limit: it adds a trailing "/" when it normalises a URL, so one
    # at the limit would be stored and then refused when read back.
    url: Annotated[HttpUrl, AfterValidator(_at_most_2000_characters)] | None = None


class MergeKeys(StrEnum):
    """How a merge keeps the keys of the predecessors' rows apart from the successor's, when
    the schema and database tiers copy them into the successor's tables."""

    KEEP = "keep"  # copied as they are: keys are unique across councils (UUIDs, UPRNs)
    # Identity and serial columns take values above any the successor's table has issued,
    # and the columns referencing them follow.
    RENUMBER = "renumber"


class ReorganisationNeeds(Manifest):
    merge_keys: MergeKeys = MergeKeys.KEEP


class ServiceManifest(Manifest):
    id: ServiceId
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    owner_council: GssCode
    governance: Governance = Governance.HOSTED
    isolation: IsolationTier = IsolationTier.SCHEMA
    migrations: list[Migration] = Field(default_factory=list)
    meters: list[Meter] = Field(default_factory=list)
    branding: BrandingNeeds = Field(default_factory=BrandingNeeds)
    agreement: Agreement = Field(default_factory=Agreement)
    pricing: Pricing | None = None  # None: councils are not charged
    reorganisation: ReorganisationNeeds = Field(default_factory=ReorganisationNeeds)

    @model_validator(mode="after")
    def _merge_keys_fit(self) -> Self:
        if (
            self.isolation is IsolationTier.POOLED
            and self.reorganisation.merge_keys is MergeKeys.RENUMBER
        ):
            raise _rule(
                "reorganisation.merge_keys",
                "a pooled service's rows are re-tagged to the successor where they are, so "
                "their keys cannot clash; 'renumber' is for the schema and database tiers",
            )
        return self

    @model_validator(mode="after")
    def _unique_keys(self) -> Self:
        versions = [m.version for m in self.migrations]
        if versions != sorted(set(versions)):
            raise ValueError("migrations: versions must be unique and in ascending order")
        keys = [m.key for m in self.meters]
        if len(keys) != len(set(keys)):
            raise ValueError("meters: each key must be unique")
        return self

    @model_validator(mode="after")
    def _pricing_fits(self) -> Self:
        pricing = self.pricing
        if pricing is None:
            return self
        if self.governance is Governance.FREE and pricing.charges_anything:
            raise _rule(
                "pricing",
                "a service with governance 'free' charges nothing; remove its pricing or "
                "change its governance",
            )
        if pricing.cost_share is not None and self.governance is not Governance.JOINT:
            raise _rule(
                "pricing.cost_share",
                "only a service with governance 'joint' shares its running cost "
                f"(this one is '{self.governance}')",
            )
        meters = [m.key for m in self.meters]
        declared = f"({', '.join(meters)})" if meters else "(it declares none)"
        priced: dict[str, int] = {}
        for index, charge in enumerate(pricing.charges):
            field = f"pricing.charges.{index}.meter"
            if charge.meter not in meters:
                raise _rule(
                    field, f"{charge.meter!r} is not one of this service's meters {declared}"
                )
            if charge.meter in priced:
                raise _rule(
                    field,
                    f"{charge.meter!r} is already charged by pricing.charges.{priced[charge.meter]}"
                    "; give each meter one charge",
                )
            priced[charge.meter] = index
        if pricing.cost_share is not None and pricing.cost_share.meter not in meters:
            raise _rule(
                "pricing.cost_share.meter",
                f"{pricing.cost_share.meter!r} is not one of this service's meters {declared}",
            )
        return self


def _rule(field: str, rule: str) -> PydanticCustomError:
    """A broken manifest rule, naming the field (dotted, relative to the model checking it).

    Pydantic files a model validator's error at the model itself and prefixes a ValueError's
    message with "Value error, "; carrying the field lets ``describe_validation_error`` print
    "pricing.charges.0.meter: ..." like pydantic's own errors.
    """
    if not field:
        return PydanticCustomError("manifest_rule", "{rule}", {"field": "", "rule": rule})
    return PydanticCustomError("manifest_rule", "{field}: {rule}", {"field": field, "rule": rule})


class ManifestError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, naming the field and the rule it broke."""
    lines = []
    for problem in error.errors():
        parts = [str(part) for part in problem["loc"]]
        message = problem["msg"]
        context = problem.get("ctx") or {}
        if problem["type"] == "manifest_rule":
            parts += [context["field"]] if context["field"] else []
            message = context["rule"]
        where = ".".join(parts) or "(top level)"
        lines.append(f"{where}: {message}")
    return lines


def load_manifest(path: Path) -> ServiceManifest:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ManifestError(path, [f"not valid YAML: {error}"]) from error
    if not isinstance(raw, dict):
        raise ManifestError(path, ["a manifest is a YAML mapping of fields"])
    try:
        return ServiceManifest.model_validate(raw)
    except ValidationError as error:
        raise ManifestError(path, describe_validation_error(error)) from error


def load_catalogue(path: Path) -> list[ServiceManifest]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [load_manifest(file) for file in files]
