"""A join request being filled in, kept between its pages in a cookie of the browser's own.

A cookie needs no table and works across API replicas. It holds only what the person typed, and
nothing in it is trusted: the last page checks every answer again, through the same rules, before
the request is stored. The logo travels as its reference in the asset store, never its bytes. A
cookie that does not read back as a draft (too large, too deeply nested, not JSON) is thrown
away, and the person starts a fresh one.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.events import LogoRef

COOKIE = "tenancy_join"
# Time enough to find a logo and ask a colleague about the agreement.
MAX_AGE = 4 * 3600
# Browsers keep at most 4,096 bytes per cookie; anything larger did not come from us.
MAX_COOKIE = 4096


class Brand(BaseModel):
    name: str = ""
    welsh_name: str | None = None
    logo_alt: str | None = None
    primary: str = ""
    secondary: str = "#FFFFFF"
    link: str = "#1D70B8"
    domain: str | None = None

    def raw(self) -> dict[str, object]:
        """In the shape the branding rules read."""
        return {
            "name": self.name,
            "welsh_name": self.welsh_name,
            "logo_alt": self.logo_alt,
            "colours": {"primary": self.primary, "secondary": self.secondary, "link": self.link},
            "domain": self.domain,
        }


class JoinDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    service: str
    council: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    purchase_order: str | None = None
    brand: Brand | None = None
    logo: LogoRef | None = None
    brand_done: bool = False
    accepted_name: str | None = None
    accepted_role: str | None = None
    agreement_version: str | None = None

    def first_missing(self) -> str | None:
        """The first page not answered yet, in the order the pages come."""
        if self.council is None:
            return "council"
        if self.contact_email is None:
            return "contact"
        if not self.brand_done:
            return "brand"
        if self.agreement_version is None:
            return "agreement"
        return None


def load(request: Request, service: str) -> JoinDraft:
    raw = request.cookies.get(COOKIE)
    if raw and len(raw) <= MAX_COOKIE:
        try:
            # Pydantic's own JSON parser: it refuses nesting past a fixed depth with a
            # ValidationError, where json.loads would recurse until Python gives up.
            found = JoinDraft.model_validate_json(base64.urlsafe_b64decode(raw))
        except (binascii.Error, ValueError, ValidationError):
            found = None
        if found is not None and found.service == service:
            return found
    return JoinDraft(service=service)


def save(response: Response, draft: JoinDraft) -> None:
    value = base64.urlsafe_b64encode(draft.model_dump_json(exclude_none=True).encode()).decode()
    response.set_cookie(
        COOKIE, value, max_age=MAX_AGE, path="/", secure=True, httponly=True, samesite="lax"
    )


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
