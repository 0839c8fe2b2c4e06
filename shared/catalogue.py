"""The shared-service manifest: what a service needs from every council that joins it.

A new shared service is added by writing one of these as YAML, never by writing code.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.identifiers import GssCode, ServiceId


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Governance(StrEnum):
    HOSTED = "hosted"  # one council runs it and charges the others
    JOINT = "joint"  # owned jointly; running costs shared by usage
    FREE = "free"  # provided at no charge


class IsolationTier(StrEnum):
    POOLED = "pooled"  # shared tables, rows kept apart by forced row-level security
    SCHEMA = "schema"  # one schema per tenancy in the service's database
    DATABASE = "database"  # one database per tenancy


class Migration(Manifest):
    version: int = Field(ge=1)
    description: str = Field(default="", max_length=200)
    sql: str = Field(min_length=1)


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


class BrandingNeeds(Manifest):
    logo_required: bool = False
    custom_domain: bool = False


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

    @model_validator(mode="after")
    def _unique_keys(self) -> Self:
        versions = [m.version for m in self.migrations]
        if versions != sorted(set(versions)):
            raise ValueError("migrations: versions must be unique and in ascending order")
        keys = [m.key for m in self.meters]
        if len(keys) != len(set(keys)):
            raise ValueError("meters: each key must be unique")
        return self


class ManifestError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, naming the field and the rule it broke."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"{where}: {problem['msg']}")
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
