"""The exit archive: a tenancy's tables as CSV files plus a manifest, in one zip.

Plain Python, no database: the caller streams each table's CSV into a :class:`TableFile`
(checksummed as it is written), then :meth:`Export.write_archive` packs the files and a
manifest with row counts and SHA-256 checksums into ``<exports_dir>/<service>/<tenancy>.zip``.
The archive appears under its final name only once complete and on disk, because the data it
holds is dropped right after.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from shared.catalogue import IsolationTier
from shared.events import ExportedTable
from shared.identifiers import quote_ident

FORMAT = "csv; UTF-8; header row"
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class ArchiveInvalid(ValueError):
    """An archive whose contents do not match its manifest."""


def archive_path(exports_dir: Path, service_id: str, tenancy_id: str) -> Path:
    # Both parts are validated identifiers (a service id, a UUID), so they are safe as names.
    return exports_dir.absolute() / service_id / f"{uuid.UUID(tenancy_id)}.zip"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class TableFile:
    """One table's CSV being written; hashed on the way to disk, so it is read only once."""

    name: str
    path: Path
    _stream: IO[bytes]
    _digest: Any = field(default_factory=hashlib.sha256)

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    def write(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._stream.write(chunk)

    def close(self, rows: int) -> ExportedTable:
        self._stream.close()
        return ExportedTable(
            name=self.name, file=self.file, rows=rows, sha256=self._digest.hexdigest()
        )


class Export:
    """Collects one tenancy's tables in a staging folder beside the archive, then writes the
    archive atomically. Use as a context manager: the staging folder is always removed."""

    def __init__(
        self, exports_dir: Path, service_id: str, tenancy_id: str, tier: IsolationTier
    ) -> None:
        self.path = archive_path(exports_dir, service_id, tenancy_id)
        self.service_id = service_id
        self.tenancy_id = str(uuid.UUID(tenancy_id))
        self.tier = tier
        self.tables: list[ExportedTable] = []
        self._open: list[TableFile] = []
        self._staging: Path | None = None

    def __enter__(self) -> Export:
        # Exports hold a council's data: readable by the worker's user only.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._staging = Path(tempfile.mkdtemp(prefix=f".{self.tenancy_id}.", dir=self.path.parent))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for table in self._open:
            table._stream.close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    def table(self, name: str) -> TableFile:
        """A new CSV file for one table; the name must be a plain SQL identifier, which also
        makes it a safe file name."""
        quote_ident(name)
        if any(t.name == name for t in self.tables) or any(t.name == name for t in self._open):
            raise ValueError(f"table {name!r} exported twice")
        if self._staging is None:
            raise RuntimeError("Export used outside its with block")
        path = self._staging / f"{name}.csv"
        table = TableFile(name, path, path.open("wb"))
        self._open.append(table)
        return table

    def add(self, table: TableFile, rows: int) -> ExportedTable:
        """The table's file is complete, with this many data rows."""
        self._open.remove(table)
        exported = table.close(rows)
        self.tables.append(exported)
        return exported

    def manifest(self, exported_at: datetime) -> dict[str, Any]:
        return {
            "tenancy_id": self.tenancy_id,
            "service_id": self.service_id,
            "tier": self.tier.value,
            "exported_at": exported_at.isoformat(),
            "format": FORMAT,
            "tables": [t.model_dump(mode="json") for t in self.tables],
        }

    def write_archive(self, exported_at: datetime | None = None) -> tuple[Path, str]:
        """Write the zip under a temporary name, flush it to disk, then rename it into place;
        returns its path and SHA-256. Blocking: run it in a thread from async code."""
        if self._open:
            raise RuntimeError(f"tables still being written: {[t.name for t in self._open]}")
        assert self._staging is not None
        manifest = self.manifest(exported_at or datetime.now(UTC))
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self.tenancy_id}.", suffix=".zip.tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "wb") as stream:
                with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                    for table in self.tables:
                        archive.write(self._staging / table.file, arcname=table.file)
                    archive.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            digest = sha256_of(Path(temporary))
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(self.path.parent)
        return self.path, digest


def verify_archive(path: Path) -> dict[str, Any]:
    """Check every file of an archive against its manifest; returns the manifest."""
    with zipfile.ZipFile(path) as archive:
        manifest: dict[str, Any] = json.loads(archive.read(MANIFEST))
        listed = {t["file"] for t in manifest["tables"]}
        present = set(archive.namelist()) - {MANIFEST}
        if listed != present:
            raise ArchiveInvalid(f"files {sorted(present)} but manifest lists {sorted(listed)}")
        for table in manifest["tables"]:
            digest = hashlib.sha256()
            with archive.open(table["file"]) as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != table["sha256"]:
                raise ArchiveInvalid(f"{table['file']}: checksum does not match the manifest")
            with archive.open(table["file"]) as stream:
                text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
                rows = sum(1 for _ in csv.reader(text)) - 1  # less the header row
            if rows != table["rows"]:
                raise ArchiveInvalid(
                    f"{table['file']}: {rows} rows but the manifest says {table['rows']}"
                )
    return manifest
