"""A council's brand as a theme: canonical content, its hash, and the files a service reads.

Free of I/O: the CSS and the design tokens are rendered from validated values only (hex colours
and fixed file names), so nothing a council typed can break out of the stylesheet.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.branding.contrast import TEXT_COLOUR
from services.branding.logo import Logo
from shared.events import Brand, DomainClaim

CSS_FILE = "theme.css"
TOKENS_FILE = "tokens.json"
# GOV.UK's focus colour: yellow behind near-black text, visible on any council colour.
FOCUS_COLOUR = "#FFDD00"


def canonical(brand: Brand) -> dict[str, Any]:
    data = brand.model_dump(mode="json")
    data["colours"] = {k: v.upper() for k, v in data["colours"].items()}
    if data["domain"]:
        data["domain"] = data["domain"].lower()
    return data


def content_hash(brand: Brand) -> str:
    encoded = json.dumps(canonical(brand), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def logo_file(logo: Logo | None) -> str | None:
    return f"logo.{logo.extension}" if logo else None


def colour_roles(brand: Brand) -> dict[str, str]:
    colours = canonical(brand)["colours"]
    return {
        "primary": colours["primary"],
        "on-primary": colours["secondary"],
        "background": colours["secondary"],
        "text": TEXT_COLOUR,
        "link": colours["link"],
        "focus": FOCUS_COLOUR,
        "focus-text": TEXT_COLOUR,
    }


def render_css(brand: Brand, logo: Logo | None, version: int) -> str:
    lines = [
        f"/* Tenancy theme version {version}; generated, do not edit. */",
        ":root {",
        *(f"  --tenancy-colour-{role}: {value};" for role, value in colour_roles(brand).items()),
    ]
    if (name := logo_file(logo)) is not None:
        lines.append(f'  --tenancy-logo: url("{name}");')
    lines.append("}")
    return "\n".join(lines) + "\n"


def design_tokens(
    brand: Brand, logo: Logo | None, version: int, digest: str, domain: DomainClaim | None
) -> dict[str, Any]:
    """Design tokens in the W3C community group's format, plus the brand's words and links."""
    data = canonical(brand)
    return {
        "$description": f"Theme of {brand.name}, version {version}",
        "tenancy": {"version": version, "content_hash": digest},
        "color": {
            role: {"$type": "color", "$value": value} for role, value in colour_roles(brand).items()
        },
        "name": {"en": brand.name, "cy": brand.welsh_name},
        "logo": None
        if logo is None
        else {
            "file": logo_file(logo),
            "alt": brand.logo_alt,
            "media_type": logo.media_type,
            "width": logo.width,
            "height": logo.height,
        },
        "contact": data["contact"],
        "footer_links": data["footer_links"],
        "domain": domain.model_dump(mode="json") if domain else None,
    }


def theme_files(
    brand: Brand, logo: Logo | None, version: int, digest: str, domain: DomainClaim | None
) -> dict[str, bytes]:
    tokens = design_tokens(brand, logo, version, digest, domain)
    files = {
        CSS_FILE: render_css(brand, logo, version).encode(),
        TOKENS_FILE: (json.dumps(tokens, indent=2, ensure_ascii=False) + "\n").encode(),
    }
    if logo is not None and (name := logo_file(logo)) is not None:
        files[name] = logo.content
    return files
