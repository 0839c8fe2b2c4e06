"""The join form's answers: read from a posted form, checked, and turned into field errors
worded for the person filling it in (GOV.UK style: say what to do, name no internals).

The rules themselves are the domain's: council codes resolve through the reference data, the
brand goes through :func:`services.branding.brand_file.validate_brand` (contrast, logo, alt text,
domain), contacts and purchase orders through the event contract's own models. Only the wording
of the contract's format errors is translated here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, EmailStr, TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile

from services.branding import logo
from services.branding.brand_file import BrandRefused, validate_brand
from services.onboarding.councils import CouncilRecord, CouncilRefused, CouncilRegister
from shared.assets import AssetStore
from shared.catalogue import ServiceManifest
from shared.events import Acceptance, Brand, Contact, LogoRef, PurchaseOrder
from shared.identifiers import GSS_PATTERN
from shared.text import NUL, RULE


@dataclass
class Errors:
    """Problems by field id, in the order the fields appear on the page."""

    found: list[tuple[str, str]] = field(default_factory=list)
    # Answers holding text the database cannot store: refused for that alone, as their other
    # rules would only report the same answer again, less clearly.
    unstorable: set[str] = field(default_factory=set)

    @classmethod
    def reading(cls, form: FormData) -> Errors:
        """The errors of a posted form, starting with every answer that cannot be stored."""
        errors = cls()
        for name, value in form.multi_items():
            if name in _LABELS and isinstance(value, str) and NUL in value:
                errors.add(name, f"{_sentence(_LABELS[name])} {RULE}")
                errors.unstorable.add(name)
        return errors

    def add(self, field_id: str, message: str) -> None:
        if field_id not in self.unstorable:
            self.found.append((field_id, message))

    def __bool__(self) -> bool:
        return bool(self.found)

    def require(self, field_id: str, value: str, what: str) -> None:
        if not value:
            self.add(field_id, f"Enter {what}")

    def at_most(self, field_id: str, value: str, limit: int, noun: str) -> None:
        if len(value) > limit:
            self.add(field_id, f"{noun} must be {limit} characters or fewer")

    def of(self, field_id: str) -> dict[str, str] | None:
        """The error message for ``govuk*`` macros' ``errorMessage``, or None."""
        messages = [message for found, message in self.found if found == field_id]
        return {"text": " ".join(messages)} if messages else None

    def summary(self) -> list[dict[str, str]]:
        return [{"text": message, "href": f"#{field_id}"} for field_id, message in self.found]


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# -- council ----------------------------------------------------------------------------------


def find_council(register: CouncilRegister, typed: str) -> tuple[CouncilRecord | None, str | None]:
    """The council someone typed, by GSS code or by name; otherwise what to do instead."""
    if not typed:
        return None, "Enter your council's name or GSS code"
    if re.fullmatch(GSS_PATTERN, typed.upper()):
        try:
            return register.resolve(typed), None
        except CouncilRefused as refusal:
            return None, _sentence(str(refusal).removeprefix("council: "))
    wanted = typed.casefold()
    current = register.current()
    exact = [c for c in current if c.name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0], None
    partial = [c for c in current if wanted in c.name.casefold()]
    if len(partial) == 1:
        return partial[0], None
    if not partial:
        return None, (
            f"No current council is called {typed!r}; enter its full name or its GSS code, "
            "like E09000012"
        )
    named = "; ".join(f"{c.name} ({c.gss})" for c in sorted(partial, key=lambda c: c.name)[:5])
    more = " and others" if len(partial) > 5 else ""
    return None, f"More than one council matches {typed!r}: {named}{more}. Enter the full name"


# -- contact ----------------------------------------------------------------------------------

_PURCHASE_ORDER: TypeAdapter[str] = TypeAdapter(PurchaseOrder)
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


def contact_answer(form: FormData, errors: Errors) -> dict[str, str]:
    answer = {
        "contact_name": text(form, "contact-name"),
        "contact_email": text(form, "contact-email"),
        "purchase_order": text(form, "purchase-order"),
    }
    limit = max_length(Contact, "name")
    errors.require("contact-name", answer["contact_name"], "the name of the person to contact")
    errors.at_most("contact-name", answer["contact_name"], limit, "Name")
    if not answer["contact_email"]:
        errors.add("contact-email", "Enter an email address")
    else:
        try:
            _EMAIL.validate_python(answer["contact_email"])
        except ValidationError:
            errors.add(
                "contact-email",
                "Enter an email address in the correct format, like name@example.gov.uk",
            )
    if answer["purchase_order"]:
        try:
            _PURCHASE_ORDER.validate_python(answer["purchase_order"])
        except ValidationError:
            errors.add(
                "purchase-order",
                "Purchase order must be 64 characters or fewer, start with a letter or number "
                "and use only letters, numbers, spaces and / . _ -",
            )
    return answer


# -- brand ------------------------------------------------------------------------------------

# Where each of the branding rules' field names is on the page.
BRAND_FIELDS = {
    "name": "brand-name",
    "welsh_name": "welsh-name",
    "colours.primary": "colour-primary",
    "colours.secondary": "colour-secondary",
    "colours.link": "colour-link",
    "colours": "colour-primary",
    "logo": "logo",
    "logo_alt": "logo-alt",
    "domain": "domain",
}
# What each of the form's text answers is, in words for an error message.
_LABELS = {
    "council": "your council's name or GSS code",
    "contact-name": "the full name",
    "contact-email": "the email address",
    "purchase-order": "the purchase order number",
    "accepted-name": "your full name",
    "accepted-role": "your role at the council",
    "brand-name": "the council name residents will see",
    "welsh-name": "the Welsh name",
    "colour-primary": "the main colour",
    "colour-secondary": "the background colour",
    "colour-link": "the link colour",
    "logo-alt": "the logo's text alternative",
    "domain": "the web address",
}


def brand_fields(form: FormData, needs_domain: bool) -> dict[str, Any]:
    """The brand as typed, in the shape the branding rules read (without the logo)."""
    return {
        "name": text(form, "brand-name"),
        "welsh_name": text(form, "welsh-name") or None,
        "logo_alt": text(form, "logo-alt") or None,
        "colours": {
            "primary": _colour(text(form, "colour-primary")),
            "secondary": _colour(text(form, "colour-secondary")),
            "link": _colour(text(form, "colour-link")),
        },
        "domain": (text(form, "domain") or None) if needs_domain else None,
    }


def _colour(typed: str) -> str:
    # People copy colours with and without the hash, in either case: both mean the same.
    if typed and not typed.startswith("#"):
        typed = "#" + typed
    return typed.upper()


async def uploaded_logo(form: FormData, errors: Errors) -> bytes | None:
    upload = form.get("logo")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    # Read one byte past the limit, no more: the size rule needs to know only that it is over.
    content = await upload.read(logo.MAX_LOGO_BYTES + 1)
    if len(content) > logo.MAX_LOGO_BYTES:
        errors.add("logo", f"The logo must be {logo.MAX_LOGO_BYTES // 2**20} MB or smaller")
        return None
    if not content:
        errors.add("logo", "The selected file is empty")
        return None
    return content


def check_brand(
    raw: dict[str, Any],
    content: bytes | None,
    assets: AssetStore,
    manifest: ServiceManifest,
    errors: Errors,
) -> Brand | None:
    """The brand if every branding rule passes; otherwise each problem, on its field."""
    problems = []
    if content is None and manifest.branding.logo_required:
        problems.append(
            f"logo: {manifest.name} needs your council's logo; choose a PNG or SVG file"
        )
    try:
        return validate_brand(raw, content, assets, problems)
    except BrandRefused as refused:
        for problem in refused.problems:
            where, _, message = problem.partition(": ")
            field_id = BRAND_FIELDS.get(where, BRAND_FIELDS.get(where.split(".")[0], "brand-name"))
            errors.add(field_id, _friendly(field_id, message))
    return None


def keep_valid_logo(content: bytes, assets: AssetStore, errors: Errors) -> LogoRef | None:
    """Keep an upload the logo rules accepted while other answers are fixed, so the person
    need not choose the file again."""
    if errors.of("logo") is not None:
        return None
    kind = logo.sniff_media_type(content)
    return assets.put(content, kind) if kind is not None else None


# For the rules' messages that begin with a verb ("must be a PNG or SVG file").
_NOUNS = {"logo": "the logo", "logo-alt": "the text alternative", "domain": "the web address"}


def _friendly(field_id: str, message: str) -> str:
    label = _LABELS.get(field_id, "this")
    if message.split(" ", 1)[0] in {"must", "is", "has", "needs"}:
        message = f"{_NOUNS.get(field_id, label)} {message}"
    if message.startswith("String should match pattern"):
        if field_id.startswith("colour-"):
            return f"Enter {label} as a hex colour code: # and 6 characters, like #00664F"
        return f"Enter {label} in the correct format"
    if message.startswith("String should have at least"):
        return f"Enter {label}"
    if message.startswith("String should have at most"):
        limit = "".join(c for c in message if c.isdigit())
        return f"{_sentence(label)} must be {limit} characters or fewer"
    return _sentence(message)


# -- agreement ------------------------------------------------------------------------------


def acceptance_answer(form: FormData, errors: Errors) -> dict[str, str]:
    answer = {
        "accepted_name": text(form, "accepted-name"),
        "accepted_role": text(form, "accepted-role"),
    }
    if text(form, "accept") != "yes":
        errors.add("accept", "Select that you accept the agreement to ask to join")
    for key, what, noun in (
        ("name", "your full name", "Your name"),
        ("role", "your role at the council", "Your role"),
    ):
        field_id, value = f"accepted-{key}", answer[f"accepted_{key}"]
        errors.require(field_id, value, what)
        errors.at_most(field_id, value, max_length(Acceptance, key), noun)
    return answer


def max_length(model: type[BaseModel], name: str) -> int:
    """The event contract's own limit, so the form never accepts what the event refuses."""
    limits = [getattr(rule, "max_length", None) for rule in model.model_fields[name].metadata]
    return int(next(limit for limit in limits if limit is not None))


def _sentence(message: str) -> str:
    message = message.strip()
    return message[:1].upper() + message[1:]
