"""What isolating a tenancy means in SQL, for each tier, as plans built without a database.

Every name is derived from the tenancy id or the service id and quoted; nothing from a request
is spliced in. The platform owns every database and schema. A service's own SQL runs as the
service's owner role, which logs in itself (never ``SET ROLE`` from the platform's session, which
that SQL could undo) and so owns the tables its migrations make; a tenant's login role gets only
the rights it needs on them, a fixed ``search_path``, and nothing on ``public``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shared.catalogue import IsolationTier, Migration
from shared.identifiers import quote_ident, quote_literal, tenant_object_name

POOLED_SCHEMA = "pooled"
TENANT_COLUMN = "tenant_role"
DML = "SELECT, INSERT, UPDATE, DELETE"
# A service owner's sessions: migrations of a few tenancies at a time, from each isolation
# worker's small pool; a limit, so hostile SQL cannot exhaust the server's connections.
OWNER_CONNECTION_LIMIT = 32


@dataclass(frozen=True)
class TenantNames:
    """Where a tenancy's data lives: ``database`` holds ``schema``; ``role`` logs in."""

    tier: IsolationTier
    service_database: str
    database: str
    schema: str
    role: str

    @property
    def owner(self) -> str:
        return service_owner(self.service_database)

    @classmethod
    def for_tenancy(
        cls, tenancy_id: str, tier: IsolationTier, service_database: str
    ) -> TenantNames:
        own = tenant_object_name(tenancy_id)
        return cls(
            tier=tier,
            service_database=service_database,
            database=own if tier is IsolationTier.DATABASE else service_database,
            schema=POOLED_SCHEMA if tier is IsolationTier.POOLED else own,
            role=own,
        )


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
    """Once per database the platform puts tenant data in: nobody connects, creates objects or
    makes temporary tables unless granted; the ledger lives in ``tenancy_platform``."""
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
        "ALTER TABLE tenancy_platform.tenants ADD COLUMN IF NOT EXISTS database_name text",
        "ALTER TABLE tenancy_platform.tenants ADD COLUMN IF NOT EXISTS rotated_at timestamptz",
        "ALTER TABLE tenancy_platform.tenants ADD COLUMN IF NOT EXISTS removed_at timestamptz",
        "ALTER TABLE tenancy_platform.tenants ADD COLUMN IF NOT EXISTS removal jsonb",
        """CREATE TABLE IF NOT EXISTS tenancy_platform.tenant_migrations (
            tenancy_id uuid NOT NULL,
            version integer NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenancy_id, version)
        )""",
        """CREATE TABLE IF NOT EXISTS tenancy_platform.service_migrations (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )""",
        # A reorganisation's moves, in the database holding the rows they moved, recorded in
        # the transaction that moved them: a redelivered request finds its move made.
        """CREATE TABLE IF NOT EXISTS tenancy_platform.tenant_moves (
            source_tenancy_id uuid PRIMARY KEY,
            target_tenancy_id uuid NOT NULL,
            result jsonb NOT NULL,
            moved_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE IF NOT EXISTS tenancy_platform.service_owner (
            role_name text PRIMARY KEY,
            password text NOT NULL
        )""",
    ]


def tenants_group(database: str) -> str:
    """The role through which tenants of a shared service database may connect to it, and
    in the pooled tier use its tables."""
    return "tenants_" + hashlib.blake2s(database.encode(), digest_size=8).hexdigest()


def service_owner(service_database: str) -> str:
    """The role a service's own SQL (its manifest's migrations) logs in as: it owns the objects
    those migrations make in the service's tenant schemas and nothing else."""
    return "owner_" + hashlib.blake2s(service_database.encode(), digest_size=8).hexdigest()


def shared_database_setup(database: str) -> list[str]:
    """Once per database several tenancies share (schema and pooled tiers): ``CONNECT`` is
    granted to one group, not to each tenant. A grant per tenant rewrites the database's ACL,
    which grows with every tenant: at 10,000 it cost 7 ms a tenancy, against 0.4 ms at 100,
    and concurrent grants fail with "tuple concurrently updated"."""
    group, db = quote_ident(tenants_group(database)), quote_ident(database)
    return [
        "DO $$ BEGIN"
        f" CREATE ROLE {group} NOLOGIN NOINHERIT;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        f"COMMENT ON ROLE {group} IS {quote_literal(f'tenants of database {database}')}",
        f"GRANT CONNECT ON DATABASE {db} TO {group}",
    ]


def owner_role(owner: str, verifier: str, *, exists: bool) -> list[str]:
    """The service owner's login: like a tenant's, no inherited, elevated or replication
    rights, and no way past row-level security. Its password is reset when the role outlived
    the record of it (a service database dropped and made again)."""
    attributes = (
        f"LOGIN PASSWORD {quote_literal(verifier)} NOSUPERUSER NOCREATEDB NOCREATEROLE"
        f" NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {OWNER_CONNECTION_LIMIT:d}"
    )
    verb = "ALTER" if exists else "CREATE"
    return [f"{verb} ROLE {quote_ident(owner)} {attributes}"]


def owner_access(database: str, owner: str) -> list[str]:
    """What the owner may do in a database holding tenant data: connect, and record the
    migrations it applies and the rows it moves in the transaction that does it. No other
    platform table (the tenants' passwords are in ``tenancy_platform.tenants``) and no right
    to create schemas, extensions or temporary tables."""
    role, db = quote_ident(owner), quote_ident(database)
    return [
        f"GRANT CONNECT ON DATABASE {db} TO {role}",
        f"GRANT USAGE ON SCHEMA tenancy_platform TO {role}",
        f"GRANT SELECT, INSERT ON tenancy_platform.tenant_migrations TO {role}",
        f"GRANT SELECT, INSERT ON tenancy_platform.service_migrations TO {role}",
        f"GRANT SELECT, INSERT ON tenancy_platform.tenant_moves TO {role}",
    ]


def login_role(names: TenantNames, verifier: str, connection_limit: int) -> list[str]:
    """The tenancy's own login role: no inherited, elevated or replication rights. A tenant of a
    shared database may connect to it through the tenants' group (see :func:`own_schema` for
    the database tier, whose database does not exist yet); a pooled tenant uses the shared
    tables through it too, its rows kept apart by :func:`row_level_security`."""
    role = quote_ident(names.role)
    statements = [
        f"CREATE ROLE {role} LOGIN PASSWORD {quote_literal(verifier)}"
        " NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"
        f" CONNECTION LIMIT {connection_limit:d}",
    ]
    if names.tier is not IsolationTier.DATABASE:
        # Only the group's rights are inherited, and the role can never become the group.
        group = quote_ident(tenants_group(names.database))
        statements.append(f"GRANT {group} TO {role} WITH INHERIT TRUE, SET FALSE")
    if names.tier is IsolationTier.POOLED:
        schema, db = quote_ident(names.schema), quote_ident(names.database)
        statements.append(f"ALTER ROLE {role} IN DATABASE {db} SET search_path = {schema}")
    return statements


def own_schema(names: TenantNames) -> list[str]:
    """A platform-owned schema only the tenancy's role uses and the service owner migrates
    (schema and database tiers). The owner's tables there are the tenant's to use."""
    role, schema, db = (quote_ident(n) for n in (names.role, names.schema, names.database))
    owner = quote_ident(names.owner)
    own_database = names.tier is IsolationTier.DATABASE
    return [
        *([f"GRANT CONNECT ON DATABASE {db} TO {role}"] if own_database else []),
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}",
        f"ALTER ROLE {role} IN DATABASE {db} SET search_path = {schema}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        f" GRANT {DML} ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        f" GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        # No GRANT ... ON ALL TABLES: the schema is new, and that statement's cost grows with
        # every relation on the server.
    ]


def pooled_schema(names: TenantNames) -> list[str]:
    """The service's shared schema: the owner migrates it, the tenants' group uses it."""
    schema = quote_ident(POOLED_SCHEMA)
    owner, group = quote_ident(names.owner), quote_ident(tenants_group(names.database))
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}",
        f"GRANT USAGE ON SCHEMA {schema} TO {group}",
    ]


def pooled_grants(names: TenantNames) -> list[str]:
    """Run by the owner after a migration: the tenants' group may use every shared table, and
    row-level security shows each tenant only its rows. One grant to the group, not one per
    tenant: a grant per tenant rewrites every table's ACL, which grows with every tenant."""
    schema, group = quote_ident(POOLED_SCHEMA), quote_ident(tenants_group(names.database))
    return [
        f"GRANT {DML} ON ALL TABLES IN SCHEMA {schema} TO {group}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {group}",
    ]


def row_level_security(table: str) -> list[str]:
    """Rows belong to the role that wrote them; forced, so no one but a superuser sees past it
    (the owner, who runs this, included).

    ``current_user`` cannot be spoofed by a tenant (unlike a settable session variable): it
    cannot ``SET ROLE``, not even to the tenants' group it is a member of.
    """
    qualified = f"{quote_ident(POOLED_SCHEMA)}.{quote_ident(table)}"
    column = quote_ident(TENANT_COLUMN)
    return [
        f"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {column} name NOT NULL"
        " DEFAULT current_user",
        f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_rows ON {qualified}",
        f"CREATE POLICY tenant_rows ON {qualified} USING ({column} = current_user)"
        f" WITH CHECK ({column} = current_user)",
    ]


def migration_statements(schema: str, migration: Migration) -> list[str]:
    """A manifest migration, run by the service owner with its names resolved in one schema
    (``shared.migration_sql`` has already refused qualified names)."""
    return [
        f"SET LOCAL search_path = {quote_ident(schema)}, pg_catalog",
        migration.sql,
        "RESET search_path",
    ]
