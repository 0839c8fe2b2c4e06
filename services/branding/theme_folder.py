"""The themes folder the shared services read: one folder per tenancy and version, and a
``current`` pointer per tenancy.

Layout: ``<root>/<tenancy id>/v<version>/{theme.css,tokens.json,logo.svg|logo.png}`` and
``<root>/<tenancy id>/current -> v<version>``. Tenancy ids are UUIDs checked by the event
contract, so no path built here can leave the folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from services.branding.theme import CSS_FILE, TOKENS_FILE
from shared.events import ThemePaths

CURRENT = "current"


class ThemeFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def relative(self, tenancy_id: str, version: int, name: str) -> str:
        return f"{tenancy_id}/v{version}/{name}"

    def resolve(self, relative: str) -> Path:
        return self.root / relative

    def publish(self, tenancy_id: str, version: int, files: Mapping[str, bytes]) -> ThemePaths:
        """Write a version's files; each appears whole or not at all, so a reader never sees a
        half-written theme and a redelivered event can simply write them again."""
        folder = self.root / tenancy_id / f"v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            partial = folder / f".{name}.{uuid.uuid4().hex}.partial"
            partial.write_bytes(content)
            partial.replace(folder / name)
        logo = next((name for name in files if name.startswith("logo.")), None)
        return ThemePaths(
            css=self.relative(tenancy_id, version, CSS_FILE),
            tokens=self.relative(tenancy_id, version, TOKENS_FILE),
            logo=self.relative(tenancy_id, version, logo) if logo else None,
        )

    def point_current(self, tenancy_id: str, version: int) -> None:
        """Swap the ``current`` symlink in one rename, so readers see the old or the new theme."""
        folder = self.root / tenancy_id
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / CURRENT
        if link.is_symlink() and os.readlink(link) == f"v{version}":
            return
        staged = folder / f".{CURRENT}.{uuid.uuid4().hex}"
        staged.symlink_to(f"v{version}", target_is_directory=True)
        staged.replace(link)

    def withdraw(self, tenancy_id: str) -> None:
        """No ``current`` pointer: the service has no theme to show for the tenancy."""
        link = self.root / tenancy_id / CURRENT
        if link.is_symlink():
            link.unlink(missing_ok=True)

    def current_version(self, tenancy_id: str) -> int | None:
        link = self.root / tenancy_id / CURRENT
        if not link.is_symlink():
            return None
        return int(os.readlink(link).removeprefix("v"))
