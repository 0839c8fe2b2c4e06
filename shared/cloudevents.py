"""The CloudEvents 1.0 Kafka protocol binding: how an event travels in a Kafka record.

- *Structured mode*: the whole event, in the JSON event format, is the record's value and its
  ``content-type`` header is ``application/cloudevents+json``. The platform publishes every
  event this way.
- *Binary mode*: the record's value is the event's data alone, each attribute is a ``ce_<name>``
  header and ``content-type`` is the data's media type (the ``datacontenttype`` attribute).
  Accepted on ``usage.recorded``, the topic other teams publish to.

The mode is told from the headers, as the binding says: a ``content-type`` that starts with
``application/cloudevents`` is structured; otherwise a ``ce_specversion`` header makes it binary.
A record with neither is read as structured: producers sent ``application/json`` before the
platform followed the binding, and their events must still count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from shared.text import refuse_nul

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_STRUCTURED_PREFIX = "application/cloudevents"
_STRUCTURED_PREFIX_BYTES = _STRUCTURED_PREFIX.encode()
HEADER_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
_SPECVERSION_HEADER = HEADER_PREFIX + "specversion"

# The spec: names MUST be lower-case ASCII letters or digits and SHOULD NOT exceed 20
# characters. The platform holds producers to both, so a name cannot grow without bound.
ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")
_INT32 = range(-(2**31), 2**31)

Headers = Iterable[tuple[str, bytes]]


class BindingError(ValueError):
    """A binary-mode record whose headers cannot be read as the event's attributes."""


def is_structured(content_type: str | None) -> bool:
    return content_type is not None and content_type.startswith(_STRUCTURED_PREFIX)


def is_binary(headers: Headers) -> bool:
    """One pass over a record's few headers: cheap enough for every usage record."""
    content_type = b""
    specversion = False
    for name, value in headers:
        if name == CONTENT_TYPE:
            content_type = value
        elif name == _SPECVERSION_HEADER:
            specversion = True
    return specversion and not content_type.startswith(_STRUCTURED_PREFIX_BYTES)


def binary_attributes(headers: Headers) -> dict[str, str]:
    """A binary-mode event's attributes, from its ``ce_*`` headers and its ``content-type``."""
    attributes: dict[str, str] = {}
    for name, value in headers:
        if name == CONTENT_TYPE:
            attribute = "datacontenttype"
        elif name.startswith(HEADER_PREFIX):
            attribute = name.removeprefix(HEADER_PREFIX)
        else:
            continue  # trace context and other transport headers are not attributes
        if attribute == "data":
            raise BindingError(f"{name}: in binary mode the data is the record's value")
        if attribute in attributes:
            raise BindingError(f"{name}: the attribute {attribute} is given more than once")
        try:
            attributes[attribute] = value.decode()
        except UnicodeDecodeError:
            raise BindingError(f"{name}: a header's value must be UTF-8 text") from None
    return attributes


def _extension_name(name: str) -> str:
    if not ATTRIBUTE_NAME.fullmatch(name):
        raise PydanticCustomError(
            "extension_name",
            "not a CloudEvents attribute name: an extension attribute's name is 1 to 20"
            " lower-case letters (a-z) and digits (0-9)",
        )
    return name


def _extension_value(value: Any) -> str | int | bool:
    if isinstance(value, bool | str) or (isinstance(value, int) and value in _INT32):
        refuse_nul(value)
        return value
    raise PydanticCustomError(
        "extension_value",
        "an extension attribute's value is a string, a 32-bit whole number or true or false",
    )


ExtensionName = Annotated[str, AfterValidator(_extension_name)]
ExtensionValue = Annotated[
    str | int | bool,
    PlainValidator(_extension_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer", "minimum": _INT32.start, "maximum": _INT32.stop - 1},
                {"type": "boolean"},
            ],
            "description": "a CloudEvents extension attribute: kept, never counted",
        }
    ),
]


def header_of(attribute: str) -> str:
    """The Kafka header that carries an attribute in binary mode."""
    return CONTENT_TYPE if attribute == "datacontenttype" else HEADER_PREFIX + attribute


_TEXT_RULES = frozenset({"const", "format", "maxLength", "minLength", "pattern"})


def binary_headers_schema(event: type[BaseModel]) -> dict[str, Any]:
    """The Kafka headers of ``event`` in binary mode, as a JSON schema for the AsyncAPI
    document: a ``ce_*`` header per attribute, ``content-type`` for ``datacontenttype``, each
    holding the attribute's rules as text."""
    schema = event.model_json_schema()
    properties: dict[str, Any] = {}
    for name, attribute in schema["properties"].items():
        if name == "data":
            continue
        given = [a for a in attribute.get("anyOf", [attribute]) if a.get("type") != "null"]
        rules = {k: v for k, v in given[0].items() if k in _TEXT_RULES}
        described = f"the {name} attribute" + (
            f": {attribute['description']}" if "description" in attribute else ""
        )
        properties[header_of(name)] = {**rules, "type": "string", "description": described}
    return {
        "type": "object",
        "properties": properties,
        "required": [header_of(name) for name in schema["required"] if name != "data"],
        "additionalProperties": {
            "type": "string",
            "description": "ce_<name> for an extension attribute; trace context (traceparent)",
        },
    }
