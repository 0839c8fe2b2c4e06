"""What isolating one tenancy means in SQL, as a plan built without touching a database.

Every name is derived from the tenancy id and quoted; nothing from a request is spliced in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shared.catalogue import Migration
from shared.identifiers import quote_ident, quote_literal, tenant_object_name


@dataclass(frozen=True)
class TenantNames:
    database: str
    schema: str
    role: str

    @classmethod
    def for_tenancy(cls, tenancy_id: str, database: str) -> TenantNames:
        name = tenant_object_name(tenancy_id)
        return cls(database=database, schema=name, role=name)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier, so the clear password never reaches the server or its logs."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def database_setup(database: str) -> list[str]:
    """Once per service database: nobody but the platform and granted tenants may connect."""
    db = quote_ident(database)
    return [
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        "CREATE SCHEMA IF NOT EXISTS tenancy_platform",
        "REVOKE ALL ON SCHEMA tenancy_platform FROM PUBLIC",
        """CREATE TABLE IF NOT EXISTS tenancy_platform.tenants (
            tenancy_id uuid PRIMARY KEY,
            service_id text NOT NULL,
            tier text NOT NULL,
            schema_name text NOT NULL,
            role_name text NOT NULL,
            password text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE IF NOT EXISTS tenancy_platform.tenant_migrations (
            tenancy_id uuid NOT NULL REFERENCES tenancy_platform.tenants (tenancy_id),
            version integer NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenancy_id, version)
        )""",
    ]


def schema_tier(names: TenantNames, verifier: str, connection_limit: int) -> list[str]:
    """A platform-owned schema that only the tenancy's own login role may use."""
    role, schema, db = (quote_ident(n) for n in (names.role, names.schema, names.database))
    return [
        f"CREATE ROLE {role} LOGIN PASSWORD {quote_literal(verifier)} NOSUPERUSER NOCREATEDB"
        f" NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {connection_limit:d}",
        f"GRANT CONNECT ON DATABASE {db} TO {role}",
        f"CREATE SCHEMA {schema}",
        f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"ALTER ROLE {role} IN DATABASE {db} SET search_path = {schema}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}"
        f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]


def migration_statements(names: TenantNames, migration: Migration) -> list[str]:
    """Run a manifest migration as the platform, confined to the tenant's schema by search_path."""
    return [
        f"SET LOCAL search_path = {quote_ident(names.schema)}, pg_catalog",
        migration.sql,
        "RESET search_path",
    ]
