"""The brand rules on their own: contrast, alt text, domains and hostile logo files."""

from __future__ import annotations

import colorsys
import io
import time

import pytest
from PIL import Image

from services.branding.contrast import (
    REQUIRED_CONTRAST,
    TEXT_COLOUR,
    ColourPair,
    check_colours,
    contrast_ratio,
    nearest_passing_shade,
    relative_luminance,
    theme_pairs,
)
from services.branding.logo import (
    MAX_LOGO_BYTES,
    MAX_LOGO_WIDTH,
    MIN_LOGO_HEIGHT,
    Logo,
    LogoRefused,
    process_logo,
    sniff_media_type,
)
from services.branding.rules import (
    TXT_RECORD_PREFIX,
    check_alt_text,
    check_brand,
    check_domain,
    normalise_domain,
    txt_record,
)
from shared.events import Brand, Colours, LogoRef

HACKNEY = Colours(primary="#00664F", secondary="#FFFFFF", link="#1D70B8")
LOGO_REF = LogoRef(sha256="0" * 64, media_type="image/png", size=100)


def brand(**fields: object) -> Brand:
    values: dict[str, object] = {"name": "London Borough of Hackney", "colours": HACKNEY}
    values.update(fields)
    return Brand.model_validate(values)


def png(width: int, height: int, mode: str = "RGB", colour: object = (0, 102, 79)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")  # type: ignore[arg-type]
    return buffer.getvalue()


def refusal(content: bytes) -> list[str]:
    with pytest.raises(LogoRefused) as refused:
        process_logo(content)
    assert refused.value.problems
    assert all(problem.startswith("logo: ") for problem in refused.value.problems)
    return refused.value.problems


def svg(body: str, attributes: str = "") -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="120" height="40" {attributes}>{body}</svg>'
    ).encode()


def alpha(image: Image.Image, xy: tuple[int, int]) -> int:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel[3]


def hue_degrees(colour: str) -> float:
    red, green, blue = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(red, green, blue)[0] * 360


# -- contrast -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("foreground", "background", "expected"),
    [
        ("#FFFFFF", "#FFFFFF", 1.0),
        ("#000000", "#FFFFFF", 21.0),
        ("#FFFFFF", "#000000", 21.0),
        ("#1D70B8", "#FFFFFF", 5.17),
        ("#0B0C0C", "#FFFFFF", 19.59),
        ("#FFDD00", "#FFFFFF", 1.35),
        ("#767676", "#FFFFFF", 4.54),
        ("#777777", "#FFFFFF", 4.48),
    ],
)
def test_contrast_matches_known_wcag_values(
    foreground: str, background: str, expected: float
) -> None:
    assert contrast_ratio(foreground, background) == pytest.approx(expected, abs=0.005)


def test_luminance_of_extremes_and_case() -> None:
    assert relative_luminance("#000000") == 0.0
    assert relative_luminance("#FFFFFF") == pytest.approx(1.0)
    assert relative_luminance("#1d70b8") == relative_luminance("#1D70B8")


def test_the_classic_grey_boundary() -> None:
    assert contrast_ratio("#767676", "#FFFFFF") >= REQUIRED_CONTRAST
    assert contrast_ratio("#777777", "#FFFFFF") < REQUIRED_CONTRAST


def test_contrast_rejects_a_malformed_colour() -> None:
    with pytest.raises(ValueError, match="RRGGBB"):
        contrast_ratio("red", "#FFFFFF")


def test_nearest_shade_of_a_yellow_stays_yellow_and_passes() -> None:
    shade = nearest_passing_shade("#FFDD00", "#FFFFFF")
    assert shade.startswith("#")
    assert shade == shade.upper()
    assert len(shade) == 7
    assert contrast_ratio(shade, "#FFFFFF") >= REQUIRED_CONTRAST
    assert abs(hue_degrees(shade) - hue_degrees("#FFDD00")) < 3
    # Only just passing: one step lighter in every channel would fail.
    red, green, blue = (int(shade[i : i + 2], 16) for i in (1, 3, 5))
    lighter = f"#{min(red + 3, 255):02X}{min(green + 3, 255):02X}{min(blue + 3, 255):02X}"
    assert contrast_ratio(lighter, "#FFFFFF") < REQUIRED_CONTRAST


def test_nearest_shade_goes_lighter_against_black() -> None:
    shade = nearest_passing_shade("#1A2B3C", "#000000")
    assert relative_luminance(shade) > relative_luminance("#1A2B3C")
    assert contrast_ratio(shade, "#000000") >= REQUIRED_CONTRAST
    assert abs(hue_degrees(shade) - hue_degrees("#1A2B3C")) < 3


def test_nearest_shade_picks_the_smaller_move() -> None:
    # Grey against the same grey: only darker can pass (white reaches just 4.48:1).
    shade = nearest_passing_shade("#777777", "#777777")
    assert contrast_ratio(shade, "#777777") >= REQUIRED_CONTRAST
    assert relative_luminance(shade) < relative_luminance("#777777")
    # A pale grey on a dark page moves lighter, not all the way to black.
    assert relative_luminance(nearest_passing_shade("#444444", "#222222")) > relative_luminance(
        "#444444"
    )


def test_nearest_shade_of_a_passing_colour_is_itself() -> None:
    assert nearest_passing_shade("#1d70b8", "#FFFFFF") == "#1D70B8"


def test_nearest_shade_when_nothing_passes_is_the_better_extreme() -> None:
    assert nearest_passing_shade("#777777", "#FFFFFF", required=22) == "#000000"
    assert nearest_passing_shade("#777777", "#000000", required=22) == "#FFFFFF"


@pytest.mark.parametrize(
    ("colour", "against"),
    [
        ("#FFDD00", "#FFFFFF"),
        ("#00FF00", "#FFFFFF"),
        ("#FF0000", "#000000"),
        ("#0000FF", "#000000"),
        ("#F0F0F0", "#FFFFFF"),
        ("#123456", "#0B0C0C"),
        ("#808080", "#7F7F7F"),
        ("#D4351C", "#FFFFFF"),
    ],
)
def test_nearest_shade_always_really_passes(colour: str, against: str) -> None:
    shade = nearest_passing_shade(colour, against)
    assert contrast_ratio(shade, against) >= REQUIRED_CONTRAST


def test_theme_pairs_name_the_field_to_adjust() -> None:
    pairs = theme_pairs(Colours(primary="#00664f", secondary="#ffffff", link="#1d70b8"))
    assert pairs == [
        ColourPair(
            "header and button text (secondary) on primary", "#FFFFFF", "#00664F", "primary"
        ),
        ColourPair("links on the page background (secondary)", "#1D70B8", "#FFFFFF", "link"),
        ColourPair(
            f"body text ({TEXT_COLOUR}) on the page background (secondary)",
            TEXT_COLOUR,
            "#FFFFFF",
            "secondary",
        ),
    ]


def test_hackney_colours_pass() -> None:
    assert check_colours(HACKNEY) == []


def test_a_pale_primary_is_refused_with_every_fact() -> None:
    problems = check_colours(Colours(primary="#FFDD00", secondary="#FFFFFF"))
    assert len(problems) == 1
    problem = problems[0]
    assert problem.startswith("colours.primary: ")
    assert "#FFFFFF on #FFDD00" in problem
    assert "1.35:1" in problem
    assert "4.5:1" in problem
    assert "WCAG 2.2 AA" in problem
    shade = problem.split("passes is ")[1].split(" ")[0]
    assert contrast_ratio("#FFFFFF", shade) >= REQUIRED_CONTRAST


def test_a_pale_link_names_the_link_field() -> None:
    problems = check_colours(Colours(primary="#00664F", link="#ffdd00"))
    assert len(problems) == 1
    assert problems[0].startswith("colours.link: links on the page background (secondary): ")
    assert "#FFDD00 on #FFFFFF" in problems[0]
    shade = problems[0].split("passes is ")[1].split(" ")[0]
    assert contrast_ratio(shade, "#FFFFFF") >= REQUIRED_CONTRAST


def test_a_dark_page_background_fails_every_pair() -> None:
    problems = check_colours(Colours(primary="#00664F", secondary="#333333", link="#1D70B8"))
    assert [problem.split(":")[0] for problem in problems] == [
        "colours.primary",
        "colours.link",
        "colours.secondary",
    ]
    assert "#0B0C0C on #333333" in problems[2]


def test_the_boundary_grey_link_fails_without_rounding_up() -> None:
    problems = check_colours(Colours(primary="#00664F", link="#777777"))
    assert len(problems) == 1
    assert "4.47:1" in problems[0] or "4.48:1" in problems[0]
    assert check_colours(Colours(primary="#00664F", link="#767676")) == []


def test_a_ratio_just_under_the_limit_is_never_shown_as_passing() -> None:
    # #0078D7 (a popular blue) on #FFFFFF is 4.4989:1, which rounds to 4.50.
    ratio = contrast_ratio("#FFFFFF", "#0078D7")
    assert 4.495 <= ratio < REQUIRED_CONTRAST
    problems = check_colours(Colours(primary="#0078D7"))
    assert len(problems) == 1
    assert "has contrast 4.49:1" in problems[0]


# -- alt text -------------------------------------------------------------------------------------


def test_alt_text_is_required_with_a_logo() -> None:
    for alt in (None, "", "   "):
        assert check_alt_text(brand(logo=LOGO_REF, logo_alt=alt)) == [
            "logo_alt: is required when there is a logo; describe the council, "
            "e.g. 'London Borough of Hackney'"
        ]


def test_alt_text_is_optional_without_a_logo() -> None:
    assert check_alt_text(brand()) == []
    assert check_alt_text(brand(logo_alt="Our council")) == []


@pytest.mark.parametrize(
    "alt", ["Hackney logo", "LOGO of Hackney", "Hackney-logo", "Hackney icon", "Image: Hackney"]
)
def test_alt_text_must_not_say_logo(alt: str) -> None:
    problems = check_alt_text(brand(logo=LOGO_REF, logo_alt=alt))
    assert len(problems) == 1
    assert problems[0].startswith("logo_alt: ")
    assert "must not say" in problems[0]


def test_alt_text_rule_on_logo_words_applies_without_a_logo_too() -> None:
    assert len(check_alt_text(brand(logo_alt="Hackney logo"))) == 1


def test_words_containing_logo_are_fine() -> None:
    assert check_alt_text(brand(name="Logoton Council", logo=LOGO_REF, logo_alt="Logoton")) == []


@pytest.mark.parametrize("alt", ["Our council", "The Council", "Royal Borough", "Hackne"])
def test_alt_text_must_name_the_council(alt: str) -> None:
    problems = check_alt_text(brand(logo=LOGO_REF, logo_alt=alt))
    assert len(problems) == 1
    assert "does not name the council" in problems[0]
    assert "'London Borough of Hackney'" in problems[0]


@pytest.mark.parametrize(
    "alt", ["London Borough of Hackney", "Hackney Council", "hackney", "Borough of London"]
)
def test_alt_text_naming_the_council_passes(alt: str) -> None:
    assert check_alt_text(brand(logo=LOGO_REF, logo_alt=alt)) == []


@pytest.mark.parametrize("alt", ["Ynys Môn", "Cyngor Sir Ynys Mon", "Isle of Anglesey"])
def test_the_welsh_name_counts(alt: str) -> None:
    anglesey = brand(
        name="Isle of Anglesey County Council",
        welsh_name="Cyngor Sir Ynys Môn",
        logo=LOGO_REF,
        logo_alt=alt,
    )
    assert check_alt_text(anglesey) == []


def test_generic_welsh_words_do_not_count() -> None:
    anglesey = brand(
        name="Isle of Anglesey County Council",
        welsh_name="Cyngor Sir Ynys Môn",
        logo=LOGO_REF,
        logo_alt="Cyngor Sir",
    )
    assert len(check_alt_text(anglesey)) == 1


def test_both_alt_problems_at_once() -> None:
    problems = check_alt_text(brand(logo=LOGO_REF, logo_alt="Council logo"))
    assert len(problems) == 2


def test_has_logo_overrides_the_brand() -> None:
    assert len(check_alt_text(brand(), has_logo=True)) == 1


# -- domains --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain", ["bins.hackney.gov.uk", "BINS.Hackney.GOV.uk", "xn--ynys-mn-b1a.cymru", "a-b.c1.uk"]
)
def test_valid_domains(domain: str) -> None:
    assert check_domain(domain) == []


def test_no_domain_is_fine() -> None:
    assert check_domain(None) == []


def test_domains_are_normalised_to_lower_case() -> None:
    assert normalise_domain("BINS.Hackney.GOV.uk") == "bins.hackney.gov.uk"


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("https://bins.hackney.gov.uk", "host name only"),
        ("bins.hackney.gov.uk/path", "host name only"),
        ("bins.hackney.gov.uk:8443", "host name only"),
        ("bins..hackney.gov.uk", "empty label"),
        (".hackney.gov.uk", "empty label"),
        ("-bad.gov.uk", "hyphen"),
        ("bad-.gov.uk", "hyphen"),
        ("localhost", "two labels"),
        ("a" * 64 + ".gov.uk", "over 63"),
        ("exa mple.gov.uk", "letters a-z, digits and hyphens"),
        ("bins_hackney.gov.uk", "letters a-z, digits and hyphens"),
        ("bïns.gov.uk", "xn--"),
        ("bins.hackney.gov.uk.", "trailing dot"),
        ("1.2.3.4", "all digits"),
        ("", "empty"),
        (".".join(["abcdefghi"] * 26), "over the limit of 253"),
    ],
)
def test_invalid_domains(domain: str, reason: str) -> None:
    problems = check_domain(domain)
    assert len(problems) == 1
    assert problems[0].startswith(f"domain: {domain!r} is not a valid host name (")
    assert reason in problems[0]


def test_a_url_is_answered_with_its_host() -> None:
    (problem,) = check_domain("https://bins.hackney.gov.uk/collections")
    assert "'bins.hackney.gov.uk'" in problem


def test_txt_record() -> None:
    assert TXT_RECORD_PREFIX == "_tenancy-challenge"
    assert txt_record("bins.hackney.gov.uk") == "_tenancy-challenge.bins.hackney.gov.uk"


# -- sniffing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"  \n<?xml version='1.0'?>\n<svg/>", "image/svg+xml"),
        (b"\xef\xbb\xbf<svg/>", "image/svg+xml"),
        (b"<!-- made by hand -->\n<SVG/>", "image/svg+xml"),
        (b"\xff\xd8\xff\xe0", None),
        (b"GIF89a", None),
        (b"hello", None),
        (b"", None),
        (b"<?xml version='1.0'?><html/>", None),
    ],
)
def test_sniff_media_type(content: bytes, expected: str | None) -> None:
    assert sniff_media_type(content) == expected


# -- PNG logos ------------------------------------------------------------------------------------


def test_a_small_png_keeps_its_size() -> None:
    logo = process_logo(png(300, 80))
    assert (logo.width, logo.height, logo.scaled) == (300, 80, False)
    assert logo.media_type == "image/png"
    assert logo.extension == "png"
    with Image.open(io.BytesIO(logo.content)) as image:
        assert image.size == (300, 80)
        assert image.getpixel((10, 10)) == (0, 102, 79)


def test_a_wide_png_is_scaled_keeping_its_aspect() -> None:
    logo = process_logo(png(1200, 200))
    assert (logo.width, logo.height, logo.scaled) == (600, 100, True)
    with Image.open(io.BytesIO(logo.content)) as image:
        assert image.size == (600, 100)


def test_png_output_is_deterministic() -> None:
    content = png(1200, 200, "RGBA", (10, 20, 30, 128))
    assert process_logo(content).content == process_logo(content).content
    assert process_logo(png(300, 80)).content == process_logo(png(300, 80)).content


def test_png_metadata_is_stripped() -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "secret-author-name")
    buffer = io.BytesIO()
    Image.new("RGB", (300, 80), (1, 2, 3)).save(buffer, format="PNG", pnginfo=info)
    assert b"secret-author-name" in buffer.getvalue()
    logo = process_logo(buffer.getvalue())
    assert b"secret-author-name" not in logo.content
    assert b"tEXt" not in logo.content


def test_a_short_png_is_refused() -> None:
    (problem,) = refusal(png(100, 20))
    assert "20 pixels high" in problem
    assert f"at least {MIN_LOGO_HEIGHT}" in problem


def test_a_png_too_short_once_scaled_is_refused() -> None:
    (problem,) = refusal(png(3000, 150))
    assert "scaled down to 600 pixels wide" in problem
    assert "30 pixels high" in problem


def test_a_png_exactly_at_the_limits_passes() -> None:
    logo = process_logo(png(MAX_LOGO_WIDTH, MIN_LOGO_HEIGHT))
    assert (logo.width, logo.height, logo.scaled) == (MAX_LOGO_WIDTH, MIN_LOGO_HEIGHT, False)
    logo = process_logo(png(1200, 80))
    assert (logo.width, logo.height) == (600, 40)


def test_a_huge_png_is_refused_before_decoding() -> None:
    content = png(5000, 100, "P", 0)
    assert len(content) < MAX_LOGO_BYTES
    (problem,) = refusal(content)
    assert "5000x100" in problem
    assert "4000x4000" in problem


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its data does not have."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("width", "height"), [(3999, 4001), (4000, 4000), (60000, 60000)])
def test_png_size_comes_from_the_header_not_the_pixels(width: int, height: int) -> None:
    started = time.perf_counter()
    problems = refusal(_png_claiming(width, height))
    assert time.perf_counter() - started < 1
    if (width, height) == (4000, 4000):
        # Within limits but with no pixel data: refused as corrupt, not as too large.
        assert "corrupt or truncated" in problems[0]
    else:
        assert "too large" in problems[0] or "largest accepted" in problems[0]


def test_an_oversized_file_is_refused_naming_size_and_limit() -> None:
    content = b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_LOGO_BYTES
    (problem,) = refusal(content)
    assert f"{len(content):,} bytes" in problem
    assert f"{MAX_LOGO_BYTES:,} bytes" in problem


def test_an_oversized_svg_is_refused() -> None:
    content = svg("<!--" + "x" * MAX_LOGO_BYTES + "-->")
    (problem,) = refusal(content)
    assert "over the limit" in problem


def _encoded(format_: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 80), (200, 0, 0)).save(buffer, format=format_)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (_encoded("JPEG"), "a JPEG image"),
        (_encoded("GIF"), "a GIF image"),
        (_encoded("WEBP"), "a WebP image"),
        (_encoded("BMP"), "a BMP image"),
        (b"Hackney Council\n", "text that is not SVG"),
        (b"\x00\x01\x02\x03", "unrecognised binary data"),
        (b"", "an empty file"),
    ],
)
def test_other_formats_are_refused(content: bytes, found: str) -> None:
    assert refusal(content) == [f"logo: must be a PNG or SVG file (found {found})"]


def test_a_truncated_png_is_refused_cleanly() -> None:
    buffer = io.BytesIO()
    # Noise compresses badly, so half the file cuts well into the pixel data.
    Image.effect_noise((300, 80), 64).convert("RGB").save(buffer, format="PNG")
    content = buffer.getvalue()
    for broken in (content[:20], content[:60], content[: len(content) // 2], content[:-30]):
        (problem,) = refusal(broken)
        assert "corrupt or truncated" in problem


def test_a_png_with_a_broken_checksum_is_refused() -> None:
    content = bytearray(png(300, 80))
    content[29] ^= 0xFF  # inside the IHDR CRC
    (problem,) = refusal(bytes(content))
    assert "corrupt or truncated" in problem


def test_transparency_survives_scaling() -> None:
    image = Image.new("RGBA", (1200, 200), (0, 0, 0, 0))
    image.paste((0, 102, 79, 255), (0, 0, 600, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    logo = process_logo(buffer.getvalue())
    assert logo.scaled
    with Image.open(io.BytesIO(logo.content)) as scaled:
        assert scaled.mode == "RGBA"
        assert scaled.getpixel((550, 50)) == (0, 0, 0, 0)
        assert scaled.getpixel((50, 50)) == (0, 102, 79, 255)


def test_palette_transparency_survives_scaling_and_re_encoding() -> None:
    image = Image.new("P", (1200, 200), 0)
    image.putpalette([255, 255, 255, 0, 102, 79] + [0] * 762)
    image.paste(1, (0, 0, 600, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    content = buffer.getvalue()
    scaled = process_logo(content)
    with Image.open(io.BytesIO(scaled.content)) as out:
        rgba = out.convert("RGBA")
        assert alpha(rgba, (550, 50)) == 0
        assert rgba.getpixel((50, 50)) == (0, 102, 79, 255)
    small = Image.new("P", (300, 80), 0)
    small.putpalette([255, 255, 255, 0, 102, 79] + [0] * 762)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", transparency=0)
    kept = process_logo(buffer.getvalue())
    with Image.open(io.BytesIO(kept.content)) as out:
        assert out.mode == "P"
        assert alpha(out.convert("RGBA"), (5, 5)) == 0


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "I;16"])
def test_every_png_mode_scales(mode: str) -> None:
    content = png(1200, 200, mode, 1)
    logo = process_logo(content)
    assert (logo.width, logo.height, logo.scaled) == (600, 100, True)


# -- SVG logos ------------------------------------------------------------------------------------

BENIGN = svg(
    '<defs><linearGradient id="g"><stop offset="0" stop-color="#00664F"/></linearGradient>'
    '<path id="p" d="M0 0h10v10z"/></defs>'
    '<rect width="120" height="40" fill="url(#g)" style="stroke: url( \'#g\' )"/>'
    '<use href="#p"/><use xlink:href="#p"/><a href="#p"><text>Hackney</text></a>'
    "<style>rect { fill: url(#g); }</style>"
)


def test_a_benign_svg_passes_unchanged() -> None:
    logo = process_logo(BENIGN)
    assert logo.content == BENIGN
    assert logo.media_type == "image/svg+xml"
    assert logo.extension == "svg"
    assert (logo.width, logo.height, logo.scaled) == (120, 40, False)


def test_an_inkscape_svg_with_metadata_passes() -> None:
    content = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" '
        b'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        b'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        b'xmlns:dc="http://purl.org/dc/elements/1.1/" viewBox="0 0 300 80">'
        b'<sodipodi:namedview inkscape:zoom="1"/>'
        b"<metadata><rdf:RDF><dc:title>Hackney</dc:title></rdf:RDF></metadata>"
        b'<g inkscape:label="Layer 1"><rect width="300" height="80"/></g></svg>'
    )
    logo = process_logo(content)
    assert (logo.width, logo.height) == (300, 80)


@pytest.mark.parametrize(
    ("attributes", "size"),
    [
        ('viewBox="0 0 300 80"', (300, 80)),
        ('viewBox="0,0,300,80"', (300, 80)),
    ],
)
def test_svg_size_from_the_view_box(attributes: str, size: tuple[int, int]) -> None:
    content = f'<svg xmlns="http://www.w3.org/2000/svg" {attributes}/>'.encode()
    logo = process_logo(content)
    assert (logo.width, logo.height) == size


def test_svg_size_partly_from_the_view_box_or_unknown() -> None:
    one_side = b'<svg xmlns="http://www.w3.org/2000/svg" width="150px" viewBox="0 0 300 80"/>'
    assert (process_logo(one_side).width, process_logo(one_side).height) == (150, 40)
    unknown = b'<svg xmlns="http://www.w3.org/2000/svg" width="100%" height="2em"/>'
    assert (process_logo(unknown).width, process_logo(unknown).height) == (None, None)


HOSTILE = [
    ("script", svg("<script>alert(1)</script>"), "<script>"),
    ("onload", svg("", 'onload="alert(1)"'), "onload= on <svg> is an event handler"),
    ("onclick", svg('<rect onClick="alert(1)"/>'), "onClick= on <rect> is an event handler"),
    (
        "remote image",
        svg('<image href="https://evil.example/x.png"/>'),
        "href= on <image> links to 'https://evil.example/x.png'",
    ),
    (
        "file use",
        svg('<use xlink:href="file:///etc/passwd#x"/>'),
        "href= on <use> links to 'file:///etc/passwd#x'",
    ),
    (
        "javascript link",
        svg('<a href="javascript:alert(1)"><text>x</text></a>'),
        "href= on <a> links to 'javascript:alert(1)'",
    ),
    (
        "data image",
        svg('<image href="data:image/svg+xml;base64,PHN2Zy8+"/>'),
        "links to 'data:image/svg+xml",
    ),
    (
        "feImage",
        svg('<filter id="f"><feImage href="http://evil.example/x"/></filter>'),
        "href= on <feImage>",
    ),
    (
        "foreignObject",
        svg(
            '<foreignObject><body xmlns="http://www.w3.org/1999/xhtml">'
            "<iframe src='https://evil.example'/></body></foreignObject>"
        ),
        "<foreignObject>",
    ),
    (
        "xhtml smuggled",
        svg('<g><div xmlns="http://www.w3.org/1999/xhtml">hi</div></g>'),
        "element <div> (namespace http://www.w3.org/1999/xhtml) is not SVG",
    ),
    (
        "import",
        svg("<style>@import url(https://evil.example/x.css);</style>"),
        "a <style> element uses @import",
    ),
    (
        "style url",
        svg('<rect style="fill:url(https://evil.example/p#x)"/>'),
        "attribute style= on <rect> refers to url(https://evil.example/p#x)",
    ),
    (
        "escaped style url",
        svg('<rect style="fill:u\\72l(https://evil.example/p#x)"/>'),
        "refers to url(https://evil.example/p#x)",
    ),
    (
        "presentation url",
        svg("<rect fill=\"url('https://evil.example/p#x')\"/>"),
        "attribute fill= on <rect> refers to url(https://evil.example/p#x)",
    ),
    (
        "style element url",
        svg("<style>rect { fill: url(//evil.example/p) }</style>"),
        "a <style> element refers to url(//evil.example/p)",
    ),
    (
        "image-set",
        svg("<style>rect { background: image-set('https://evil.example/x.png' 1x) }</style>"),
        "image-set()",
    ),
    (
        "set href",
        svg('<a href="#x"><set attributeName="href" to="javascript:alert(1)"/></a>'),
        "<set> animates 'href'",
    ),
    (
        "animate xlink:href",
        svg('<a><animate attributeName="xlink:href" values="javascript:alert(1)"/></a>'),
        "<animate> animates 'xlink:href'",
    ),
    (
        "animate onbegin",
        svg('<rect><set attributeName="onmouseover" to="alert(1)"/></rect>'),
        "<set> animates 'onmouseover'",
    ),
    (
        "stylesheet",
        b'<?xml version="1.0"?>\n<?xml-stylesheet href="https://evil.example/x.css"?>\n' + svg(""),
        "<?xml-stylesheet?>",
    ),
    ("html root", b"<html><svg/></html>", "the root element must be <svg>"),
    (
        "svg without namespace",
        b"<svg width='1' height='1'/>",
        "found <svg> (no namespace)",
    ),
    (
        "xinclude",
        svg('<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>'),
        "element <include> (namespace http://www.w3.org/2001/XInclude) is not SVG",
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(content, expected) for _, content, expected in HOSTILE],
    ids=[name for name, _, _ in HOSTILE],
)
def test_hostile_svgs_are_refused(content: bytes, expected: str) -> None:
    problems = refusal(content)
    assert any(expected in problem for problem in problems), problems


XXE = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg"><text>&xxe;</text></svg>'
)

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE svg [\n<!ENTITY lol "lol">\n'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b']>\n<svg xmlns="http://www.w3.org/2000/svg"><text>&lol9;</text></svg>'
)


@pytest.mark.parametrize(
    "content",
    [
        XXE,
        BILLION_LAUGHS,
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
    ids=["xxe", "billion-laughs", "external-dtd"],
)
def test_dtds_and_entities_are_refused_without_expansion(content: bytes) -> None:
    started = time.perf_counter()
    assert refusal(content) == ["logo: SVG must not declare a DTD or entities"]
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "content",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect/>',
        b'<svg xmlns="http://www.w3.org/2000/svg" a="1" a="2"/>',
    ],
)
def test_malformed_svg_is_refused(content: bytes) -> None:
    (problem,) = refusal(content)
    assert problem.startswith("logo: not well-formed SVG (")


def test_every_svg_problem_is_reported_at_once() -> None:
    content = svg(
        "<script>alert(1)</script>"
        '<image href="https://evil.example/x.png"/>'
        "<foreignObject/>"
        "<style>@import url(https://evil.example/x.css);</style>",
        'onload="alert(1)"',
    )
    problems = refusal(content)
    for expected in ("<script>", "onload=", "links to 'https://evil", "<foreignObject>", "@import"):
        assert any(expected in problem for problem in problems), (expected, problems)
    assert len(problems) == len(set(problems))


def test_repeated_problems_are_reported_once() -> None:
    problems = refusal(svg("<script/>" * 50))
    assert problems == ["logo: <script> elements are not allowed"]


# -- the whole brand ------------------------------------------------------------------------------


def test_an_acceptable_brand_has_no_problems() -> None:
    logo, problems = check_brand(
        brand(logo_alt="Hackney Council", domain="bins.hackney.gov.uk"), png(300, 80)
    )
    assert problems == []
    assert isinstance(logo, Logo)
    assert logo.width == 300


def test_a_brand_without_a_logo() -> None:
    assert check_brand(brand(), None) == (None, [])


def test_check_brand_reports_every_problem_at_once() -> None:
    bad = brand(
        colours=Colours(primary="#FFDD00"),
        logo_alt="Our council logo",
        domain="https://bins.hackney.gov.uk",
    )
    logo, problems = check_brand(bad, svg("<script/>", 'onload="x()"'))
    assert logo is None
    fields = [problem.split(":")[0] for problem in problems]
    assert fields == ["colours.primary", "logo_alt", "logo_alt", "domain", "logo", "logo"]


def test_logo_content_makes_alt_text_required() -> None:
    _, problems = check_brand(brand(), png(300, 80))
    assert problems == [
        "logo_alt: is required when there is a logo; describe the council, "
        "e.g. 'London Borough of Hackney'"
    ]


@pytest.mark.parametrize(("mode", "key"), [("L", 5), ("RGB", (1, 2, 3)), ("I;16", 5)])
def test_colour_key_transparency_survives_scaling(mode: str, key: object) -> None:
    buffer = io.BytesIO()
    Image.new(mode, (1200, 200), key).save(buffer, format="PNG", transparency=key)  # type: ignore[arg-type]
    logo = process_logo(buffer.getvalue())
    assert logo.scaled
    with Image.open(io.BytesIO(logo.content)) as scaled:
        assert alpha(scaled.convert("RGBA"), (300, 50)) == 0
