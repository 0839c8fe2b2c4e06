"""UK council reference data (mySociety's ``uk_local_authorities.csv``) and the rules for
resolving a GSS code a caller gives us to the council that exists today."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.identifiers import GSS_PATTERN

SOURCE_URL = "https://github.com/mysociety/uk_local_authority_names_and_codes"
_GSS = re.compile(GSS_PATTERN)


@dataclass(frozen=True)
class CouncilRecord:
    register_code: str
    name: str
    gss: str
    slug: str  # the council's short name as a URL segment: "hackney", "the-vale-of-glamorgan"
    nation: str
    kind: str
    start: date | None
    end: date | None
    replaced_by: tuple[str, ...]
    former_gss: tuple[str, ...]

    def exists_on(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day < self.end)


class CouncilRefused(ValueError):
    """A GSS code that does not name a council that can join today; the message says why."""


class ReferenceDataMissing(FileNotFoundError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"Council reference data not found at {path}. Download uk_local_authorities.csv "
            f"(mySociety, CC BY 4.0) from {SOURCE_URL} (data/uk_local_authorities.csv) and point "
            "COUNCILS_CSV at it, e.g. COUNCILS_CSV=/path/to/uk_local_authorities.csv"
        )


def slug_of(nice_name: str) -> str:
    """``The Vale of Glamorgan`` -> ``the-vale-of-glamorgan``: unique among today's councils
    (a test holds the register to it), so a shared service can address each by it."""
    return re.sub(r"[^a-z0-9]+", "-", nice_name.lower()).strip("-")


def _date(value: str) -> date | None:
    return date.fromisoformat(value) if value else None


def _codes(value: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in value.split(",") if code.strip())


class CouncilRegister:
    def __init__(self, records: list[CouncilRecord]) -> None:
        self._by_gss = {r.gss: r for r in records if r.gss}
        self._by_register = {r.register_code: r for r in records}
        self._former = {code: r for r in records for code in r.former_gss}

    @classmethod
    def from_csv(cls, path: Path) -> CouncilRegister:
        if not path.is_file():
            raise ReferenceDataMissing(path)
        with path.open(newline="", encoding="utf-8") as handle:
            records = [
                CouncilRecord(
                    register_code=row["local-authority-code"],
                    name=row["official-name"],
                    gss=row["gss-code"],
                    slug=slug_of(row["nice-name"]),
                    nation=row["nation"],
                    kind=row["local-authority-type-name"],
                    start=_date(row["start-date"]),
                    end=_date(row["end-date"]),
                    replaced_by=_codes(row["replaced-by"]),
                    former_gss=_codes(row["former-gss-codes"]),
                )
                for row in csv.DictReader(handle)
            ]
        return cls(records)

    def name_of(self, code: str) -> str:
        """A council's name with its code, for people; the code alone if it is not known."""
        record = self._by_gss.get(code)
        return f"{record.name} ({code})" if record else code

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
            successors = [
                self._by_register[c] for c in record.replaced_by if c in self._by_register
            ]
            named = " and ".join(f"{s.name} ({s.gss})" for s in successors)
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
