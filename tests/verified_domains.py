"""A DOMAIN_CHECK for worker processes under test: Hackney has published its TXT record."""

from __future__ import annotations

HACKNEY_DOMAIN = "bins.hackney.gov.uk"


async def verified(domain: str, record: str, value: str) -> bool:
    return domain == HACKNEY_DOMAIN
