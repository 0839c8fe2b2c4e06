"""Reading a council's brand file (YAML), with every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.assets import AssetStore, MediaType
from shared.catalogue import describe_validation_error
from shared.events import Brand

MAX_LOGO_BYTES = 1024 * 1024


class BrandFileError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def sniff_media_type(content: bytes) -> MediaType | None:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    head = content[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in content[:4096]):
        return "image/svg+xml"
    return None


def load_brand_file(path: Path, assets: AssetStore) -> Brand:
    problems: list[str] = []
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise BrandFileError(path, [f"cannot read brand file: {error}"]) from error
    if not isinstance(raw, dict):
        raise BrandFileError(path, ["a brand file is a YAML mapping of fields"])
    logo = raw.pop("logo", None)
    if logo is not None:
        logo_path = (path.parent / str(logo)).resolve()
        if not logo_path.is_file():
            problems.append(f"logo: file {logo_path} does not exist")
        else:
            content = logo_path.read_bytes()
            media_type = sniff_media_type(content)
            if media_type is None:
                problems.append("logo: must be a PNG or SVG file")
            elif len(content) > MAX_LOGO_BYTES:
                problems.append(
                    f"logo: {len(content)} bytes is over the limit of {MAX_LOGO_BYTES} bytes"
                )
            else:
                raw["logo"] = assets.put(content, media_type).model_dump()
    try:
        brand = Brand.model_validate(raw)
    except ValidationError as error:
        problems.extend(describe_validation_error(error))
        raise BrandFileError(path, problems) from error
    if problems:
        raise BrandFileError(path, problems)
    return brand
