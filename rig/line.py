"""A production line's file (`line.toml`): the operator station's address, people, benches.

```toml
[station]                      # the operator station (`rig station serve --line line.toml`)
name = "LINE2"
host = "127.0.0.1"             # default; a line that serves its floor sets its own address
port = 8890

[[person]]                     # who may run the station: a badge scan or the name logs in
name = "J. Doe"
badge = "B-1001"
role = "operator"              # operator | test engineer | QA

[[bench]]                      # one per bench, shown side by side
id = "BENCH1"
station = "bench1.toml"        # a real bench's station file (relative to this file) ...
# emulated = "TT-890"          # ... or an emulated bench of this model (demos, CI)
# scale = 20                   # its time scale
# defects = ["estop-slow"]     # seeded defects of an emulated bench (`rig defects`)
```

Every mistake is a ConfigError naming the file, the key, the value and what was expected.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

ROLES = ("operator", "test engineer", "QA")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8890
DEFAULT_SCALE = 20.0
_BENCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Person:
    """Someone enrolled on the line: printed name, badge code, role."""

    name: str
    badge: str
    role: str


@dataclass(frozen=True)
class BenchSpec:
    """One bench of the line: a real one (its station file) or an emulated model."""

    id: str
    station: Path | None = None
    emulated: str | None = None
    scale: float = DEFAULT_SCALE
    defects: tuple[str, ...] = ()  # seeded defects of an emulated bench (demos of a FAIL)


@dataclass(frozen=True)
class Line:
    """The line file, validated."""

    path: Path | None
    name: str = "line"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    people: tuple[Person, ...] = ()
    benches: tuple[BenchSpec, ...] = ()

    def person(self, scanned: str) -> Person | None:
        """Who a badge scan or a typed name is (badge first, then the name, case-insensitive);
        None when nobody enrolled matches."""
        text = scanned.strip()
        for p in self.people:
            if p.badge == text:
                return p
        for p in self.people:
            if p.name.casefold() == text.casefold():
                return p
        return None


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, value: object, expected: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key} = {value!r}: expected {expected}")

    def table(self, data: object, key: str, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, data, "a table")
        for name in data:
            if name not in known:
                raise self.fail(
                    f"{key}.{name}" if key else name,
                    data[name],
                    f"no such key (known: {', '.join(known)})",
                )
        return data

    def text(self, data: dict[str, Any], key: str, name: str, default: str | None = None) -> str:
        if name not in data:
            if default is None:
                raise self.fail(f"{key}.{name}", None, "a value (required key)")
            return default
        value = data[name]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key}.{name}", value, "a non-empty text")
        return value.strip()


def load_line(path: str | Path) -> Line:
    """Read and validate a line file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"line file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    r = _Reader(p)
    r.table(data, "", ("station", "person", "bench"))
    st = r.table(data.get("station", {}), "station", ("name", "host", "port"))
    name = r.text(st, "station", "name", "line")
    host = r.text(st, "station", "host", DEFAULT_HOST)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise r.fail("station.host", host, "an IP address (e.g. 127.0.0.1)") from None
    port = st.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise r.fail("station.port", port, "an integer 1-65535")
    people = tuple(_people(r, data.get("person", [])))
    benches = tuple(_benches(r, data.get("bench", [])))
    return Line(path=p, name=name, host=host, port=port, people=people, benches=benches)


def _people(r: _Reader, entries: object) -> list[Person]:
    if not isinstance(entries, list):
        raise r.fail("person", entries, "an array of tables ([[person]])")
    out: list[Person] = []
    for i, entry in enumerate(entries):
        key = f"person[{i}]"
        e = r.table(entry, key, ("name", "badge", "role"))
        person = Person(r.text(e, key, "name"), r.text(e, key, "badge"), r.text(e, key, "role"))
        if person.role not in ROLES:
            raise r.fail(f"{key}.role", person.role, f"one of {', '.join(ROLES)}")
        for other in out:
            if other.badge == person.badge:
                raise r.fail(f"{key}.badge", person.badge, f"a badge not {other.name}'s too")
        out.append(person)
    return out


def _benches(r: _Reader, entries: object) -> list[BenchSpec]:
    if not isinstance(entries, list):
        raise r.fail("bench", entries, "an array of tables ([[bench]])")
    out: list[BenchSpec] = []
    for i, entry in enumerate(entries):
        key = f"bench[{i}]"
        e = r.table(entry, key, ("id", "station", "emulated", "scale", "defects"))
        bid = r.text(e, key, "id")
        if not _BENCH_ID.fullmatch(bid):
            raise r.fail(f"{key}.id", bid, "letters, digits, - and _ (at most 32)")
        if any(b.id == bid for b in out):
            raise r.fail(f"{key}.id", bid, "an id no other bench has")
        has_station, has_model = "station" in e, "emulated" in e
        if has_station == has_model:
            raise r.fail(key, entry, "one of station (a station file) or emulated (a model)")
        scale = e.get("scale", DEFAULT_SCALE)
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
            raise r.fail(f"{key}.scale", scale, "a number > 0")
        defects = e.get("defects", [])
        if not isinstance(defects, list) or not all(isinstance(d, str) for d in defects):
            raise r.fail(f"{key}.defects", defects, "a list of defect names (rig defects)")
        if defects and has_station:
            raise r.fail(f"{key}.defects", defects, "none: only an emulated bench has defects")
        if has_station:
            station = Path(r.text(e, key, "station"))
            if not station.is_absolute() and r.path.parent != Path(""):
                station = r.path.parent / station
            if not station.is_file():
                raise r.fail(f"{key}.station", e["station"], f"a station file ({station} is none)")
            out.append(BenchSpec(bid, station=station, scale=float(scale)))
        else:
            model = r.text(e, key, "emulated")
            out.append(BenchSpec(bid, emulated=model, scale=float(scale), defects=tuple(defects)))
    return out


def operator_steps(profile: Any, confirmed: Sequence[str], operator: str) -> list[dict[str, Any]]:
    """The profile's operator steps as the record states them: each with who confirmed it
    (None when nobody did on this run). A confirmed id the profile does not declare is a
    ConfigError naming it and the known ones."""
    declared = {s.id: s for s in getattr(profile, "operator_steps", ())}
    unknown = [c for c in confirmed if c not in declared]
    if unknown:
        known = ", ".join(declared) or "none"
        raise ConfigError(
            f"--confirm {unknown[0]!r}: the {profile.model.name} profile declares no such "
            f"operator step (known: {known})"
        )
    if confirmed and not operator:
        raise ConfigError("--confirm needs --operator: the record says who confirmed each step")
    return [
        {"id": s.id, "text": s.text, "confirmed_by": operator if s.id in confirmed else None}
        for s in declared.values()
    ]
