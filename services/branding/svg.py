"""Inspecting an uploaded SVG logo: hardened parsing, then every way it could run script or fetch
something when a browser shows it.

The parser refuses a DTD as soon as it meets one, so entity tricks (XXE, billion laughs) never
expand; everything else is collected, so a council hears of every problem at once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

_SVG_NS = "http://www.w3.org/2000/svg"
# Editors (Inkscape, Illustrator's RDF) write metadata in these; browsers never render them.
_METADATA_NAMESPACES = frozenset(
    {
        "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
        "http://purl.org/dc/elements/1.1/",
        "http://creativecommons.org/ns#",
        "http://web.resource.org/cc/",
        "http://www.inkscape.org/namespaces/inkscape",
        "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
    }
)
_FORBIDDEN_SVG_ELEMENTS = {
    "script": "<script> elements are not allowed",
    "foreignObject": "<foreignObject> elements are not allowed (they can embed HTML)",
    "handler": "<handler> elements are not allowed (they run script)",
    "listener": "<listener> elements are not allowed (they run script)",
}
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n\f]?|(.))", re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_URL = re.compile(r"url\(\s*(?:\"([^\"]*)\"|'([^']*)'|([^)]*?))\s*\)", re.IGNORECASE)
_CSS_FETCHING_FUNCTIONS = re.compile(r"\b((?:-webkit-)?image-set|image|cross-fade|src)\(", re.I)
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px)?\s*$")


def _split(name: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag or attribute name."""
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def _describe_tag(tag: str) -> str:
    namespace, local = _split(tag)
    return f"<{local}> (namespace {namespace})" if namespace else f"<{local}> (no namespace)"


def _css_plain(text: str) -> str:
    # Undo escapes and drop comments, so "u\72l(" or "@im\port" cannot slip past the checks.
    def unescape(match: re.Match[str]) -> str:
        if match.group(1):
            code = int(match.group(1), 16)
            return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"
        return match.group(2)

    return _CSS_COMMENT.sub("", _CSS_ESCAPE.sub(unescape, text))


def _css_problems(text: str, where: str, *, stylesheet: bool) -> Iterator[str]:
    plain = _css_plain(text)
    if stylesheet and "@import" in plain.lower():
        yield f"logo: {where} uses @import, which loads another file"
    for match in _CSS_URL.finditer(plain):
        target = next(group for group in match.groups() if group is not None).strip()
        if not target.startswith("#"):
            yield f"logo: {where} refers to url({target}); only same-document url(#id) is allowed"
    for match in _CSS_FETCHING_FUNCTIONS.finditer(plain):
        yield f"logo: {where} uses {match.group(1)}(), which can load another file"


def _svg_problems(root: Element, content: bytes) -> list[str]:
    problems: list[str] = []
    if b"<?xml-stylesheet" in content.lower():
        problems.append("logo: SVG must not link a stylesheet (<?xml-stylesheet?>)")
    if root.tag != f"{{{_SVG_NS}}}svg":
        problems.append(
            f"logo: the root element must be <svg> in the SVG namespace ({_SVG_NS}), "
            f"found {_describe_tag(root.tag)}"
        )
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions
        problems.extend(_element_problems(element))
    return problems


def _element_problems(element: Element) -> Iterator[str]:
    namespace, local = _split(element.tag)
    if namespace != _SVG_NS:
        if namespace not in _METADATA_NAMESPACES:
            yield f"logo: element {_describe_tag(element.tag)} is not SVG and is not allowed"
    elif local in _FORBIDDEN_SVG_ELEMENTS:
        yield f"logo: {_FORBIDDEN_SVG_ELEMENTS[local]}"
    elif local == "style":
        yield from _css_problems("".join(element.itertext()), "a <style> element", stylesheet=True)
    for name, value in element.attrib.items():
        _, attribute = _split(name)
        where = f"attribute {attribute}= on <{local}>"
        if attribute.lower().startswith("on"):
            yield f"logo: {where} is an event handler, which runs script"
        elif attribute == "href":
            if not value.strip().startswith("#"):
                yield (
                    f"logo: {where} links to {value.strip()!r}; only same-document links "
                    "(#id) are allowed"
                )
        elif attribute == "attributeName":
            animated = value.strip().rpartition(":")[2].lower()
            if animated == "href" or animated.startswith("on"):
                yield (
                    f"logo: <{local}> animates {value.strip()!r}, which can inject a link or script"
                )
        else:
            yield from _css_problems(value, where, stylesheet=attribute == "style")


def _length(value: str | None) -> float | None:
    match = _LENGTH.match(value) if value is not None else None
    return float(match.group(1)) if match else None


def _svg_size(root: Element) -> tuple[int | None, int | None]:
    width, height = _length(root.get("width")), _length(root.get("height"))
    view_box: list[float] = []
    try:
        view_box = [float(part) for part in re.split(r"[\s,]+", root.get("viewBox", "").strip())]
    except ValueError:
        view_box = []
    if (width is None or height is None) and len(view_box) == 4 and min(view_box[2:]) > 0:
        box_width, box_height = view_box[2], view_box[3]
        if width is not None:
            height = width * box_height / box_width
        elif height is not None:
            width = height * box_width / box_height
        else:
            width, height = box_width, box_height
    return (
        round(width) if width is not None else None,
        round(height) if height is not None else None,
    )


def inspect(content: bytes) -> tuple[list[str], int | None, int | None]:
    """Every problem of an SVG (empty when it is safe to publish) and its size, where known."""
    try:
        root = defusedxml.ElementTree.fromstring(
            content, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException:
        # Refused as soon as the parser meets the DTD, so nested entities are never expanded.
        return ["logo: SVG must not declare a DTD or entities"], None, None
    except ParseError as error:
        return [f"logo: not well-formed SVG ({error})"], None, None
    problems = list(_unique(_svg_problems(root, content)))
    width, height = _svg_size(root)
    return problems, width, height


def _unique(problems: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            yield problem
