"""UK council reference data (mySociety's ``uk_local_authorities.csv``) and the rules for
resolving a GSS code a caller gives us to the council that exists today.

Dates mean one thing here, whatever the register wrote: ``start`` is the first day a council
exists and ``end`` is the first day it does not, which for a council replaced in a
reorganisation is vesting day, its successors' ``start``. The register writes some ends as the
day before vesting (Bournemouth, 2019-03-31) and others as vesting day (Cumbria, 2023-04-01); an
end that is the day before every successor's start is read as that start, so "ceased on" always
names vesting day. An end with no successor in the register is kept as written: there is nothing
to tell which of the two it means.

A council is listed before it has a GSS code: mySociety adds a new council ahead of vesting with
its register code, start date and an empty ``gss-code``, and its predecessors' ``replaced-by``
naming it (several codes for a split: Cumbria is ``CBD,WAF``). Such a council can be a
successor in a plan but cannot be resolved or join a service until ONS issues its code.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from shared.identifiers import GSS_PATTERN

SOURCE_URL = "https://github.com/mysociety/uk_local_authority_names_and_codes"
_GSS = re.compile(GSS_PATTERN)


@dataclass(frozen=True)
class CouncilRecord:
    register_code: str  # mySociety's three-letter code, there before (and after) the GSS code
    name: str
    gss: str  # "" until ONS issues one
    slug: str  # the council's short name as a URL segment: "hackney", "the-vale-of-glamorgan"
    nation: str
    kind: str
    start: date | None
    end: date | None
    replaced_by: tuple[str, ...]
    former_gss: tuple[str, ...]

    def exists_on(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day < self.end)

    @property
    def label(self) -> str:
        """The council's name with the code that identifies it, for people."""
        if self.gss:
            return f"{self.name} ({self.gss})"
        pending = " yet" if self.end is None else ""
        return f"{self.name} (register code {self.register_code}, no GSS code{pending})"


class CouncilRefused(ValueError):
    """A GSS code that does not name a council that can join today; the message says why."""


class ReferenceDataMissing(FileNotFoundError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"Council reference data not found at {path}. Download uk_local_authorities.csv "
            f"(mySociety, CC BY 4.0) from {SOURCE_URL} (data/uk_local_authorities.csv) and point "
            "COUNCILS_CSV at it, e.g. COUNCILS_CSV=/path/to/uk_local_authorities.csv"
        )


class ReferenceDataInvalid(ValueError):
    def __init__(self, path: Path, line: int, code: str, field: str, rule: str) -> None:
        super().__init__(f"{path}, line {line} ({code or 'no code'}): {field}: {rule}")


class _FieldInvalid(ValueError):
    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def slug_of(nice_name: str) -> str:
    """``The Vale of Glamorgan`` -> ``the-vale-of-glamorgan``: unique among today's councils
    (a test holds the register to it), so a shared service can address each by it."""
    return re.sub(r"[^a-z0-9]+", "-", nice_name.lower()).strip("-")


def _date(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _FieldInvalid(field, f"{value!r} is not a date written YYYY-MM-DD") from None


def _codes(value: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in value.split(",") if code.strip())


def _record(row: dict[str, str]) -> CouncilRecord:
    code = row["local-authority-code"]
    if not code:
        raise _FieldInvalid("local-authority-code", "is empty; every council has a register code")
    gss = row["gss-code"]
    if gss and not _GSS.fullmatch(gss):
        raise _FieldInvalid("gss-code", f"{gss!r} is not a GSS code (a letter and eight digits)")
    return CouncilRecord(
        register_code=code,
        name=row["official-name"],
        gss=gss,
        slug=slug_of(row["nice-name"]),
        nation=row["nation"],
        kind=row["local-authority-type-name"],
        start=_date(row["start-date"], "start-date"),
        end=_date(row["end-date"], "end-date"),
        replaced_by=_codes(row["replaced-by"]),
        former_gss=_codes(row["former-gss-codes"]),
    )


def _ends_on_vesting_day(record: CouncilRecord, starts: dict[str, date | None]) -> CouncilRecord:
    """``record`` with an end written as the day before vesting moved to vesting day."""
    successor_starts = {starts.get(code) for code in record.replaced_by}
    if record.end is None or len(successor_starts) != 1:
        return record
    (vesting,) = successor_starts
    if vesting is not None and record.end == vesting - timedelta(days=1):
        return replace(record, end=vesting)
    return record


class CouncilRegister:
    def __init__(self, records: list[CouncilRecord]) -> None:
        starts = {r.register_code: r.start for r in records}
        records = [_ends_on_vesting_day(r, starts) for r in records]
        self._by_gss = {r.gss: r for r in records if r.gss}
        self._by_register = {r.register_code: r for r in records}
        self._former = {code: r for r in records for code in r.former_gss}

    @classmethod
    def from_csv(cls, path: Path) -> CouncilRegister:
        if not path.is_file():
            raise ReferenceDataMissing(path)
        records = []
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                try:
                    records.append(_record(row))
                except _FieldInvalid as error:
                    code = row["local-authority-code"]
                    raise ReferenceDataInvalid(
                        path, reader.line_num, code, error.field, error.rule
                    ) from None
        return cls(records)

    def name_of(self, code: str) -> str:
        """A council's name with its code, for people; the code alone if it is not known."""
        record = self._by_gss.get(code)
        return f"{record.name} ({code})" if record else code

    def find(self, code: str) -> CouncilRecord | None:
        """The council a GSS code or a register code names, ended or not; None if neither."""
        given = code.strip().upper()
        return self._by_gss.get(given) or self._by_register.get(given)

    def successors_of(self, record: CouncilRecord) -> list[CouncilRecord]:
        """The councils in the register that ``replaced-by`` names; unknown codes are left out
        (see :func:`services.onboarding.reorganisation.plan`, which names them)."""
        return [self._by_register[c] for c in record.replaced_by if c in self._by_register]

    def replaced_on(self, vesting: date) -> list[CouncilRecord]:
        """Councils whose successors take over on ``vesting``, in register order."""
        return [r for r in self._by_register.values() if r.replaced_by and r.end == vesting]

    def vesting_days(self, since: date) -> list[date]:
        """Every vesting day from ``since`` on, earliest first: the coming reorganisations."""
        return sorted(
            {
                r.end
                for r in self._by_register.values()
                if r.replaced_by and r.end and r.end >= since
            }
        )

    def __len__(self) -> int:
        return len(self._by_gss)

    def current(self, today: date | None = None) -> list[CouncilRecord]:
        day = today or date.today()
        return [r for r in self._by_gss.values() if r.exists_on(day)]

    def resolve(self, code: str, today: date | None = None) -> CouncilRecord:
        """The council a GSS code names today, following a former code to its current council."""
        day = today or date.today()
        given = code.strip().upper()
        if not _GSS.fullmatch(given):
            raise CouncilRefused(
                f"council: {code!r} is not a GSS code; expected a letter E, W, S, N or K "
                "followed by eight digits, e.g. E09000012 (Hackney)"
            )
        record = self._by_gss.get(given) or self._former.get(given)
        if record is None:
            raise CouncilRefused(f"council: {given} is not a known UK local authority GSS code")
        if record.end is not None and record.end <= day:
            named = " and ".join(s.label for s in self.successors_of(record))
            advice = f"; it was replaced by {named}: onboard that council instead" if named else ""
            raise CouncilRefused(
                f"council: {record.name} ({given}) ceased to exist on {record.end.isoformat()}"
                + advice
            )
        if record.start is not None and day < record.start:
            raise CouncilRefused(
                f"council: {record.name} ({given}) does not exist until {record.start.isoformat()}"
            )
        return record
