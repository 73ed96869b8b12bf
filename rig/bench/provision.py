"""Bench provisioning: from the options, a Station -- a real bench's file, or an emulated bench."""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..evidence.trust import check_start
from ..station import ROLE_MODELS, Station, load_station
from .heartbeat import check_scale_holds

EMULATOR_MODES = ("subprocess", "inprocess")  # the first is the default
# a device second in 50 ms of wall time: the host keeps WATCHDOG_MS / 20 between heartbeats
DEFAULT_SCALE = 20.0
NO_MODEL = (
    "no table model given: pass --model (e.g. --model TT-890) or set rig_model in the ini file"
)

# instrument model -> (module, class) of its driver
DRIVERS = {
    "LC-2000": ("rig.instruments.lc2000", "LC2000"),
    "ENC-600": ("rig.instruments.enc600", "ENC600"),
    "INC-360": ("rig.instruments.inc360", "INC360"),
    "ACT-3": ("rig.instruments.act3", "ACT3"),
}


def scale_of(raw: object) -> float:
    """The time scale of an emulated bench: a number > 0 (a ConfigError otherwise)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"--scale {raw!r}: expected a number > 0") from None
    if not value > 0:
        raise ConfigError(f"--scale {raw!r}: expected a number > 0")
    return value


@dataclass(frozen=True)
class BenchRequest:
    """What the options ask of the bench."""

    model: str | None
    station_file: str | None = None
    scale: float = DEFAULT_SCALE
    defects: tuple[str, ...] = ()
    emulator: str = EMULATOR_MODES[0]
    serial: str = ""  # as scanned: an emulated table reports it when it is a number
    cal_due: str | None = None  # emulated bench only: what its instruments report

    @property
    def emulated(self) -> bool:
        """True when no station file is given: a bench is emulated for the run."""
        return not self.station_file

    @property
    def seed(self) -> int:
        """Noise seed of an emulated bench: from the serial, so one unit repeats exactly and
        different units differ."""
        return int.from_bytes(hashlib.sha256(self.serial.encode()).digest()[:4], "big")

    @property
    def plc_serial(self) -> int | None:
        """The SERIAL an emulated PLC reports: the scanned one when it is a number (as a real
        table reports its own)."""
        s = self.serial
        return int(s) if s.isdigit() and int(s) < 2**32 else None


def check_request(
    values: Mapping[str, Any], *, model: str | None = None, defects: bool = True
) -> BenchRequest:
    """Validate the bench options (all the checks, in one place) and return the request.

    `values` maps option dests (model, station, scale, defect, emulator, serial,
    bench_cal_due) to their raw values. `model` overrides a missing or differently spelled
    model name (the profile's). With `defects`, the defect names are checked against the
    model's emulated bench."""
    name = model or values.get("model") or None
    chosen = tuple(values.get("defect") or ())
    station = values.get("station") or None
    if not name and (chosen or not station):  # a real bench says what it is; an emulated one not
        raise ConfigError(NO_MODEL)
    if station and chosen:
        raise ConfigError(
            "--defect seeds defects in an emulated bench; it cannot be used with --station"
        )
    mode = str(values.get("emulator") or EMULATOR_MODES[0])
    if not station and mode not in EMULATOR_MODES:
        raise ConfigError(f"--emulator {mode!r}: expected 'subprocess' or 'inprocess'")
    if chosen and defects:
        from ..emulators.defects import check_defects

        check_defects(str(name), chosen)
    raw_scale = values.get("scale")
    scale = scale_of(DEFAULT_SCALE if raw_scale is None else raw_scale)
    if not station and name:  # issue 8: a scale whose heartbeat this host cannot hold
        check_scale_holds(scale, str(name))
    check_start(  # issue 10: with the line's trust file, only enrolled people start
        values.get("operator"), values.get("calibration_override"), values.get("trust_file")
    )
    return BenchRequest(
        model=str(name) if name else None,
        station_file=str(station) if station else None,
        scale=scale,
        defects=chosen,
        emulator=mode,
        serial=str(values.get("serial") or ""),
        cal_due=values.get("bench_cal_due") or None,
    )


@dataclass
class Bench:
    """A provisioned bench: its station, and how to release it when the run is over."""

    station: Station
    emulator: Any = None  # the in-process EmulatedBench, when there is one
    _stop: Callable[[], None] | None = None

    def stop(self) -> None:
        """Stop an emulated bench started for the run (a real bench is left as it is)."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


def provision(request: BenchRequest) -> Bench:
    """The bench of the run: the station file's, or an emulated bench started now."""
    if request.station_file:
        return Bench(load_station(request.station_file))
    kwargs = (
        {role: {"cal_due": request.cal_due} for role in ROLE_MODELS} if request.cal_due else None
    )
    if not request.model:
        raise ConfigError(NO_MODEL)
    if request.emulator == "inprocess":
        from ..emulators.bench import EmulatedBench

        bench = EmulatedBench(
            request.model,
            scale=request.scale,
            defects=request.defects,
            seed=request.seed,
            instrument_kwargs=kwargs,
            serial=request.plc_serial,
        )
        station = bench.start()
        return Bench(station, emulator=bench, _stop=bench.stop)
    from ..emulators.spawn import spawn_bench

    child = spawn_bench(
        request.model,
        scale=request.scale,
        defects=request.defects,
        seed=request.seed,
        serial=request.plc_serial,
        cal_due=request.cal_due,
    )
    return Bench(child.station, _stop=child.stop)


def open_instrument(station: Station, role: str, opened: dict[str, Any]) -> Any:
    """The driver of the instrument filling `role`, opened once (kept in `opened`) and checked
    to be the model the station names."""
    if role in opened:
        return opened[role]
    addr = station.instrument(role)
    if addr.model not in DRIVERS:
        raise ConfigError(f"no driver for instrument model {addr.model!r}")
    module, cls = DRIVERS[addr.model]
    driver = getattr(importlib.import_module(module), cls)(addr.resource)
    driver.open()
    driver.check_identity()
    opened[role] = driver
    return driver


def check_serial(serial: object, profile: Any) -> str:
    """The scanned serial if the profile's `[model] serial_pattern` matches it whole; else a
    ConfigError naming the serial and the pattern (an empty serial is never a unit's)."""
    text = "" if serial is None else str(serial)
    pattern = profile.model.serial_pattern
    if not text.strip():
        raise ConfigError(
            f"--serial {text!r}: no serial number given; scan the unit's label "
            f"({profile.model.name} serials match {pattern})"
        )
    if re.fullmatch(pattern, text) is None:
        raise ConfigError(
            f"--serial {text!r}: not a {profile.model.name} serial number; expected one matching "
            f"{pattern} (profile [model] serial_pattern)"
        )
    return text


def check_station(station: Station, profile: Any, opened: dict[str, Any]) -> None:
    """Before anything moves, check a station file's bench: the PLC answers with the profile's
    KIND, and each instrument the run uses answers `*IDN?` as the model the file names. Any
    failure is one ConfigError naming the station file, the key and the address."""
    from ..plc import Plc

    source = station.source or "station"
    address = f"{station.plc_host}:{station.plc_port}"
    plc = Plc(profile, station.plc_host, station.plc_port, unit=station.plc_unit, timeout=1.0)
    try:
        plc.connect()
        kind = plc.read("KIND")
        icd = plc.read("ICD_VERSION")
    except Exception as e:  # refused, silent, garbage: whatever it is, it is not this bench
        raise ConfigError(
            f"{source}: plc (host, port) = {address}: no PLC answers there ({_why(e)})"
        ) from None
    finally:
        plc.close()
    if kind != profile.model.kind:
        raise ConfigError(
            f"{source}: plc (host, port) = {address}: the PLC reports KIND {kind}, but "
            f"{profile.model.name} is KIND {profile.model.kind} ({profile.model.kind_name})"
        )
    if icd != profile.model.icd_version:
        raise ConfigError(
            f"{source}: plc (host, port) = {address}: the PLC reports ICD_VERSION {icd}; this "
            f"rig implements {profile.model.icd_version}"
        )
    for role in dict.fromkeys((profile.model.reference_role, "actuators")):
        addr = station.instrument(role)
        try:
            open_instrument(station, role, opened)
        except Exception as e:
            driver = opened.pop(role, None)
            if driver is not None:
                driver.close()
            raise ConfigError(
                f"{source}: instruments.{role}.resource = {addr.resource}: {_why(e)}"
            ) from None


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
