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
    try:
        return validate_brand(raw, content, assets, problems)
    except BrandRefused as refused:
        raise BrandFileError(path, refused.problems) from None


class BrandRefused(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def validate_brand(
    raw: dict[str, Any], logo_content: bytes | None, assets: AssetStore, problems: list[str]
) -> Brand:
    """A brand from its fields (without ``logo``) and its logo's bytes, checked by every rule;
    the logo is stored only once the whole brand passes. ``problems`` are ones found already."""
    raw = dict(raw)
    if logo_content == b"":
        problems = [*problems, "logo: the file is empty"]
        logo_content = None
    if logo_content is not None:
        media_type = logo.sniff_media_type(logo_content) or "image/png"
        # A stand-in reference until the brand passes; the real one is stored below.
        raw["logo"] = LogoRef(sha256="0" * 64, media_type=media_type, size=len(logo_content))
    try:
        brand = Brand.model_validate(raw)
    except ValidationError as error:
        found = problems + describe_validation_error(error)
        if logo_content is not None:
            found += _logo_problems(logo_content)
        raise BrandRefused(found + partial_checks(raw)) from error
    _, found = rules.check_brand(brand, logo_content)
    if problems or found:
        raise BrandRefused(problems + found)
    if logo_content is None:
        return brand
    stored = assets.put(logo_content, brand.logo.media_type if brand.logo else "image/png")
    return brand.model_copy(update={"logo": stored})


def _logo_problems(content: bytes) -> list[str]:
    try:
        logo.process_logo(content)
    except logo.LogoRefused as refused:
        return refused.problems
    return []
