"""The API's request bodies; responses are plain JSON documented by their handlers."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from shared.events import BrandContact, Colours, Contact, FooterLink, PurchaseOrder
from shared.text import NulFree


class Body(NulFree):
    model_config = ConfigDict(extra="forbid")


class AcceptanceIn(Body):
    agreement_version: str = Field(min_length=1, max_length=20, description="as listed")
    name: str = Field(min_length=1, max_length=200, description="who accepts")
    role: str = Field(min_length=1, max_length=200, description="their role at the council")


class BrandIn(Body):
    name: str = Field(min_length=1, max_length=200)
    welsh_name: str | None = Field(default=None, max_length=200)
    logo_base64: str | None = Field(
        default=None, max_length=1_500_000, description="a PNG or SVG logo, base64-encoded"
    )
    logo_alt: str | None = Field(default=None, max_length=300)
    colours: Colours
    domain: str | None = Field(default=None, max_length=253)
    contact: BrandContact | None = None
    footer_links: list[FooterLink] = Field(default_factory=list, max_length=20)


class OnboardIn(Body):
    council: str = Field(min_length=1, max_length=20, description="the council's GSS code")
    service: str = Field(min_length=1, max_length=63, description="a service id")
    acceptance: AcceptanceIn = Field(description="acceptance of the service's agreement")
    contact: Contact | None = None
    brand: BrandIn | None = None
    purchase_order: PurchaseOrder | None = None


class OffboardIn(Body):
    reason: str = Field(default="", max_length=500)
