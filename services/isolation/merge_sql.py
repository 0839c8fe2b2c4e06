"""What merging one tenancy's rows into another's means in SQL, built without a database.

Both tenancies run the same migrations, so they have the same tables. Each table is checked
the same way in every tier: a row count and an order-independent checksum (the sum of a 64-bit
hash of each row's text) of the source's rows as they will land, and of the target's before
and after. The sum is additive, so the move is verified when, for every table, the target's
after less its before equals the source's, in rows and in checksum.

Every name comes from the catalogue and is quoted; offsets are integers formatted as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.isolation.offboarding import deletion_order
from shared.events import MovedTable
from shared.identifiers import quote_ident, quote_literal

# Row text must read the same in every session that computes a checksum (the database tier
# compares two databases), whatever the server's or the role's defaults.
CANONICAL_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
)


class MoveRefused(Exception):
    """The rows cannot be moved as they stand; the message says why, naming no row's data."""


@dataclass(frozen=True)
class TableShape:
    name: str
    partitioned: bool
    columns: tuple[str, ...]  # every column a row is written with (not generated ones)
    numbered: tuple[str, ...]  # identity and serial columns, renumbered on request


@dataclass(frozen=True)
class Reference:
    """One column of a foreign key: ``table.column`` refers to ``referenced.referenced_column``."""

    table: str
    column: str
    referenced: str
    referenced_column: str


@dataclass(frozen=True)
class Count:
    rows: int
    checksum: int


def qualified(schema: str, table: TableShape) -> str:
    only = "" if table.partitioned else "ONLY "  # inheritance children are tables of their own
    return f"{only}{quote_ident(schema)}.{quote_ident(table.name)}"


def insert_order(tables: Iterable[TableShape], references: Iterable[Reference]) -> list[str]:
    """Referenced tables first, so each foreign key finds its row already there."""
    names = sorted(t.name for t in tables)
    return list(reversed(deletion_order(names, [(r.table, r.referenced) for r in references])))


def renumbered(
    table: TableShape,
    references: Iterable[Reference],
    offsets: Mapping[tuple[str, str], int],
) -> list[str]:
    """The expressions, over a source row ``r``, of each column as it is written into the
    target: an identity or serial column moved past ``offsets[table, column]``, and a column
    referring to one moved by the same amount, so the reference still holds."""
    follows = {
        r.column: (r.referenced, r.referenced_column) for r in references if r.table == table.name
    }
    expressions = []
    for column in table.columns:
        offset = offsets.get((table.name, column)) or offsets.get(follows.get(column, ("", "")))
        expression = f"r.{quote_ident(column)}"
        expressions.append(f"{expression} + {offset:d}" if offset else expression)
    return expressions


def checksum_query(source: str, expressions: list[str], where: str = "") -> str:
    """Rows and checksum of ``source`` (aliased ``r``) as ``expressions`` show each row."""
    row = f"ROW({', '.join(expressions)})::text" if expressions else "''"
    return (
        "SELECT count(*)::bigint AS rows, coalesce(sum(('x' || left(md5("
        f"{row}), 16))::bit(64)::bigint::numeric), 0)::text AS checksum FROM {source} AS r"
        + (f" WHERE {where}" if where else "")
    )


def insert_query(schema: str, table: TableShape, source: str, expressions: list[str]) -> str:
    columns = ", ".join(quote_ident(c) for c in table.columns)
    target = f"{quote_ident(schema)}.{quote_ident(table.name)}"  # INSERT takes no ONLY
    # OVERRIDING SYSTEM VALUE: the key the manifest chose (kept or renumbered) is written as
    # computed, not drawn from the target's identity.
    return (
        f"INSERT INTO {target} ({columns}) OVERRIDING SYSTEM VALUE"
        f" SELECT {', '.join(expressions)} FROM {source} AS r"
    )


def offset_query(schema: str, table: TableShape, column: str) -> str:
    """Above every value the target's column holds and its sequence has issued."""
    name = quote_literal(f"{quote_ident(schema)}.{quote_ident(table.name)}")
    col = quote_ident(column)
    return (
        f"SELECT greatest(coalesce((SELECT max({col}) FROM {qualified(schema, table)}), 0),"
        f" coalesce(pg_sequence_last_value(pg_get_serial_sequence({name},"
        f" {quote_literal(column)})::regclass), 0))::bigint"
    )


def advance_sequence(schema: str, table: TableShape, column: str) -> str:
    """The target's sequence past the rows that arrived, so its next key is a new one."""
    name = quote_literal(f"{quote_ident(schema)}.{quote_ident(table.name)}")
    col = quote_ident(column)
    sequence = f"pg_get_serial_sequence({name}, {quote_literal(column)})"
    return (
        f"SELECT setval({sequence}, greatest(coalesce((SELECT max({col})"
        f" FROM {qualified(schema, table)}), 1), coalesce(pg_sequence_last_value("
        f"{sequence}::regclass), 1)))"
    )


def verified(name: str, source: Count, before: Count, after: Count) -> MovedTable:
    """The table's record, if every source row arrived as it was; refused otherwise."""
    if after.rows - before.rows != source.rows:
        raise MoveRefused(
            f"table {name}: {source.rows} rows to move, but the target has"
            f" {after.rows - before.rows} more than before"
        )
    if after.checksum - before.checksum != source.checksum:
        raise MoveRefused(
            f"table {name}: checksum mismatch, the rows that arrived are not the rows moved"
        )
    return MovedTable(
        name=name,
        source_rows=source.rows,
        target_rows_before=before.rows,
        target_rows_after=after.rows,
        source_checksum=str(source.checksum),
        target_checksum_before=str(before.checksum),
        target_checksum_after=str(after.checksum),
    )


def same_tables(source: Iterable[TableShape], target: Iterable[TableShape]) -> str | None:
    """Why the two tenancies' tables cannot take each other's rows, or None."""
    theirs = {t.name: t.columns for t in source}
    ours = {t.name: t.columns for t in target}
    if theirs == ours:
        return None
    differ = sorted(n for n in theirs.keys() | ours.keys() if theirs.get(n) != ours.get(n))
    return (
        f"tables differ between the tenancies ({', '.join(differ)}): bring both to the "
        "manifest's latest migration first (tenancy migrate)"
    )
