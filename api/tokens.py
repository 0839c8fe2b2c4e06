"""API tokens: random, shown once, stored as a SHA-256 hash, each with a role and a scope.

A token has 256 random bits, so a fast hash is enough: nobody can guess one from its hash.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from shared.db import Connection

MIGRATIONS = Path(__file__).parent / "migrations"
PREFIX = "tny_"


class Role(StrEnum):
    OPERATOR = "operator"  # every action on the services it runs
    COUNCIL_ADMIN = "council-admin"  # onboard and view its own council's tenancies
    FINANCE = "finance"  # read usage and invoices
    AUDITOR = "auditor"  # read the audit trail
    # Not a person: the software of one shared service, which fetches its tenancies'
    # credentials and reports their usage (``GET .../credentials``, ``POST /usage``) and
    # nothing else. Always narrowed to that one service.
    SERVICE = "service"


# The roles people hold: everything but a service's software, which cannot sign in to the pages.
PEOPLE = tuple(role for role in Role if role is not Role.SERVICE)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's role and scope. ``council`` and ``service`` narrow it."""

    token_id: str
    role: Role
    council: str | None
    service: str | None

    @property
    def actor(self) -> str:
        scope = ", ".join(filter(None, [self.role.value, self.council, self.service]))
        return f"token:{self.token_id[:8]} ({scope})"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scope(role: Role, council: str | None, service: str | None) -> None:
    """Refuse a scope the role cannot have (``ValueError``, naming the option)."""
    if role is Role.COUNCIL_ADMIN and council is None:
        raise ValueError("council: a council-admin token needs --council, the council's GSS code")
    if role is Role.SERVICE and service is None:
        raise ValueError(
            "service: a service token needs --service, the id of the shared service whose"
            " software uses it (e.g. --service bin-collections)"
        )
    if role is Role.SERVICE and council is not None:
        raise ValueError(
            "council: a service token acts for its service in every tenancy of it;"
            " leave out --council"
        )


async def create(
    conn: Connection, role: Role, council: str | None, service: str | None, label: str = ""
) -> tuple[str, Principal]:
    """A new token with this role and scope: the token itself (shown once, never stored) and
    its principal. A service's token: ``create(conn, Role.SERVICE, None, "bin-collections")``."""
    check_scope(role, council, service)
    token = PREFIX + secrets.token_urlsafe(32)
    token_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO api.tokens (id, token_sha256, role, council, service, label)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        token_id,
        digest(token),
        role.value,
        council,
        service,
        label,
    )
    return token, Principal(token_id, role, council, service)


async def authenticate(conn: Connection, token: str) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT id::text, role, council, service FROM api.tokens"
        " WHERE token_sha256 = $1 AND revoked_at IS NULL",
        digest(token),
    )
    if row is None:
        return None
    return Principal(row["id"], Role(row["role"]), row["council"], row["service"])


async def revoke(conn: Connection, token_id: str) -> bool:
    done = await conn.fetchval(
        "UPDATE api.tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
        " RETURNING true",
        token_id,
    )
    return bool(done)
