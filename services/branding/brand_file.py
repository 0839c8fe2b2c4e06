"""Reading a council's brand file (YAML), with every problem reported at once.

The file runs the same rules as the branding worker, so a bad brand is refused before anything
is sent; the logo goes to the asset store only once the whole brand is acceptable.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from services.branding import contrast, logo, rules
from shared.assets import AssetStore
from shared.catalogue import describe_validation_error
from shared.events import Brand, Colours, LogoRef


class BrandFileError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def read_logo(path: Path, name: object) -> tuple[bytes | None, list[str]]:
    logo_path = (path.parent / str(name)).resolve()
    if not logo_path.is_file():
        return None, [f"logo: file {logo_path} does not exist"]
    size = logo_path.stat().st_size
    if size > logo.MAX_LOGO_BYTES:
        return None, [f"logo: {size} bytes is over the limit of {logo.MAX_LOGO_BYTES} bytes"]
    return logo_path.read_bytes(), []


def partial_checks(raw: dict[str, Any]) -> list[str]:
    """The rules that can still run on the parts of an invalid brand that are valid."""
    problems: list[str] = []
    with contextlib.suppress(ValidationError):
        problems += contrast.check_colours(Colours.model_validate(raw.get("colours")))
    if isinstance(raw.get("domain"), str):
        problems += rules.check_domain(raw["domain"])
    return problems


def load_brand_file(path: Path, assets: AssetStore) -> Brand:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise BrandFileError(path, [f"cannot read brand file: {error}"]) from error
    if not isinstance(raw, dict):
        raise BrandFileError(path, ["a brand file is a YAML mapping of fields"])
    content: bytes | None = None
    problems: list[str] = []
    if (logo_name := raw.pop("logo", None)) is not None:
        content, problems = read_logo(path, logo_name)
        if content is not None:
            media_type = logo.sniff_media_type(content) or "image/png"
            # A stand-in reference until the brand passes; the real one is stored below.
            raw["logo"] = LogoRef(sha256="0" * 64, media_type=media_type, size=len(content))
    try:
        brand = Brand.model_validate(raw)
    except ValidationError as error:
        problems += describe_validation_error(error)
        if content is not None:
            problems += _logo_problems(content)
        raise BrandFileError(path, problems + partial_checks(raw)) from error
    _, found = rules.check_brand(brand, content)
    if problems or found:
        raise BrandFileError(path, problems + found)
    if content is None:
        return brand
    stored = assets.put(content, brand.logo.media_type if brand.logo else "image/png")
    return brand.model_copy(update={"logo": stored})


def _logo_problems(content: bytes) -> list[str]:
    try:
        logo.process_logo(content)
    except logo.LogoRefused as refused:
        return refused.problems
    return []
