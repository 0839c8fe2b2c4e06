"""A tamper-evident, append-only audit log: who did what to which tenancy, and when.

Each entry carries the SHA-256 of its own content and of the entry before it, so changing,
inserting or removing an entry anywhere but at the very end breaks the chain, and ``verify``
names the first entry where it breaks. The database refuses UPDATE, DELETE and TRUNCATE on
``audit.log`` (``audit_migrations/001_audit_log.sql``); only the table's owner or a superuser can
switch that off, and what they then change the chain still reveals.

Removing the *last* entries leaves a shorter chain that is still valid. To catch that, publish
``head()`` somewhere the database's owner cannot rewrite (a log shipper, a ticket, another
system) and pass the published value to ``verify(conn, anchor=...)``.

Entries are written with ``append`` inside the transaction of the change they record, so both
commit or neither does. Apply the schema with ``db.migrate(pool, "audit", MIGRATIONS)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from shared.db import Connection
from shared.tracing import current_trace_id

MIGRATIONS = Path(__file__).parent / "audit_migrations"
GENESIS = "0" * 64
# Every append takes this transaction-level lock, so entries get their seq (and their place in
# the chain) in commit order: the lock is held until the appending transaction ends.
LOCK_KEY = "tenancy:audit.log"

_COLUMNS = "seq, at, actor, action, tenancy_id::text, trace_id, detail::text, prev_hash, hash"


@dataclass(frozen=True)
class Entry:
    seq: int
    at: datetime
    actor: str
    action: str
    tenancy_id: str | None
    trace_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int  # entries found intact (before the broken one, if any)
    broken_seq: int | None
    reason: str | None
    head: tuple[int, str] = (0, GENESIS)  # the last intact entry: worth publishing as an anchor


class AuditError(RuntimeError):
    pass


def entry_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    tenancy_id: str | None,
    trace_id: str | None,
    detail: dict[str, Any],
) -> str:
    """SHA-256 (hex) of an entry's canonical encoding, its predecessor's hash included."""
    canonical = json.dumps(
        [prev_hash, seq, _timestamp(at), actor, action, tenancy_id, trace_id, detail],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        # A naive time would be read as the machine's local time: a hash that depends on TZ.
        raise ValueError("audit times must be timezone-aware")
    # timestamptz keeps microseconds and Python's datetime holds no finer, so this string is
    # the same before the insert and after reading the row back.
    return at.astimezone(UTC).isoformat(timespec="microseconds")


async def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    tenancy_id: str | None = None,
    detail: dict[str, Any] | None = None,
    trace_id: str | None = None,
) -> Entry:
    """Record an action in the caller's transaction; it commits or rolls back with it.

    ``detail`` is a small JSON object and must never hold secrets: the log cannot be edited.
    ``trace_id`` defaults to the current OpenTelemetry trace, if any. ``conn`` must be in a
    READ COMMITTED transaction (PostgreSQL's default).
    """
    if not conn.is_in_transaction():
        # Outside one the lock would be released at once, and the entry could outlive a change
        # that rolled back.
        raise AuditError("audit.append must run inside the transaction of the change it records")
    if detail is None:
        detail = {}
    if not isinstance(detail, dict):
        raise TypeError("audit detail must be a JSON object (a dict)")
    tenancy = uuid.UUID(tenancy_id) if tenancy_id is not None else None
    trace = (trace_id if trace_id is not None else current_trace_id()) or None

    link = await conn.fetchrow(
        "SELECT * FROM audit.next_link($1, $2)", LOCK_KEY, json.dumps(detail, allow_nan=False)
    )
    assert link is not None
    if link["isolation"] != "read committed":
        # A snapshot older than the lock would not see the entry appended just before ours.
        raise AuditError(
            f"audit.append needs a READ COMMITTED transaction, not {link['isolation']}"
        )
    stored_detail: str = link["stored_detail"]
    prev_seq: int = link["prev_seq"] or 0
    prev_hash: str = link["prev_hash"] or GENESIS
    entry_detail = json.loads(stored_detail)
    seq = prev_seq + 1
    at = datetime.now(UTC)
    tenancy_text = str(tenancy) if tenancy is not None else None
    digest = entry_hash(prev_hash, seq, at, actor, action, tenancy_text, trace, entry_detail)
    await conn.execute(
        "INSERT INTO audit.log"
        " (seq, at, actor, action, tenancy_id, trace_id, detail, prev_hash, hash)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)",
        seq,
        at,
        actor,
        action,
        tenancy,
        trace,
        stored_detail,
        prev_hash,
        digest,
    )
    return Entry(seq, at, actor, action, tenancy_text, trace, entry_detail, prev_hash, digest)


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(
        seq=row["seq"],
        at=row["at"].astimezone(UTC),
        actor=row["actor"],
        action=row["action"],
        tenancy_id=row["tenancy_id"],
        trace_id=row["trace_id"],
        # Decoded here rather than by a connection codec, so any connection reads it alike.
        detail=json.loads(row["detail"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


async def entries(
    conn: Connection,
    *,
    since_seq: int = 0,
    limit: int = 1000,
    tenancy_id: str | None = None,
    latest: bool = False,
) -> list[Entry]:
    """Entries after ``since_seq`` in order, at most ``limit``; page on with the last one's seq.

    With ``latest`` it is the last ``limit`` of them instead (still oldest first).
    """
    tenancy = uuid.UUID(tenancy_id) if tenancy_id is not None else None
    where = "seq > $1 AND ($2::uuid IS NULL OR tenancy_id = $2)"
    order = "DESC" if latest else "ASC"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM audit.log WHERE {where} ORDER BY seq {order} LIMIT $3",
        since_seq,
        tenancy,
        limit,
    )
    found = [_entry(row) for row in rows]
    return found[::-1] if latest else found


async def head(conn: Connection) -> tuple[int, str]:
    """The last entry's (seq, hash), or (0, GENESIS) for an empty log: the value to anchor."""
    row = await conn.fetchrow("SELECT seq, hash FROM audit.log ORDER BY seq DESC LIMIT 1")
    return (row["seq"], row["hash"]) if row is not None else (0, GENESIS)


def _missing(first: int, last: int) -> str:
    return f"entry {first} was" if first == last else f"entries {first} to {last} were"


def _fault(entry: Entry, prev_seq: int, prev_hash: str) -> str | None:
    """Why ``entry`` does not follow the intact entry ``prev_seq`` (hash ``prev_hash``)."""
    if entry.seq != prev_seq + 1:
        gap = _missing(prev_seq + 1, entry.seq - 1)
        if prev_seq == 0:
            return f"the log starts at entry {entry.seq}: {gap} deleted"
        return f"entry {entry.seq} follows entry {prev_seq}: {gap} deleted"
    recomputed = entry_hash(
        entry.prev_hash,
        entry.seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.tenancy_id,
        entry.trace_id,
        entry.detail,
    )
    if recomputed != entry.hash:
        return f"entry {entry.seq}: its hash does not match its content (changed)"
    if entry.prev_hash != prev_hash:
        if prev_seq == 0:
            return f"entry {entry.seq} does not start from the genesis hash"
        return f"entry {entry.seq}: prev_hash does not match entry {prev_seq}'s hash"
    return None


async def verify(
    conn: Connection, *, anchor: tuple[int, str] | None = None, chunk_size: int = 1000
) -> Verification:
    """Walk the whole log in seq order and name the first entry that breaks the chain.

    The chain alone cannot tell that entries were removed from the end. Give ``anchor``, a
    ``head()`` published earlier, and the log must still reach that entry with that hash.
    Reads in keyset-paged chunks, so it needs no transaction and holds no more than one chunk.
    """
    prev_seq, prev_hash = 0, GENESIS
    checked = 0

    def broken(seq: int, reason: str) -> Verification:
        return Verification(False, checked, seq, reason, (prev_seq, prev_hash))

    while True:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM audit.log WHERE seq > $1 ORDER BY seq LIMIT $2",
            prev_seq,
            chunk_size,
        )
        for row in rows:
            entry = _entry(row)
            fault = _fault(entry, prev_seq, prev_hash)
            if fault is not None:
                return broken(entry.seq, fault)
            if anchor is not None and entry.seq == anchor[0] and entry.hash != anchor[1]:
                return broken(entry.seq, f"entry {entry.seq}: its hash differs from the anchor")
            prev_seq, prev_hash = entry.seq, entry.hash
            checked += 1
        if len(rows) < chunk_size:
            break
    if anchor is not None and prev_seq < anchor[0]:
        gap = _missing(prev_seq + 1, anchor[0])
        return broken(prev_seq + 1, f"the log ends at entry {prev_seq}: anchored {gap} deleted")
    return Verification(True, checked, None, None, (prev_seq, prev_hash))
