"""The service's own picture of its tenancies, built only from the platform's lifecycle events.

Free of I/O. Events of different topics may be read in any order (Kafka orders one topic's
partition, not topics), so each event sets its own facts on the tenancy and whether the tenancy
is served follows from the facts it has, not from the order they came in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from shared.events import (
    BrandingApplied,
    CloudEvent,
    CredentialsRotated,
    IsolationReady,
    OffboardingRequested,
    TenancyOffboarded,
    TenancyProvisioned,
    TenancyRegistered,
    TenancyReorganised,
)

State = Literal["provisioning", "active", "leaving", "gone"]
# When two tenancies claim a slug or domain (a council that left and joined again), the one
# further along its life wins, the served one above all.
_PRECEDENCE: dict[State, int] = {"active": 3, "provisioning": 2, "leaving": 1, "gone": 0}


@dataclass(frozen=True)
class Council:
    gss: str
    name: str
    slug: str | None


@dataclass(frozen=True)
class Isolation:
    tier: str
    database: str
    schema: str
    role: str


@dataclass(frozen=True)
class ThemeRef:
    """Where the current theme's files are, relative to the themes folder."""

    version: int
    content_hash: str
    css: str
    tokens: str
    logo: str | None


@dataclass(frozen=True)
class Tenancy:
    id: str
    service_id: str | None = None  # None until its registration is read
    council: Council | None = None
    provisioned: bool = False
    leaving: bool = False
    gone: bool = False
    isolation: Isolation | None = None
    theme: ThemeRef | None = None
    domain: str | None = None  # the custom domain, once verified
    credentials_version: int = 0  # counts rotations, so a pool knows it is stale
    # A council replaced in a reorganisation: the successor's tenancy that holds its data now.
    moved_into: str | None = None

    @property
    def state(self) -> State:
        if self.gone:
            return "gone"
        if self.leaving:
            return "leaving"
        return "active" if self.provisioned else "provisioning"

    @property
    def serving(self) -> bool:
        """Requests may be served: provisioned, not leaving, its database known."""
        return self.state == "active" and self.isolation is not None and self.council is not None


class Change(StrEnum):
    ARRIVED = "arrived"  # is now served
    LEFT = "left"  # is served no more
    ROTATED = "rotated"  # its password changed
    REBRANDED = "rebranded"  # another theme version is current


LifecycleEvent = (
    TenancyRegistered
    | IsolationReady
    | BrandingApplied
    | TenancyProvisioned
    | OffboardingRequested
    | TenancyOffboarded
    | TenancyReorganised
    | CredentialsRotated
)
LIFECYCLE_EVENTS: tuple[type[CloudEvent], ...] = (
    TenancyRegistered,
    IsolationReady,
    BrandingApplied,
    TenancyProvisioned,
    OffboardingRequested,
    TenancyOffboarded,
    TenancyReorganised,
    CredentialsRotated,
)


class Directory:
    """Tenancies of one service by id, council slug and verified domain."""

    def __init__(self, service_id: str, tenancies: Iterable[Tenancy] = ()) -> None:
        self.service_id = service_id
        self._all: dict[str, Tenancy] = {t.id: t for t in tenancies}
        # Who claims each slug and domain (a council that left and joined again: two), and the
        # one that wins; kept up to date per event, never rebuilt, so a replay stays linear.
        self._slug_claims: dict[str, set[str]] = {}
        self._domain_claims: dict[str, set[str]] = {}
        self._by_slug: dict[str, Tenancy] = {}
        self._by_domain: dict[str, Tenancy] = {}
        for tenancy in self._all.values():
            self._reindex(None, tenancy)

    def get(self, tenancy_id: str) -> Tenancy | None:
        found = self._all.get(tenancy_id)
        return found if found is not None and found.service_id == self.service_id else None

    def by_slug(self, slug: str) -> Tenancy | None:
        return self._followed(self._by_slug.get(slug))

    def by_domain(self, host: str) -> Tenancy | None:
        return self._followed(self._by_domain.get(host))

    def _followed(self, tenancy: Tenancy | None) -> Tenancy | None:
        """A reorganised council's slug and domain lead to its successor's tenancy, which holds
        its data now: residents' links keep working. Followed as far as the successors go."""
        seen: set[str] = set()
        while tenancy is not None and tenancy.moved_into is not None and tenancy.id not in seen:
            seen.add(tenancy.id)
            successor = self.get(tenancy.moved_into)
            if successor is None:
                break  # not read yet: the predecessor, gone, says so meanwhile
            tenancy = successor
        return tenancy

    def tenancies(self) -> list[Tenancy]:
        """This service's tenancies, served or not."""
        return [t for t in self._all.values() if t.service_id == self.service_id]

    def snapshot(self) -> list[Tenancy]:
        """Everything known, other services' tenancies as bare ids, to be restored as is."""
        return list(self._all.values())

    def apply(self, event: CloudEvent) -> list[Change]:
        """Take in one event; what changed for this service's tenancy, for the hooks."""
        before = self._all.get(event.subject) or Tenancy(id=event.subject)
        if before.service_id not in (None, self.service_id):
            return []  # another service's tenancy: nothing of it is kept
        after = _with_fact(before, event)
        if after == before:
            return []
        if after.service_id not in (None, self.service_id):
            after = Tenancy(id=after.id, service_id=after.service_id)
        self._all[after.id] = after
        self._reindex(before, after)
        if after.service_id != self.service_id:
            return []
        changes: list[Change] = []
        if after.serving and not before.serving:
            changes.append(Change.ARRIVED)
        if before.serving and not after.serving:
            changes.append(Change.LEFT)
        if after.credentials_version != before.credentials_version and after.serving:
            changes.append(Change.ROTATED)
        if after.theme != before.theme and before.theme is not None:
            changes.append(Change.REBRANDED)
        return changes

    def _reindex(self, before: Tenancy | None, after: Tenancy) -> None:
        for claims, index, key in (
            (self._slug_claims, self._by_slug, self._slug_of),
            (self._domain_claims, self._by_domain, self._domain_of),
        ):
            old, new = key(before), key(after)
            if old is not None and old != new:
                claims[old].discard(after.id)
            if new is not None:
                claims.setdefault(new, set()).add(after.id)
            for name in (old, new):
                if name is not None:
                    self._elect(claims, index, name)

    def _elect(self, claims: dict[str, set[str]], index: dict[str, Tenancy], name: str) -> None:
        # The tenancy furthest along its life wins: the served one above all.
        claimants = [self._all[i] for i in claims.get(name, ())]
        if claimants:
            index[name] = max(claimants, key=lambda t: _PRECEDENCE[t.state])
        else:
            index.pop(name, None)

    def _slug_of(self, tenancy: Tenancy | None) -> str | None:
        if tenancy is None or tenancy.service_id != self.service_id or tenancy.council is None:
            return None
        return tenancy.council.slug

    def _domain_of(self, tenancy: Tenancy | None) -> str | None:
        if tenancy is None or tenancy.service_id != self.service_id:
            return None
        # A reorganised tenancy keeps its domain, which leads to its successor's.
        return tenancy.domain if tenancy.serving or tenancy.moved_into else None


def _with_fact(tenancy: Tenancy, event: CloudEvent) -> Tenancy:
    replace = dataclasses.replace
    match event:
        case TenancyRegistered(data=data):
            council = Council(gss=data.council.gss, name=data.council.name, slug=data.council.slug)
            return replace(tenancy, service_id=data.service.id, council=council)
        case IsolationReady(data=data):
            isolation = Isolation(
                tier=data.tier.value,
                database=data.database,
                schema=data.schema_name,
                role=data.role,
            )
            return replace(tenancy, service_id=data.service_id, isolation=isolation)
        case BrandingApplied(data=data):
            theme = ThemeRef(
                version=data.version,
                content_hash=data.content_hash,
                css=data.paths.css,
                tokens=data.paths.tokens,
                logo=data.paths.logo,
            )
            verified = data.domain is not None and data.domain.status == "verified"
            domain = data.domain.name.lower() if verified and data.domain else None
            return replace(tenancy, theme=theme, domain=domain)
        case TenancyProvisioned(data=data):
            return replace(tenancy, service_id=data.service_id, provisioned=True)
        case OffboardingRequested(data=data):
            return replace(tenancy, service_id=data.service.id, leaving=True)
        case TenancyOffboarded():
            return replace(tenancy, leaving=True, gone=True, domain=None)
        case TenancyReorganised(data=data):
            return replace(tenancy, leaving=True, gone=True, moved_into=data.target)
        case CredentialsRotated():
            return replace(tenancy, credentials_version=tenancy.credentials_version + 1)
    return tenancy
