"""Sign-in tokens for trying the web pages on the local embedded stack.

Why ``make run`` makes them at all: the done-when of the web pages is a person opening the
printed address and joining a service without reading documentation, and the sign-in page
needs a token. On the embedded stack the person at the terminal started PostgreSQL themselves
and could make any token with ``tenancy tokens create``; printing one for them gives nothing
away. So the launcher makes a council admin token (for ``TENANCY_DEV_COUNCIL``, Lambeth by
default, the council the README's examples join) and an operator token, once: they are kept in
``.tenancy/dev-tokens.json`` (mode 0600, beside the database they belong to) and reused on the
next start while they still work, so a bookmark or a browser that is signed in keeps working.
A revoked one is replaced. With ``DATABASE_URL`` set (someone else's, perhaps shared,
PostgreSQL) none is made: tokens there are for their owner to hand out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from api.tokens import Role, authenticate, create
from shared import db

FILE_NAME = "dev-tokens.json"
SERVICE_FILE_NAME = "service-tokens.json"
DEFAULT_COUNCIL = "E09000022"  # London Borough of Lambeth
LABEL = "make run (local development)"


@dataclass(frozen=True)
class DevToken:
    role: Role
    council: str | None
    token: str


def wanted(council: str) -> list[tuple[Role, str | None]]:
    return [(Role.COUNCIL_ADMIN, council), (Role.OPERATOR, None)]


async def ensure(database_url: str, folder: Path, council: str) -> list[DevToken]:
    """The development tokens, made only where the stored ones no longer work."""
    return await _ensure(
        database_url, folder / FILE_NAME, [(r, c, None) for r, c in wanted(council)]
    )


async def service_token(database_url: str, folder: Path, service: str) -> str:
    """The token the reference service runs with (role ``service``, for ``service`` alone): it
    fetches its tenancies' logins with it. Made whatever the database, as the service cannot
    run without one; kept like the others, and never written to stack.env."""
    found = await _ensure(database_url, folder / SERVICE_FILE_NAME, [(Role.SERVICE, None, service)])
    return found[0].token


async def _ensure(
    database_url: str, path: Path, wanted: list[tuple[Role, str | None, str | None]]
) -> list[DevToken]:
    stored = _read(path)
    pool = await db.create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            found = []
            for role, council, service in wanted:
                key = f"{role.value}:{council or service or ''}"
                token = stored.get(key)
                principal = await authenticate(conn, token) if token else None
                if token is None or principal is None or principal.role is not role:
                    token, _ = await create(conn, role, council, service, LABEL)
                found.append((key, DevToken(role, council, token)))
    finally:
        await pool.close()
    kept = {key: t.token for key, t in found}
    if kept != stored:
        _write(path, kept)
    return [t for _, t in found]


def _read(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str)}


def _write(path: Path, tokens: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(tokens, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)
