"""Seeded defects of the emulated tables: named faults that make one requirement fail on purpose."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Defect:
    """One seeded defect: its model and the requirements it must break (and only those). None
    for a deviation from plc-modbus.md that no requirement row judges: the unit must pass."""

    name: str
    model: str
    breaks: tuple[str, ...]
    description: str


_TT = "TT-890"

_TT890_DEFECTS: tuple[Defect, ...] = (
    Defect(
        "lumbar-force-high",
        _TT,
        ("TT-PERF-01",),
        "STATIC with the LUMBAR harness settles 4 % above FORCE_SET (setpoint scaling error; "
        "the PLC reading still agrees with the load cell)",
    ),
    Defect(
        "cervical-force-low",
        _TT,
        ("TT-PERF-02",),
        "STATIC with the CERVICAL harness settles 5 % below FORCE_SET",
    ),
    Defect(
        "ramp-up-slow",
        _TT,
        ("TT-PERF-03",),
        "ramps up at 0.88 x RAMP_RATE (ramp down and releases are normal)",
    ),
    Defect(
        "overshoot",
        _TT,
        ("TT-PERF-04",),
        "STATIC ramp up overshoots its level by 8 % (0.2 s up, 0.4 s back), then holds",
    ),
    Defect(
        "hold-long",
        _TT,
        ("TT-PERF-05",),
        "INTERMITTENT holds last HOLD_S + 1 s",
    ),
    Defect(
        "plc-force-high",
        _TT,
        ("TT-PERF-06",),
        "the FORCE register reads 3 % above the control channel (display scaling only)",
    ),
    Defect(
        "session-long",
        _TT,
        ("TT-PERF-07",),
        "the session ends at SESSION_S + 2 s",
    ),
    Defect(
        "estop-slow",
        _TT,
        ("TT-SAF-01",),
        "the hardwired e-stop circuit opening is acted on 150 ms late "
        "(software ESTOP and monitor trips are not affected)",
    ),
    Defect(
        "patient-release-slow",
        _TT,
        ("TT-SAF-02",),
        "the patient stop releases at 150 N/s",
    ),
    Defect(
        "no-force-limit",
        _TT,
        ("TT-SAF-03",),
        "FORCE_SET is accepted up to 1000.0 N whatever the harness; HARNESS changes are not "
        "checked against FORCE_SET",
    ),
    Defect(
        "refused-write-jerk",
        _TT,
        ("TT-SAF-03",),
        "a RAMP_RATE write refused as out of range (exception 03, register unchanged) tensions "
        "the idle cord to 60 N in 0.1 s and lets it go at 600 N/s: motion while the refused "
        "writes are made, over before they end",
    ),
    Defect(
        "no-overforce-monitor",
        _TT,
        ("TT-SAF-04",),
        "the overforce monitor never trips",
    ),
    Defect(
        "watchdog-slow",
        _TT,
        ("TT-SAF-05",),
        "the comm-loss watchdog fires at 2 x WATCHDOG_MS",
    ),
    Defect(
        "power-restore-no-fault",
        _TT,
        ("TT-SAF-06",),
        "after a power restore the PLC comes up IDLE with FAULT 0 (START accepted at once)",
    ),
    Defect(
        "restart-after-reset",
        _TT,
        ("TT-SAF-07",),
        "RESET from the ESTOP state returns to RUNNING and ramps back to FORCE_SET",
    ),
    Defect(
        "patient-interlock-bypass",
        _TT,
        ("TT-SAF-08",),
        "START is accepted while the patient stop switch is pressed, and the table runs",
    ),
)


def _from_rows(
    model: str, rows: tuple[tuple[str, tuple[str, ...], str], ...]
) -> tuple[Defect, ...]:
    return tuple(Defect(name, model, breaks, description) for name, breaks, description in rows)


# Each model's defects live in their own data module (rows of name, breaks, description).
from .defects_it90 import IT90_DEFECTS  # noqa: E402
from .defects_rt600 import RT600_DEFECTS  # noqa: E402

ALL_DEFECTS: tuple[Defect, ...] = (
    *_TT890_DEFECTS,
    *_from_rows("RT-600", RT600_DEFECTS),
    *_from_rows("IT-90", IT90_DEFECTS),
)
# Names repeat across models (each has a `watchdog-slow`): the registry is keyed by both.
DEFECTS: dict[tuple[str, str], Defect] = {(d.model, d.name): d for d in ALL_DEFECTS}


def defects_for(model: str) -> dict[str, Defect]:
    """The defects that can be seeded into `model` (e.g. 'TT-890'), by name."""
    key = model.upper()
    return {d.name: d for d in ALL_DEFECTS if d.model == key}


def check_defects(model: str, names: Iterable[str]) -> frozenset[str]:
    """Validate defect names for `model`: a ConfigError names a bad one and lists the valid."""
    chosen = frozenset(names)
    valid = defects_for(model)
    for name in sorted(chosen):
        if name not in valid:
            listing = ", ".join(sorted(valid)) or "none"
            others = sorted(d.model for d in ALL_DEFECTS if d.name == name)
            other = f" (it is a defect of {', '.join(others)})" if others else ""
            raise ConfigError(
                f"unknown defect {name!r} for {model}{other}; valid defects: {listing}"
            )
    return chosen
