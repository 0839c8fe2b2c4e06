"""A tenancy's own database login, for the software of the shared service it belongs to.

The service's software fetches it over this authenticated channel when it starts, for each
tenancy it serves, and again once a password stops working (it was rotated). The answer holds
the password: it is never cached (``Cache-Control: no-store``) nor logged, and fetching it
changes nothing, so it is logged without being an audit entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from api.access import allow
from api.platform import Platform, platform
from api.problems import Problem, documented
from api.tokens import Principal, Role
from services.isolation.credentials import NoCredentials, tenant_login
from shared.catalogue import IsolationTier
from shared.logging import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["a service's software"])
SERVICE = allow(Role.SERVICE)


class TenancyCredentials(BaseModel):
    tenancy_id: uuid.UUID
    service_id: str = Field(examples=["bin-collections"])
    tier: IsolationTier = Field(description="how the tenancy's data is kept apart")
    database: str = Field(description="the database its data is in")
    schema_: str = Field(
        alias="schema", description="its schema (its own in the schema and database tiers)"
    )
    role: str = Field(description="its own login role")
    dsn: str = Field(
        description="its connection string, with the password: keep it in memory only",
        examples=["postgresql://tenant_3f0c...:secret@127.0.0.1:5432/tenancy_bin_collections"],
    )
    rotated_at: datetime | None = Field(description="when the password was last rotated")


@router.get(
    "/services/{service_id}/tenancies/{tenancy_id}/credentials",
    response_model=TenancyCredentials,
    responses={
        200: {
            "description": "The tenancy's login; never cached.",
            "headers": {"Cache-Control": {"schema": {"type": "string"}, "description": "no-store"}},
        },
        **documented(
            401,
            403,
            404,
            422,
            429,
            meanings={
                403: "Not a service token.",
                404: "No such tenancy of this token's service, or one not isolated yet or"
                " offboarded: they look the same.",
            },
        ),
    },
)
async def credentials(
    service_id: Annotated[str, Path(max_length=63)],
    tenancy_id: uuid.UUID,
    response: Response,
    deps: Annotated[Platform, Depends(platform)],
    who: Annotated[Principal, Depends(SERVICE)],
) -> TenancyCredentials:
    """The tenancy's own login to its data, for the software of the service it belongs to:
    a service token only. Fetch it again when the password stops working: it was rotated."""
    response.headers["Cache-Control"] = "no-store"
    missing = Problem(404, f"no tenancy {tenancy_id}")
    if service_id != who.service:
        raise missing
    async with deps.pool.acquire() as conn:
        state = await conn.fetchval(
            "SELECT state FROM onboarding.tenancies WHERE id = $1 AND service_id = $2",
            tenancy_id,
            service_id,
        )
    if state is None or state == "offboarded":
        raise missing
    settings = deps.settings
    try:
        entry, dsn = await tenant_login(
            settings.tenant_server_url, settings.database_url, service_id, str(tenancy_id)
        )
    except NoCredentials:
        raise missing from None
    # The caller by its token's id (not secret); a key naming a token would be redacted.
    log.info("credentials fetched", tenancy_id=str(tenancy_id), caller=who.token_id)
    return TenancyCredentials(
        tenancy_id=tenancy_id,
        service_id=service_id,
        tier=entry.tier,
        database=entry.database,
        schema=entry.schema_name,
        role=entry.role_name,
        dsn=dsn,
        rotated_at=entry.rotated_at,
    )
