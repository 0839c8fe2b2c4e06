"""An uploaded logo: what kind of file it is, its size limits, and the bytes to publish.

PNGs are checked from their header before any pixel is decoded, scaled down when too wide and
re-encoded, which drops whatever metadata came with them; SVGs are published as sent once
:mod:`services.branding.svg` finds nothing in them that could run or fetch."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from services.branding import svg
from shared.assets import MediaType

MAX_LOGO_BYTES = 1024 * 1024
MAX_LOGO_WIDTH = 600
MIN_LOGO_HEIGHT = 40
MAX_LOGO_SIDE = 4000
MAX_LOGO_PIXELS = MAX_LOGO_SIDE * MAX_LOGO_SIDE


@dataclass(frozen=True)
class Logo:
    content: bytes
    media_type: MediaType
    width: int | None
    height: int | None
    scaled: bool

    @property
    def extension(self) -> str:
        return "png" if self.media_type == "image/png" else "svg"


class LogoRefused(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_UTF8_BOM = b"\xef\xbb\xbf"
_SVG_SNIFF_BYTES = 4096


def sniff_media_type(content: bytes) -> MediaType | None:
    if content.startswith(_PNG_MAGIC):
        return "image/png"
    head = content[:_SVG_SNIFF_BYTES].removeprefix(_UTF8_BOM).lstrip().lower()
    # A prolog (<?xml, <!DOCTYPE, a comment) may come before <svg; what it holds is judged later.
    if head.startswith(b"<svg") or (head.startswith(b"<") and b"<svg" in head):
        return "image/svg+xml"
    return None


_KNOWN_FORMATS = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (perhaps an Office document)"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"8BPS", "a Photoshop document"),
)


def _describe(content: bytes) -> str:
    if not content:
        return "an empty file"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "a WebP image"
    if content[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "an AVIF/HEIC image"
    for magic, description in _KNOWN_FORMATS:
        if content.startswith(magic):
            return description
    text = content[:_SVG_SNIFF_BYTES].decode("utf-8", errors="replace")
    if len(content) > _SVG_SNIFF_BYTES:
        # The cut may split a multi-byte character; that alone does not make it binary.
        text = text.rstrip("\ufffd")
    if "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n\f" for c in text):
        return "text that is not SVG"
    return "unrecognised binary data"


def process_logo(content: bytes) -> Logo:
    problems = []
    if len(content) > MAX_LOGO_BYTES:
        problems.append(
            f"logo: the file is {len(content):,} bytes, over the limit of {MAX_LOGO_BYTES:,} bytes"
        )
    media_type = sniff_media_type(content)
    if media_type is None:
        problems.append(f"logo: must be a PNG or SVG file (found {_describe(content)})")
    if problems:
        raise LogoRefused(problems)
    if media_type == "image/png":
        return _process_png(content)
    problems, width, height = svg.inspect(content)
    if problems:
        raise LogoRefused(problems)
    return Logo(content, "image/svg+xml", width, height, scaled=False)


def _process_png(content: bytes) -> Logo:
    try:
        # Opening reads only the header, so the size is known before any pixels are decoded.
        with Image.open(io.BytesIO(content), formats=["PNG"]) as image:
            width, height = image.size
            problems = _png_size_problems(width, height)
            if problems:
                raise LogoRefused(problems)
            image.load()
            return _reencode(image)
    except LogoRefused:
        raise
    except Image.DecompressionBombError as error:
        raise LogoRefused([f"logo: the PNG is too large to open safely ({error})"]) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports broken PNG chunks as SyntaxError and truncation as OSError.
        raise LogoRefused(
            [f"logo: the PNG is corrupt or truncated and cannot be read ({error})"]
        ) from error


def _scaled_size(width: int, height: int) -> tuple[int, int]:
    if width <= MAX_LOGO_WIDTH:
        return width, height
    return MAX_LOGO_WIDTH, max(1, round(height * MAX_LOGO_WIDTH / width))


def _png_size_problems(width: int, height: int) -> list[str]:
    if width > MAX_LOGO_SIDE or height > MAX_LOGO_SIDE or width * height > MAX_LOGO_PIXELS:
        return [
            f"logo: the PNG is {width}x{height} pixels; the largest accepted is "
            f"{MAX_LOGO_SIDE}x{MAX_LOGO_SIDE} pixels"
        ]
    if height < MIN_LOGO_HEIGHT:
        return [
            f"logo: the PNG is {height} pixels high; it must be at least {MIN_LOGO_HEIGHT} "
            "pixels high to be legible"
        ]
    scaled_width, scaled_height = _scaled_size(width, height)
    if scaled_height < MIN_LOGO_HEIGHT:
        return [
            f"logo: the PNG is {width}x{height} pixels; scaled down to {scaled_width} pixels wide "
            f"it would be {scaled_height} pixels high, under the minimum of {MIN_LOGO_HEIGHT}; "
            "crop it or send a taller logo"
        ]
    return []


def _resizable(image: Image.Image) -> Image.Image:
    """The image in a mode that LANCZOS can resample without losing transparency."""
    keyed = "transparency" in image.info
    if image.mode == "P":
        return image.convert("RGBA" if keyed else "RGB")
    if image.mode == "1":
        return image.convert("L")
    if keyed and image.mode in ("L", "I", "I;16"):
        return image.convert("LA")
    if keyed and image.mode == "RGB":
        return image.convert("RGBA")
    if image.mode in ("L", "LA", "RGB", "RGBA", "I", "I;16"):
        return image
    return image.convert("RGBA")


def _reencode(image: Image.Image) -> Logo:
    width, height = image.size
    target = _scaled_size(width, height)
    scaled = target != (width, height)
    if scaled:
        output = _resizable(image).resize(target, Image.Resampling.LANCZOS)
        transparency = None
    else:
        output = image.copy()
        transparency = image.info.get("transparency")
    # Start from empty info so nothing from the upload (text, EXIF, XMP, ICC) is written back.
    output.info = {}
    buffer = io.BytesIO()
    options: dict[str, object] = {"compress_level": 9}
    if transparency is not None:
        options["transparency"] = transparency
    output.save(buffer, format="PNG", **options)
    return Logo(buffer.getvalue(), "image/png", output.width, output.height, scaled)
