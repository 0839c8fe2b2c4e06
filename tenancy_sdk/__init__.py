"""Tenancy's SDK for the shared services that run on it.

A service imports this to know its tenancies (from the platform's lifecycle events), to reach
each one's data as that tenancy's own database role, to read its current theme, and to report
usage exactly once. See README, "Run your service on Tenancy".

    async with TenancyClient(SdkSettings()) as tenancy:
        found = tenancy.resolve(request.headers["host"], request.url.path)
        rows = await tenancy.run(found.tenancy, lambda conn: conn.fetch("SELECT ..."))
"""

from tenancy_sdk.client import NotServed, Resolved, TenancyClient
from tenancy_sdk.credentials import Credentials, CredentialSource, CredentialsUnavailable
from tenancy_sdk.directory import Council, Directory, Isolation, Tenancy
from tenancy_sdk.settings import SdkSettings
from tenancy_sdk.theme import Theme
from tenancy_sdk.usage import OUTBOX_MIGRATION, OUTBOX_TABLE, record_usage

__all__ = [
    "OUTBOX_MIGRATION",
    "OUTBOX_TABLE",
    "Council",
    "CredentialSource",
    "Credentials",
    "CredentialsUnavailable",
    "Directory",
    "Isolation",
    "NotServed",
    "Resolved",
    "SdkSettings",
    "Tenancy",
    "TenancyClient",
    "Theme",
    "record_usage",
]
