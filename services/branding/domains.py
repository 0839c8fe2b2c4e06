"""Verifying that a council controls the custom domain it named.

The council publishes a DNS TXT record holding a token; a *check* decides whether that record is
there. Checks are pluggable (``DOMAIN_CHECK=package.module:function``) so an operator can use
their own resolver or an API of their DNS provider. The default check works offline and never
verifies, which leaves every domain ``pending verification`` until a real check is configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from services.branding.rules import txt_record
from shared.events import DomainClaim

DomainCheck = Callable[[str, str, str], Awaitable[bool]]
"""``check(domain, txt_record_name, expected_value) -> True`` when the record is published."""

TXT_VALUE_PREFIX = "tenancy-verification="


async def offline_check(domain: str, record: str, value: str) -> bool:
    return False


def load_check(path: str) -> DomainCheck:
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"DOMAIN_CHECK: {path!r} is not of the form package.module:function")
    check: DomainCheck = getattr(importlib.import_module(module_name), attribute)
    return check


def claim(domain: str, token: str, verified: bool) -> DomainClaim:
    return DomainClaim(
        name=domain,
        status="verified" if verified else "pending verification",
        txt_record=txt_record(domain),
        txt_value=TXT_VALUE_PREFIX + token,
    )
