"""Colour contrast by the WCAG 2.2 formula, and the nearest shade of a colour that passes.

The theme puts text on a council's colours in three ways (see :func:`theme_pairs`); each pair must
reach AA contrast for normal text, and a council told only "fails" would have to guess, so a
failing pair comes with the nearest shade of its own colour that passes."""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from shared.events import Colours

REQUIRED_CONTRAST = 4.5
TEXT_COLOUR = "#0B0C0C"

_HEX = re.compile(r"^#([0-9A-Fa-f]{6})$")


def _rgb(colour: str) -> tuple[float, float, float]:
    match = _HEX.match(colour)
    if match is None:
        raise ValueError(f"{colour!r} is not a colour of the form #RRGGBB")
    value = int(match.group(1), 16)
    return ((value >> 16) / 255, ((value >> 8) & 0xFF) / 255, (value & 0xFF) / 255)


def _hex(red: float, green: float, blue: float) -> str:
    def channel(value: float) -> int:
        return min(255, max(0, round(value * 255)))

    return f"#{channel(red):02X}{channel(green):02X}{channel(blue):02X}"


def _linear(channel: float) -> float:
    # 0.04045 is the sRGB threshold WCAG 2.2 cites; the older 0.03928 differs by nothing at 8 bits.
    return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    red, green, blue = (_linear(c) for c in _rgb(colour))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(foreground: str, background: str) -> float:
    first, second = relative_luminance(foreground), relative_luminance(background)
    lighter, darker = max(first, second), min(first, second)
    return (lighter + 0.05) / (darker + 0.05)


def _shade(hue: float, lightness: float, saturation: float) -> str:
    return _hex(*colorsys.hls_to_rgb(hue, lightness, saturation))


def _passing_shade_towards(
    colour: str, against: str, required: float, target: float
) -> tuple[float, str] | None:
    """The passing shade nearest ``colour`` with lightness moving towards ``target`` (0 or 1),
    and how far the lightness moved; None when even black or white does not pass."""
    hue, start, saturation = colorsys.rgb_to_hls(*_rgb(colour))
    if contrast_ratio(_shade(hue, target, saturation), against) < required:
        return None
    # Luminance grows with HSL lightness, so contrast against a fixed colour changes monotonically
    # as lightness moves away from it: bisection finds the boundary. The test is on the colour as
    # rounded to 8-bit channels, so ``far`` always names a hex colour that really passes.
    near, far = start, target
    for _ in range(40):
        middle = (near + far) / 2
        if contrast_ratio(_shade(hue, middle, saturation), against) >= required:
            far = middle
        else:
            near = middle
    return abs(far - start), _shade(hue, far, saturation)


def nearest_passing_shade(colour: str, against: str, required: float = REQUIRED_CONTRAST) -> str:
    if contrast_ratio(colour, against) >= required:
        return colour.upper()
    candidates = [
        found
        for target in (0.0, 1.0)
        if (found := _passing_shade_towards(colour, against, required, target)) is not None
    ]
    if not candidates:
        return max(("#000000", "#FFFFFF"), key=lambda extreme: contrast_ratio(extreme, against))
    # On a tie in lightness moved, prefer the shade that contrasts more.
    return min(candidates, key=lambda found: (found[0], -contrast_ratio(found[1], against)))[1]


@dataclass(frozen=True)
class ColourPair:
    role: str
    foreground: str
    background: str
    adjust: str


def theme_pairs(colours: Colours) -> list[ColourPair]:
    primary, secondary, link = (
        c.upper() for c in (colours.primary, colours.secondary, colours.link)
    )
    return [
        ColourPair("header and button text (secondary) on primary", secondary, primary, "primary"),
        ColourPair("links on the page background (secondary)", link, secondary, "link"),
        ColourPair(
            f"body text ({TEXT_COLOUR}) on the page background (secondary)",
            TEXT_COLOUR,
            secondary,
            "secondary",
        ),
    ]


def _ratio_text(ratio: float, required: float) -> str:
    text = f"{ratio:.2f}"
    if ratio < required <= float(text):
        # Never show a failing ratio rounded up to one that looks like it passes.
        text = str(Decimal(ratio).quantize(Decimal("0.01"), rounding=ROUND_DOWN))
    return text


def check_colours(colours: Colours) -> list[str]:
    problems = []
    for pair in theme_pairs(colours):
        ratio = contrast_ratio(pair.foreground, pair.background)
        if ratio >= REQUIRED_CONTRAST:
            continue
        # Links are the foreground of their pair; primary and secondary are backgrounds.
        if pair.adjust == "link":
            adjusted, against = pair.foreground, pair.background
        else:
            adjusted, against = pair.background, pair.foreground
        shade = nearest_passing_shade(adjusted, against)
        shade_ratio = contrast_ratio(shade, against)
        problems.append(
            f"colours.{pair.adjust}: {pair.role}: {pair.foreground} on {pair.background} has "
            f"contrast {_ratio_text(ratio, REQUIRED_CONTRAST)}:1, WCAG 2.2 AA needs "
            f"{REQUIRED_CONTRAST:g}:1 — the nearest shade of {adjusted} that passes is {shade} "
            f"({_ratio_text(shade_ratio, REQUIRED_CONTRAST)}:1)"
        )
    return problems
