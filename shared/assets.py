"""A content-addressed store for uploaded files, so events carry a reference, never the bytes.

A local folder here; in production the same folder can be a mounted volume or object storage.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from shared.events import LogoRef

MediaType = Literal["image/png", "image/svg+xml"]


class AssetMissing(LookupError):
    pass


class AssetStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, content: bytes, media_type: MediaType) -> LogoRef:
        digest = hashlib.sha256(content).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(content)
            partial.replace(path)
        return LogoRef(sha256=digest, media_type=media_type, size=len(content))

    def get(self, ref: LogoRef) -> bytes:
        path = self._path(ref.sha256)
        if not path.is_file():
            raise AssetMissing(f"logo {ref.sha256} is not in the asset store at {self.root}")
        content = path.read_bytes()
        if hashlib.sha256(content).hexdigest() != ref.sha256:
            raise AssetMissing(f"logo {ref.sha256} in the asset store is corrupt")
        return content
