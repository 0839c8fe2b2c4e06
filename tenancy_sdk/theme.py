"""A tenancy's current theme, as the branding worker published it to the themes folder.

Versions never change once written (a new brand is a new version), so each is read once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenancy_sdk.directory import ThemeRef

MEDIA_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}


@dataclass(frozen=True)
class Theme:
    version: int
    css: str  # custom properties: --tenancy-colour-primary, -on-primary, -link, ...
    tokens: dict[str, Any]  # design tokens (W3C format) with the council's name, contact, links
    logo: Path | None

    def colour(self, role: str) -> str:
        value: str = self.tokens["color"][role]["$value"]
        return value

    @property
    def name(self) -> str:
        english: str = self.tokens["name"]["en"]
        return english

    @property
    def logo_alt(self) -> str | None:
        logo = self.tokens.get("logo")
        return logo.get("alt") if logo else None

    @property
    def logo_media_type(self) -> str | None:
        return MEDIA_TYPES.get(self.logo.suffix) if self.logo else None

    @property
    def footer_links(self) -> list[dict[str, str]]:
        links: list[dict[str, str]] = self.tokens.get("footer_links") or []
        return links


@functools.lru_cache(maxsize=1024)
def load_theme(themes_dir: Path, ref: ThemeRef) -> Theme:
    return Theme(
        version=ref.version,
        css=(themes_dir / ref.css).read_text(encoding="utf-8"),
        tokens=json.loads((themes_dir / ref.tokens).read_text(encoding="utf-8")),
        logo=themes_dir / ref.logo if ref.logo else None,
    )
