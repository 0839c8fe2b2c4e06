"""Who may do what: the caller's token, its role, and the scope every query is narrowed to.

A tenancy outside the caller's scope is answered ``404``, exactly as one that does not exist,
so a council cannot learn which ids belong to others. A role that may never use an endpoint is
answered ``403``, before anything is looked up. A client that keeps sending wrong tokens is
answered ``429`` for a while (:mod:`api.throttle`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.platform import Platform, client_of, platform
from api.problems import Problem
from api.throttle import TooManyFailures
from api.tokens import Principal, Role
from shared.catalogue import ServiceManifest

# Declares the scheme in the OpenAPI document (the "Authorize" button of /docs, and each
# operation's security); the answers without a token stay this module's problem documents.
bearer = HTTPBearer(
    scheme_name="token",
    description="An API token from `tenancy tokens create`, as `Authorization: Bearer <token>`.",
    auto_error=False,
)


async def caller(
    request: Request,
    deps: Annotated[Platform, Depends(platform)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Problem(401, "send a token as 'Authorization: Bearer <token>'")
    try:
        found = await deps.authenticate(token, client_of(request))
    except TooManyFailures as refused:
        raise Problem(
            429, str(refused), headers={"Retry-After": str(refused.retry_after)}
        ) from None
    if found is None:
        raise Problem(401, "the token is not known or was revoked")
    return found


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    async def check(who: Annotated[Principal, Depends(caller)]) -> Principal:
        if who.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Problem(403, f"a {who.role.value} token cannot do this (allowed: {allowed})")
        return who

    return check


def runs(who: Principal, service_id: str, owner_council: str) -> bool:
    """An operator runs the services of its council (or the one service) it is scoped to."""
    return (who.service is None or who.service == service_id) and (
        who.council is None or who.council == owner_council
    )


def may_register(who: Principal, manifest: ServiceManifest) -> bool:
    return who.role is Role.OPERATOR and runs(who, manifest.id, manifest.owner_council)


@dataclass(frozen=True)
class TenancyScope:
    council: str
    service: str
    owner: str


def sees(who: Principal, tenancy: TenancyScope) -> bool:
    in_service = who.service is None or who.service == tenancy.service
    if who.role is Role.OPERATOR:
        return runs(who, tenancy.service, tenancy.owner)
    if who.role is Role.COUNCIL_ADMIN:
        return in_service and who.council == tenancy.council
    if who.role is Role.FINANCE:
        return in_service and who.council in (None, tenancy.council, tenancy.owner)
    return False


def sql_scope(who: Principal, first: int) -> tuple[str, list[str | None]]:
    """The same rule as :func:`sees`, as a WHERE clause on ``t`` (tenancies) joined with ``s``
    (services), with its parameters numbered from ``first``."""
    service, council = f"${first}::text", f"${first + 1}::text"
    in_service = f"({service} IS NULL OR t.service_id = {service})"
    if who.role is Role.OPERATOR:
        clause = f"{in_service} AND ({council} IS NULL OR s.owner_council = {council})"
    elif who.role is Role.COUNCIL_ADMIN:
        clause = f"{in_service} AND t.council_gss = {council}"
    elif who.role is Role.FINANCE:
        clause = (
            f"{in_service} AND ({council} IS NULL OR t.council_gss = {council}"
            f" OR s.owner_council = {council})"
        )
    else:
        clause = "false"
    return clause, [who.service, who.council]
