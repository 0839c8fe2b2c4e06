"""The rules a council's brand must meet before it is published, free of I/O.

The CLI runs them before sending a brand, so a council hears about every problem at once; the
branding worker runs them again, because events can come from anywhere. Colours must meet WCAG 2.2
AA contrast, the logo's alt text must name the council, a custom domain must be a plain host name,
and a logo must be a PNG or an SVG that cannot run script or fetch anything when it is served.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from services.branding.contrast import check_colours
from services.branding.logo import Logo, LogoRefused, process_logo
from shared.events import Brand

TXT_RECORD_PREFIX = "_tenancy-challenge"

_WORD = re.compile(r"[^\W_]+")
_FORBIDDEN_ALT_WORDS = frozenset(
    word + suffix
    for word in ("logo", "image", "picture", "graphic", "icon")
    for suffix in ("", "s")
)
_NOT_DISTINCTIVE = frozenset(
    {
        *("of", "the", "and", "a", "y"),
        *("council", "borough", "city", "county", "district", "metropolitan", "royal"),
        *("cyngor", "sir", "bwrdeistref", "dinas"),
    }
)


def _words(text: str) -> list[str]:
    # Welsh names are often typed without their accents ("Ynys Mon"), so compare without them.
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WORD.findall(plain)


def _distinctive(text: str) -> set[str]:
    return {word for word in _words(text) if len(word) >= 3 and word not in _NOT_DISTINCTIVE}


def check_alt_text(brand: Brand, *, has_logo: bool | None = None) -> list[str]:
    """``has_logo`` overrides ``brand.logo is not None``, for a brand checked before its logo
    has been uploaded."""
    if has_logo is None:
        has_logo = brand.logo is not None
    alt = brand.logo_alt
    if alt is None or not alt.strip():
        if has_logo:
            return [
                "logo_alt: is required when there is a logo; describe the council, "
                f"e.g. '{brand.name}'"
            ]
        return []
    problems = []
    said = [word for word in _words(alt) if word in _FORBIDDEN_ALT_WORDS]
    if said:
        problems.append(
            f"logo_alt: {alt!r} must not say {said[0]!r}; a screen reader already announces an "
            f"image, so describe the council instead, e.g. '{brand.name}'"
        )
    names = [brand.name] + ([brand.welsh_name] if brand.welsh_name else [])
    distinctive = set().union(*(_distinctive(name) for name in names))
    # A name made only of generic words gives nothing to match, so the rule cannot apply.
    if has_logo and distinctive and not (_distinctive(alt) & distinctive):
        named = " or ".join(f"'{name}'" for name in names)
        problems.append(f"logo_alt: {alt!r} does not name the council; use e.g. {named}")
    return problems


_LABEL = re.compile(r"^[a-z0-9-]+$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def normalise_domain(domain: str) -> str:
    return domain.lower()


def _domain_reasons(domain: str) -> list[str]:
    if _SCHEME.match(domain) or any(c in domain for c in "/:?#@"):
        try:
            host = urlsplit(domain if "://" in domain else f"//{domain}").hostname
        except ValueError:
            host = None
        example = f", e.g. '{host}'" if host else ""
        return [f"give the host name only, without scheme, path or port{example}"]
    if not domain:
        return ["it is empty"]
    reasons = []
    if domain.endswith("."):
        reasons.append("remove the trailing dot")
        domain = domain[:-1]
    if len(domain) > 253:
        reasons.append(f"it is {len(domain)} characters long, over the limit of 253")
    labels = domain.split(".")
    if len(labels) < 2:
        reasons.append("it needs at least two labels, e.g. 'bins.hackney.gov.uk'")
    if any(not label for label in labels):
        reasons.append("it has an empty label (two dots together, or a leading dot)")
    for label in labels:
        if not label:
            continue
        if len(label) > 63:
            reasons.append(f"label '{label[:20]}…' is {len(label)} characters, over 63")
        if not _LABEL.match(label):
            reasons.append(
                f"label {label!r} may hold only letters a-z, digits and hyphens "
                "(write international names in their xn-- form)"
            )
        elif label.startswith("-") or label.endswith("-"):
            reasons.append(f"label {label!r} must not start or end with a hyphen")
    if len(labels) >= 2 and labels[-1].isdigit():
        reasons.append(f"the last label {labels[-1]!r} must not be all digits (no IP addresses)")
    return reasons


def check_domain(domain: str | None) -> list[str]:
    if domain is None:
        return []
    reasons = _domain_reasons(normalise_domain(domain))
    if not reasons:
        return []
    return [f"domain: {domain!r} is not a valid host name ({'; '.join(reasons)})"]


def txt_record(domain: str) -> str:
    return f"{TXT_RECORD_PREFIX}.{normalise_domain(domain)}"


def check_brand(brand: Brand, logo_content: bytes | None) -> tuple[Logo | None, list[str]]:
    problems = check_colours(brand.colours)
    problems += check_alt_text(brand, has_logo=brand.logo is not None or logo_content is not None)
    problems += check_domain(brand.domain)
    logo = None
    if logo_content is not None:
        try:
            logo = process_logo(logo_content)
        except LogoRefused as refused:
            problems += refused.problems
    return logo, problems
