"""A bench: where its PLC and instruments are, from a station file or an emulated bench."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StationError

# Which instrument models may fill a role, and the role each table kind measures with.
ROLE_MODELS = {
    "force_meter": ("LC-2000",),
    "position_meter": ("ENC-600",),
    "inclinometer": ("INC-360",),
    "actuators": ("ACT-3",),
}


@dataclass(frozen=True)
class InstrumentAddress:
    """One instrument on the bench."""

    role: str
    model: str
    resource: str


@dataclass(frozen=True)
class Station:
    """Resources of one bench: addresses only, no behaviour."""

    id: str
    plc_host: str
    plc_port: int = 502
    plc_unit: int = 1
    instruments: dict[str, InstrumentAddress] = field(default_factory=dict)
    emulated: bool = False
    source: str = ""
    results_db: str | None = None  # [results] db: the line's results database (issue 10)

    def instrument(self, role: str) -> InstrumentAddress:
        """The instrument filling `role`, or a StationError naming the station file."""
        try:
            return self.instruments[role]
        except KeyError:
            raise StationError(
                f"{self.source or 'station'}: no instrument for role {role!r}; the station has "
                f"{', '.join(sorted(self.instruments)) or 'none'}"
            ) from None


def _need(table: dict, key: str, kind: type, where: str) -> object:
    if key not in table:
        raise StationError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise StationError(f"{where}.{key} = {value!r}: expected {kind.__name__}")
    return value


def load_station(path: str | Path) -> Station:
    """Read a station file (TOML); every mistake is a StationError naming file and key."""
    p = Path(path)
    if not p.is_file():
        raise StationError(f"station file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise StationError(f"{p}: not valid TOML: {e}") from None
    known = {"station", "plc", "instruments", "results"}
    for key in data:
        if key not in known:
            raise StationError(f"{p}: unknown section [{key}]; expected one of {sorted(known)}")
    st = data.get("station", {})
    plc = data.get("plc")
    if not isinstance(plc, dict):
        raise StationError(f"{p}: missing [plc] section with host and port")
    host = _need(plc, "host", str, f"{p}: plc")
    port = plc.get("port", 502)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise StationError(f"{p}: plc.port = {port!r}: expected an integer 1-65535")
    unit = plc.get("unit", 1)
    if unit != 1:
        raise StationError(f"{p}: plc.unit = {unit!r}: the ICD fixes unit id 1")
    instruments: dict[str, InstrumentAddress] = {}
    for role, entry in (data.get("instruments") or {}).items():
        where = f"{p}: instruments.{role}"
        if role not in ROLE_MODELS:
            raise StationError(f"{where}: unknown role; expected one of {sorted(ROLE_MODELS)}")
        if not isinstance(entry, dict):
            raise StationError(f"{where}: expected a table with model and resource")
        model = _need(entry, "model", str, where)
        if model not in ROLE_MODELS[role]:
            raise StationError(
                f"{where}.model = {model!r}: expected one of {list(ROLE_MODELS[role])}"
            )
        resource = _need(entry, "resource", str, where)
        if not (resource.startswith("TCPIP") and resource.endswith("::SOCKET")):
            raise StationError(
                f"{where}.resource = {resource!r}: expected TCPIP0::<host>::<port>::SOCKET"
            )
        instruments[role] = InstrumentAddress(role, model, resource)
    return Station(
        id=str(st.get("id", p.stem)),
        plc_host=str(host),
        plc_port=port,
        plc_unit=unit,
        instruments=instruments,
        emulated=bool(st.get("emulated", False)),
        source=str(p),
        results_db=_results_db(data.get("results"), p),
    )


def _results_db(table: object, p: Path) -> str | None:
    """[results] db = "postgresql://..." (or a SQLite path): the line's results database."""
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) - {"db"}:
        raise StationError(f'{p}: [results] expected one key, db = "postgresql://..."')
    db = table.get("db")
    if not isinstance(db, str) or not db.strip():
        raise StationError(f"{p}: results.db = {db!r}: expected a database URL or file path")
    return db


def station_toml(station: Station) -> str:
    """A station file for `station` (what `rig emulate` writes for others to use)."""
    lines = [
        "[station]",
        f'id = "{station.id}"',
        f"emulated = {'true' if station.emulated else 'false'}",
        "",
        "[plc]",
        f'host = "{station.plc_host}"',
        f"port = {station.plc_port}",
        "",
    ]
    for role, inst in station.instruments.items():
        lines += [
            f"[instruments.{role}]",
            f'model = "{inst.model}"',
            f'resource = "{inst.resource}"',
            "",
        ]
    return "\n".join(lines)
