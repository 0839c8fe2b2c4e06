"""The directory and its place in each partition, kept between restarts of the service."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import TypeAdapter

from tenancy_sdk.directory import Tenancy


@dataclass(frozen=True)
class Snapshot:
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset
    tenancies: list[Tenancy] = field(default_factory=list)


_SNAPSHOT = TypeAdapter(Snapshot)


class SnapshotStore(Protocol):
    def load(self) -> Snapshot | None: ...

    def save(self, snapshot: Snapshot) -> None: ...


class NoSnapshots:
    """Nothing kept: the directory is read again from the topics at every start."""

    def load(self) -> Snapshot | None:
        return None

    def save(self, snapshot: Snapshot) -> None:
        return None


class FileSnapshots:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Snapshot | None:
        if not self.path.is_file():
            return None
        return _SNAPSHOT.validate_json(self.path.read_bytes())

    def save(self, snapshot: Snapshot) -> None:
        # Whole or not at all: a crash mid-write leaves the previous snapshot.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        partial.write_bytes(_SNAPSHOT.dump_json(snapshot))
        os.replace(partial, self.path)
