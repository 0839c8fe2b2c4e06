"""Text the platform can store: PostgreSQL's ``text`` and ``jsonb`` cannot hold the NUL
character, so a value carrying one would fail only at the database, as a server error.

One rule, refused where text enters: every contract model (events, manifests, API bodies)
derives from :class:`NulFree`, and request parameters are :data:`PlainText`. The error names
the field, as pydantic's own errors do, and says the rule.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_validator
from pydantic_core import PydanticCustomError

NUL = "\x00"
RULE = "must not contain the NUL character"


def refuse_nul(value: Any) -> Any:
    """``value`` unchanged, unless it is text (or a list of text) with a NUL character in it.

    Nested models check their own fields, so their input is not searched here: the error then
    names the innermost field ("contact.name"), not the model holding it."""
    if isinstance(value, str):
        if NUL in value:
            raise PydanticCustomError("nul_character", RULE)
    elif isinstance(value, list | tuple) and any(isinstance(v, str) and NUL in v for v in value):
        raise PydanticCustomError("nul_character", RULE)
    return value


class NulFree(BaseModel):
    """A model none of whose text fields may hold the NUL character."""

    # Before the field's own rules: those may hand the text to parsers (SQL, e-mail, URLs)
    # that fail on a NUL in ways of their own.
    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)


PlainText = Annotated[str, AfterValidator(refuse_nul)]
