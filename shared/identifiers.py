"""Identifiers that may reach SQL, validated at the edge so hostile input never gets that far.

Validation is the first line; every identifier is still quoted where it is used (``quote_ident``).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

GSS_PATTERN = r"^[ENSWK]\d{8}$"
SERVICE_ID_PATTERN = r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$"
_SQL_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

GssCode = Annotated[str, StringConstraints(pattern=GSS_PATTERN)]
ServiceId = Annotated[str, StringConstraints(pattern=SERVICE_ID_PATTERN)]


def _canonical_uuid(value: str) -> str:
    return str(uuid.UUID(value))


TenancyId = Annotated[str, AfterValidator(_canonical_uuid)]


def new_tenancy_id() -> str:
    return str(uuid.uuid4())


def quote_ident(name: str) -> str:
    """Quote a PostgreSQL identifier; refuses anything that is not a plain lower-case name."""
    if not _SQL_IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL byte in SQL literal")
    return "'" + value.replace("'", "''") + "'"


def tenant_object_name(tenancy_id: str) -> str:
    """Schema and role name of one tenancy: derived, never taken from input."""
    return "tenant_" + uuid.UUID(tenancy_id).hex


def service_database_name(platform_database: str, service_id: str) -> str:
    name = f"{platform_database}_{service_id.replace('-', '_')}"
    quote_ident(name)
    return name
