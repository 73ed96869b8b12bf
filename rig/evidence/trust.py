"""The line's trust anchor: which station keys and which people (key, role) are enrolled.

A trust file is owned by QA, kept outside every run record, and read by `rig verify`, `rig sign`
and `rig certify` (`--trust-file PATH`, else $RIG_TRUST):

    [line]
    id = "LINE2"

    [[station]]                 # one per bench: the key it signs its records with
    id = "LINE2-BENCH1"
    key = "SHA256:9f2c..."      # the fingerprint `rig verify` prints, or the 64-hex public key
    enrolled = 2026-01-05       # optional: signatures before this date are not trusted
    revoked = 2026-09-30        # optional: nor those on or after this date

    [[person]]                  # 21 CFR Part 11 11.10(d) and (g): who may do what
    name = "J. Doe"             # the printed name they sign with
    role = "QA"                 # operator | test engineer | QA
    key = "SHA256:41ab..."      # needed to sign; an operator who never signs may have none
    badge = "0042"              # optional

What each role may do (ROLE_MAY): an operator starts a certification; a test engineer starts
one too, may run with --calibration-override and signs that override with its reason (`rig sign
--meaning "calibration override"`: a record with an override is UNTRUSTED until they have), and
signs "reviewed"; QA signs "reviewed" or "approved". Every mistake in the file is a TrustError
naming the file, the key and the value.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .signature import fingerprint

TRUST_ENV = "RIG_TRUST"
OPERATOR, TEST_ENGINEER, QA = "operator", "test engineer", "QA"
ROLES = (OPERATOR, TEST_ENGINEER, QA)
START, OVERRIDE = "start a certification", "run with --calibration-override"
OVERRIDE_SIGNED = "calibration override"  # the meaning a test engineer signs an override with
# what each role may do; a signature's meaning is an action too
ROLE_MAY: Mapping[str, frozenset[str]] = {
    OPERATOR: frozenset({START}),
    TEST_ENGINEER: frozenset({START, OVERRIDE, OVERRIDE_SIGNED, "reviewed"}),
    QA: frozenset({"reviewed", "approved"}),
}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class TrustError(ConfigError):
    """The trust file cannot be used as given."""


class RoleError(ConfigError):
    """A person is not enrolled, or not in a role that may do what was asked."""


def roles_for(action: str) -> list[str]:
    """The roles that may do `action` (START, OVERRIDE, or a signature meaning)."""
    return [r for r in ROLES if action in ROLE_MAY[r]]


@dataclass(frozen=True)
class EnrolledStation:
    """A station key the line trusts."""

    id: str
    fingerprint: str  # "SHA256:<hex>"
    enrolled: dt.date | None = None
    revoked: dt.date | None = None


@dataclass(frozen=True)
class Person:
    """An enrolled person: their printed name, role, key (if they sign) and badge."""

    name: str
    role: str
    fingerprint: str | None = None
    badge: str | None = None


@dataclass(frozen=True)
class Trust:
    """The enrolled stations and people of a line, from its trust file."""

    source: str
    line: str | None = None
    stations: tuple[EnrolledStation, ...] = ()
    people: tuple[Person, ...] = field(default_factory=tuple)

    def station_with(self, fp: str) -> EnrolledStation | None:
        """The enrolled station whose key has this fingerprint."""
        return next((s for s in self.stations if s.fingerprint == fp), None)

    def person_with(self, fp: str) -> Person | None:
        """The enrolled person whose key has this fingerprint."""
        return next((p for p in self.people if p.fingerprint == fp), None)

    def person_named(self, name: str) -> Person | None:
        """The enrolled person with this printed name (spaces and case as a person types)."""
        want = _norm(name)
        return next((p for p in self.people if _norm(p.name) == want), None)

    def require(self, name: str | None, action: str) -> Person:
        """The enrolled person `name`, if their role may do `action`; else a RoleError naming
        the person, the role needed and the role held."""
        needed = " or ".join(roles_for(action))
        if not name:
            raise RoleError(f"{self.source}: to {action} a person must be named (needs {needed})")
        person = self.person_named(name)
        if person is None:
            raise RoleError(
                f"{name!r} is not enrolled in {self.source}: to {action} needs role {needed}"
            )
        if action not in ROLE_MAY[person.role]:
            raise RoleError(
                f"{person.name!r} may not {_verb(action)}: needs role {needed}, holds role "
                f"{person.role}"
            )
        return person

    def signer_fault(
        self, *, name: str, role: str, meaning: str, fp: str, signed_at: str
    ) -> str | None:
        """Why a (cryptographically valid) signature is not trusted, or None if it is: the key
        is not enrolled, enrolled to someone else, outside its enrolment dates, or its holder's
        role may not sign with this meaning."""
        if role == "station":
            st = self.station_with(fp)
            if st is None:
                return f"its key {fp[:23]}... is not an enrolled station key ({self.source})"
            if st.id != name:
                return f"its key is enrolled for station {st.id!r}, not {name!r}"
            day = _day(signed_at)
            if st.enrolled and day and day < st.enrolled:
                return f"signed {day} before the key was enrolled ({st.enrolled})"
            if st.revoked and day and day >= st.revoked:
                return f"signed {day} after the key was revoked ({st.revoked})"
            return None
        person = self.person_with(fp)
        if person is None:
            return f"its key {fp[:23]}... is not enrolled for any person ({self.source})"
        if _norm(person.name) != _norm(name):
            return f"its key is enrolled for {person.name!r}, not {name!r}"
        if meaning not in ROLE_MAY[person.role]:
            return (
                f"{person.name!r} may not sign {meaning!r}: needs role "
                f"{' or '.join(roles_for(meaning))}, holds role {person.role}"
            )
        return None


def _verb(action: str) -> str:
    return action if action in (START, OVERRIDE) else f"sign {action!r}"


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def _day(text: str) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(text).date()
    except (TypeError, ValueError):
        return None


def key_fingerprint(value: object, where: str) -> str:
    """A key as the trust file gives it (a fingerprint or a raw public key), as a fingerprint."""
    text = str(value).strip()
    low = text.lower()
    if low.startswith("sha256:") and _HEX64.fullmatch(low[7:]):
        return "SHA256:" + low[7:]
    if _HEX64.fullmatch(low):
        return fingerprint(low)
    raise TrustError(
        f"{where} = {value!r}: expected a key fingerprint SHA256:<64 hex> (as `rig verify` "
        "prints it) or a 64-hex Ed25519 public key"
    )


def trust_path(given: str | Path | None) -> Path | None:
    """The trust file to use: the one given, else $RIG_TRUST, else none."""
    if given:
        return Path(given)
    env = os.environ.get(TRUST_ENV)
    return Path(env) if env else None


def load_trust(path: str | Path) -> Trust:
    """Read and validate a trust file."""
    p = Path(path)
    if not p.is_file():
        raise TrustError(f"trust file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TrustError(f"{p}: not valid TOML: {e}") from None
    known = {"line", "station", "person"}
    for k in data:
        if k not in known:
            raise TrustError(f"{p}: unknown key {k!r}; expected one of {sorted(known)}")
    line = data.get("line", {})
    if not isinstance(line, dict) or not isinstance(line.get("id", ""), str):
        raise TrustError(f'{p}: [line] expected a table with id = "..."')
    stations = []
    for i, row in enumerate(_rows(data, "station", p)):
        w = f"{p}: station[{i}]"
        sid = row.get("id")
        if not isinstance(sid, str) or not sid.strip():
            raise TrustError(f"{w}.id: expected the station id its records carry")
        _only(row, {"id", "key", "enrolled", "revoked"}, w)
        if "key" not in row:
            raise TrustError(f"{w} ({sid}): missing key")
        stations.append(
            EnrolledStation(
                id=sid,
                fingerprint=key_fingerprint(row["key"], f"{w}.key"),
                enrolled=_date(row.get("enrolled"), f"{w}.enrolled"),
                revoked=_date(row.get("revoked"), f"{w}.revoked"),
            )
        )
    people = []
    for i, row in enumerate(_rows(data, "person", p)):
        w = f"{p}: person[{i}]"
        name = row.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TrustError(f"{w}.name: expected the person's printed name")
        _only(row, {"name", "role", "key", "badge"}, w)
        role = row.get("role")
        if role not in ROLES:
            raise TrustError(f"{w}.role = {role!r} ({name}): expected one of {list(ROLES)}")
        fp = key_fingerprint(row["key"], f"{w}.key") if "key" in row else None
        badge = row.get("badge")
        if badge is not None and not isinstance(badge, str | int):
            raise TrustError(f"{w}.badge = {badge!r}: expected text")
        people.append(Person(name, role, fp, None if badge is None else str(badge)))
    _unique(
        [s.fingerprint for s in stations] + [x.fingerprint for x in people if x.fingerprint],
        f"{p}: a key is enrolled twice",
    )
    _unique([_norm(x.name) for x in people], f"{p}: a person is enrolled twice")
    return Trust(str(p), line.get("id"), tuple(stations), tuple(people))


def _rows(data: dict, key: str, p: Path) -> list[dict]:
    rows = data.get(key, [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TrustError(f"{p}: {key} expected [[{key}]] tables")
    return rows


def _only(row: dict, allowed: set[str], where: str) -> None:
    for k in row:
        if k not in allowed:
            raise TrustError(f"{where}: unknown key {k!r}; expected one of {sorted(allowed)}")


def _date(value: object, where: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise TrustError(f"{where} = {value!r}: expected a date YYYY-MM-DD") from None


def _unique(items: list[str], message: str) -> None:
    seen = set()
    for x in items:
        if x in seen:
            raise TrustError(f"{message}: {x}")
        seen.add(x)


def check_start(operator: str | None, override: str | None, trust_file: str | None) -> None:
    """Before a certification starts: with a trust file (given, or $RIG_TRUST), the operator must
    be enrolled in a role that may start one, and one that may override a calibration when
    `override` is given. Without a trust file nothing is checked (a lone bench)."""
    path = trust_path(trust_file)
    if path is None:
        return
    trust = load_trust(path)
    trust.require(operator, START)
    if override:
        trust.require(operator, OVERRIDE)
