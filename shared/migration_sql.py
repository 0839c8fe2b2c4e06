"""What a manifest's migration SQL may do, checked with PostgreSQL's own parser before it is
accepted into the catalogue.

This is the second line of defence. The first is the database itself: migrations run over a
connection that logs in as the service's own least-privileged role (see
``services.isolation.plan.service_owner``), which cannot read the platform, load extensions,
touch server files or programs, or become anyone else. The check here refuses, with the
statement and the rule named, what a tenancy's schema never needs and what could reach past it
while staying inside the service's rights: other schemas by name, the platform's
row-level-security column and policy, and the functions that run SQL text or reach the server.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ObjectType
from pglast.parser import ParseError

# The column and policy the platform adds to pooled tables (services.isolation.plan).
PLATFORM_COLUMN = "tenant_role"

ALLOWED = (
    "CREATE/ALTER/DROP TABLE, INDEX, VIEW, SEQUENCE, TYPE or DOMAIN, COMMENT ON them, "
    "and INSERT, UPDATE or DELETE rows"
)

_OBJECTS = {
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_INDEX,
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_SEQUENCE,
    ObjectType.OBJECT_TYPE,
    ObjectType.OBJECT_DOMAIN,
}
_COMMENTED = _OBJECTS | {ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT}
_RENAMED = _OBJECTS | {
    ObjectType.OBJECT_COLUMN,
    ObjectType.OBJECT_TABCONSTRAINT,
    ObjectType.OBJECT_ATTRIBUTE,
}

# What ALTER TABLE may change: columns, constraints, identity, defaults. Not its owner, its
# row-level security, triggers, rules, storage place, inheritance or partitions.
_ALTER_TABLE = {
    AlterTableType.AT_AddColumn,
    AlterTableType.AT_ColumnDefault,
    AlterTableType.AT_DropNotNull,
    AlterTableType.AT_SetNotNull,
    AlterTableType.AT_SetExpression,
    AlterTableType.AT_DropExpression,
    AlterTableType.AT_SetStatistics,
    AlterTableType.AT_SetStorage,
    AlterTableType.AT_SetCompression,
    AlterTableType.AT_DropColumn,
    AlterTableType.AT_AddConstraint,
    AlterTableType.AT_AlterConstraint,
    AlterTableType.AT_ValidateConstraint,
    AlterTableType.AT_DropConstraint,
    AlterTableType.AT_AlterColumnType,
    AlterTableType.AT_AddIdentity,
    AlterTableType.AT_SetIdentity,
    AlterTableType.AT_DropIdentity,
}

# Functions that run SQL given as text, read whole tables or schemas by name, or reach the
# server, its files, its settings or other sessions: none has a place in a tenancy's schema.
_FUNCTION_PREFIXES = ("pg_", "lo_", "dblink", "binary_upgrade_")
_FUNCTION_PARTS = ("_to_xml", "to_xmlschema")
_FUNCTIONS = {"set_config", "ts_stat", "ts_rewrite", "current_setting", "txid_current"}

_STATEMENTS: dict[type[ast.Node], str] = {
    ast.CreateStmt: "CREATE TABLE",
    ast.AlterTableStmt: "ALTER TABLE",
    ast.IndexStmt: "CREATE INDEX",
    ast.ViewStmt: "CREATE VIEW",
    ast.CreateSeqStmt: "CREATE SEQUENCE",
    ast.AlterSeqStmt: "ALTER SEQUENCE",
    ast.CompositeTypeStmt: "CREATE TYPE",
    ast.CreateEnumStmt: "CREATE TYPE",
    ast.AlterEnumStmt: "ALTER TYPE",
    ast.CreateDomainStmt: "CREATE DOMAIN",
    ast.CommentStmt: "COMMENT ON",
    ast.DropStmt: "DROP",
    ast.RenameStmt: "ALTER ... RENAME",
    ast.InsertStmt: "INSERT",
    ast.UpdateStmt: "UPDATE",
    ast.DeleteStmt: "DELETE",
}


def problems(sql: str) -> list[str]:
    """Each refused statement, numbered from 1 and quoted, with the rule it breaks."""
    return list(_problems(sql))


# Every event that carries a manifest is validated by each worker that reads it, and parsing
# a migration into pglast's nodes costs about 0.5 ms: the same texts are checked once.
@functools.lru_cache(maxsize=256)
def _problems(sql: str) -> tuple[str, ...]:
    try:
        statements = parse_sql(sql)
    except ParseError as error:
        return (f"not valid PostgreSQL: {error}",)
    if not statements:
        return ("no SQL statement",)
    raw = sql.encode()
    found = []
    for number, statement in enumerate(statements, start=1):
        rule = _refusal(statement.stmt) if statement.stmt is not None else None
        if rule is not None:
            # The parser's locations are byte offsets into the UTF-8 text.
            start = statement.stmt_location or 0
            end = start + statement.stmt_len if statement.stmt_len else None
            text = " ".join(raw[start:end].decode(errors="replace").split())
            quoted = text if len(text) <= 60 else text[:57] + "..."
            found.append(f"statement {number} ({quoted!r}): {rule}")
    return tuple(found)


def _refusal(statement: ast.Node) -> str | None:
    kind = _STATEMENTS.get(type(statement))
    if kind is None:
        return f"{_describe(statement)} is not allowed in a migration; a migration may {ALLOWED}"
    shape = _shape(statement)
    if shape is not None:
        return shape
    for node in _walk(statement):
        rule = _node_rule(node)
        if rule is not None:
            return rule
    return None


def _shape(statement: ast.Node) -> str | None:
    """Rules on the statement itself, beyond its kind."""
    if isinstance(statement, ast.CreateStmt) and statement.tablespacename:
        return "tablespaces are the platform's: leave TABLESPACE out"
    if isinstance(statement, ast.IndexStmt) and statement.tableSpace:
        return "tablespaces are the platform's: leave TABLESPACE out"
    if isinstance(statement, ast.AlterTableStmt):
        for command in statement.cmds or ():
            if command.subtype not in _ALTER_TABLE:
                action = re.sub(r"(?<!^)(?=[A-Z])", " ", command.subtype.name[3:]).lower()
                return f"ALTER TABLE may change columns and constraints, not {action}"
            if command.name == PLATFORM_COLUMN:
                return _platform_column()
    if isinstance(statement, ast.DropStmt):
        if statement.removeType not in _OBJECTS:
            return f"DROP {_object(statement.removeType)} is not allowed; a migration may {ALLOWED}"
        for name in statement.objects or ():
            if isinstance(name, tuple | list) and len(name) > 1:
                return _qualified(".".join(part.sval for part in name))
    if isinstance(statement, ast.CommentStmt) and statement.objtype not in _COMMENTED:
        return f"COMMENT ON {_object(statement.objtype)} is not allowed"
    if isinstance(statement, ast.RenameStmt):
        if statement.renameType not in _RENAMED:
            return f"renaming a {_object(statement.renameType)} is not allowed"
        if PLATFORM_COLUMN in (statement.subname, statement.newname):
            return _platform_column()
    if isinstance(statement, ast.CreateEnumStmt | ast.AlterEnumStmt):
        names = statement.typeName
    elif isinstance(statement, ast.CreateDomainStmt):
        names = statement.domainname
    else:
        return None
    if names is not None and len(names) > 1:
        return _qualified(".".join(part.sval for part in names))
    return None


def _node_rule(node: ast.Node) -> str | None:
    """Rules on every node anywhere in a statement."""
    if isinstance(node, ast.RangeVar):
        if node.schemaname or node.catalogname:
            parts = (node.catalogname, node.schemaname, node.relname)
            return _qualified(".".join(p for p in parts if p))
        if node.relpersistence == "t":
            return "temporary tables are not allowed in a migration"
    if isinstance(node, ast.FuncCall):
        return _function_rule([part.sval for part in node.funcname or ()])
    if isinstance(node, ast.TypeName) and node.names:
        names = [part.sval for part in node.names]
        if len(names) > 1 and names[0] != "pg_catalog":
            return _qualified(".".join(names))
    if isinstance(node, ast.ColumnRef) and len(node.fields or ()) > 2:
        return _qualified(".".join(getattr(f, "sval", "*") for f in node.fields or ()))
    if isinstance(node, ast.ColumnDef) and node.colname == PLATFORM_COLUMN:
        return _platform_column()
    return None


def _function_rule(names: list[str]) -> str | None:
    # Only pg_catalog may qualify a function: the parser itself writes EXTRACT(...) and
    # similar syntax as pg_catalog.extract(...).
    if len(names) > 1 and names[0] != "pg_catalog":
        return _qualified(".".join(names))
    name = names[-1].lower()
    if (
        name.startswith(_FUNCTION_PREFIXES)
        or any(part in name for part in _FUNCTION_PARTS)
        or name in _FUNCTIONS
    ):
        return (
            f"the function {name}() is not allowed in a migration: it runs SQL from text, "
            "reads by name or reaches the server"
        )
    return None


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    yield node
    for attribute in node:
        yield from _walk_value(getattr(node, attribute))


def _walk_value(value: object) -> Iterator[ast.Node]:
    if isinstance(value, ast.Node):
        yield from _walk(value)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _walk_value(item)


def _qualified(name: str) -> str:
    return (
        f"{name} names a schema: write names unqualified, the platform places every object in "
        "the tenancy's own schema"
    )


def _platform_column() -> str:
    return f"the column {PLATFORM_COLUMN} is the platform's (it keeps pooled rows apart)"


def _object(kind: ObjectType | None) -> str:
    return kind.name.removeprefix("OBJECT_").replace("_", " ") if kind is not None else "object"


def _describe(statement: ast.Node) -> str:
    name = type(statement).__name__.removesuffix("Stmt")
    words = {
        "Do": "DO",
        "Grant": "GRANT",
        "GrantRole": "GRANT",
        "VariableSet": "SET/RESET",
        "AlterSystem": "ALTER SYSTEM",
        "CreateExtension": "CREATE EXTENSION",
        "Copy": "COPY",
        "Select": "SELECT",
        "CreateFunction": "CREATE FUNCTION",
        "Transaction": "a transaction statement",
        "CreateTrig": "CREATE TRIGGER",
        "CreateSchema": "CREATE SCHEMA",
        "CreateRole": "CREATE ROLE",
        "AlterRole": "ALTER ROLE",
        "CreatePolicy": "CREATE POLICY",
        "CreateTableAs": "CREATE TABLE AS / MATERIALIZED VIEW",
        "AlterOwner": "ALTER ... OWNER",
        "AlterObjectSchema": "ALTER ... SET SCHEMA",
    }
    return words.get(name, name)
