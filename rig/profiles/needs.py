"""What each procedure needs from a profile: the params of each test body, per table kind, and
the numbers of the profile's [home] table. Validation checks them at load time; the procedures
read them without defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

ALL_KINDS = "*"


@dataclass(frozen=True, slots=True)
class Need:
    """One value a procedure reads: its name, what it must be, and when it is needed.

    `what` is one of: number, integer (>= 1), numbers (a list), text, texts (a list),
    requirement / requirements (IDs of this model's requirements whose test body is `body`).
    """

    name: str
    what: str
    unit: str = ""
    choices: tuple[str, ...] = ()
    # needed only when the param `when[0]` has the value `when[1]` (e.g. at = "straight")
    when: tuple[str, str] | None = None
    # optional: checked when present, not required (only for non-numbers with a stated meaning
    # when absent; a number a procedure uses is never optional)
    optional: bool = False
    body: tuple[str, ...] = ()

    def expected(self) -> str:
        """What the value must be, for error messages."""
        unit = f" in {self.unit}" if self.unit else ""
        if self.what == "number":
            return f"a number{unit}"
        if self.what == "integer":
            return "an integer >= 1"
        if self.what == "numbers":
            return f"a non-empty list of numbers{unit}"
        if self.what == "text":
            return f"one of {', '.join(self.choices)}" if self.choices else "a string"
        if self.what == "texts":
            return f"a non-empty list of: {', '.join(self.choices)}"
        bodies = " or ".join(self.body)
        if self.what == "requirement":
            return f"the ID of a {bodies} requirement of this model"
        return f"a non-empty list of IDs of {bodies} requirements of this model"


def _number(name: str, unit: str, **kw: object) -> Need:
    return Need(name, "number", unit, **kw)  # type: ignore[arg-type]


# Where a safety body brings the table before the event it provokes (reach_condition).
_REACH: Mapping[str, tuple[Need, ...]] = MappingProxyType(
    {
        "traction": (Need("at", "text", choices=("setpoint",), optional=True),),
        "roller": (
            Need("at", "text", choices=("setpoint", "straight"), optional=True),
            # the straight starts this far past TRAVEL_START (the carriage is at speed there)
            _number("straight_margin", "mm", when=("at", "straight")),
        ),
        "inversion": (
            Need("at", "text", choices=("setpoint", "moving"), optional=True),
            _number("moving_from", "deg", when=("at", "moving")),
            _number("moving_to", "deg", when=("at", "moving")),
        ),
    }
)

_STOP: Mapping[str, tuple[Need, ...]] = MappingProxyType(
    {
        "traction": (
            _number("trace_s", "s"),
            _number("release_level", "N"),
            _number("release_limit_s", "s"),
        ),
        "roller": (
            _number("trace_s", "s"),
            _number("still_tolerance", "mm"),
            _number("lift_drop", "mm"),
            _number("lift_by_s", "s"),
        ),
        "inversion": (
            _number("still_tolerance", "deg"),
            _number("overtravel_at_s", "s"),
            # an e-stop's trace has the row's length; a patient stop's return, which the ICD
            # gives no time, is waited for as long as it must physically take, with a margin
            _number("trace_s", "s", when=("relay", "estop")),
            _number("accel", "deg/s2", when=("relay", "patient")),
            _number("return_margin", "parts of the nominal return", when=("relay", "patient")),
            _number("return_settle_s", "s", when=("relay", "patient")),
        ),
    }
)

_RELAYS = ("estop", "patient")
_UNITS = {"traction": "N", "roller": "mm", "inversion": "deg"}


def _with_reach(
    common: tuple[Need, ...], extra: Mapping[str, tuple[Need, ...]] | None = None
) -> dict[str, tuple[Need, ...]]:
    out: dict[str, tuple[Need, ...]] = {}
    for kind, reach in _REACH.items():
        out[kind] = common + reach + (extra or {}).get(kind, ())
    return out


# test body -> table kind (or ALL_KINDS) -> the params its procedure reads
BODY_PARAMS: Mapping[str, Mapping[str, tuple[Need, ...]]] = MappingProxyType(
    {
        # safety bodies (suites/safety), shared by every kind
        "safety_stop": _with_reach((Need("relay", "text", choices=_RELAYS),), _STOP),
        "watchdog": _with_reach((_number("trace_s", "s"), _number("quiet_from_s", "s"))),
        "power_loss": _with_reach(
            (
                _number("off_s", "s"),
                _number("quiet_s", "s"),
                _number("decay_s", "s"),
            ),
            {kind: (_number("still_tolerance", unit),) for kind, unit in _UNITS.items()},
        ),
        "no_restart": _with_reach(
            (Need("relay", "text", choices=_RELAYS), _number("quiet_s", "s"))
        ),
        "interlocks": {
            ALL_KINDS: (Need("relays", "texts", choices=_RELAYS), _number("still_s", "s"))
        },
        # writes_s: the least device time the acquisition gives the refused writes (it is
        # stretched to the bench's measured round trip), still_s the quiet after them
        "setting_limits": {ALL_KINDS: (_number("still_s", "s"), _number("writes_s", "s"))},
        "protective_monitor": {
            # the key that enters service mode is the SERVICE_KEY register's ENTER (profile.toml)
            ALL_KINDS: (_number("trace_s", "s"),),
            "traction": (
                _number("offset_fraction", "parts of FORCE_SET"),
                _number("release_level", "N"),
            ),
            "roller": (_number("sensor_offset", "mm"),),
            "inversion": (_number("sensor_offset", "deg"),),
        },
        # traction performance
        "settled_force": {"traction": (Need("setpoints", "numbers", "N"),)},
        "ramp_rate": {
            "traction": (
                Need("rates", "numbers", "N/s"),
                _number("step", "N"),
                _number("step_from", "N"),
            )
        },
        "overshoot": {
            "traction": (Need("steps_of", "requirements", body=("settled_force", "ramp_rate")),)
        },
        "plc_reading": {"traction": (Need("steps_of", "requirements", body=("settled_force",)),)},
        "intermittent": {"traction": (Need("cycles", "integer"),)},
        "session_length": {"traction": ()},
        # roller performance
        "roller_cycles": {
            "roller": (
                Need("travel_start", "numbers", "mm"),
                Need("travel_end", "numbers", "mm"),
                Need("speeds", "numbers", "mm/s"),
                Need("periods", "integer"),
                _number("accel", "mm/s2"),
                _number("dwell_total", "s"),
                _number("hysteresis", "mm"),
            )
        },
        "roller_speed": {
            "roller": (
                Need("runs_of", "requirement", body=("roller_cycles",)),
                _number("margin", "mm"),
            )
        },
        "roller_reversals": {
            "roller": (
                Need("runs_of", "requirement", body=("roller_cycles",)),
                _number("hysteresis", "mm"),
            )
        },
        "roller_lift": {
            "roller": (
                Need("levels", "numbers", "level"),
                _number("mm_per_level", "mm"),
                _number("lift_speed", "mm/s"),
            )
        },
        "roller_plc_reading": {
            "roller": (
                Need("cycles", "integer"),
                _number("accel", "mm/s2"),
                _number("dwell_total", "s"),
                _number("hysteresis", "mm"),
            )
        },
        "roller_session": {"roller": (_number("mm_per_level", "mm"), _number("hysteresis", "mm"))},
        # inversion performance
        "settled_angle": {"inversion": (Need("setpoints", "numbers", "deg"),)},
        "rotation_rate": {
            "inversion": (
                Need("rates", "numbers", "deg/s"),
                _number("move_from", "deg"),
                _number("move_to", "deg"),
            )
        },
        "angle_overshoot": {
            "inversion": (Need("moves_of", "requirement", body=("settled_angle",)),)
        },
        "angle_plc_reading": {
            "inversion": (Need("moves_of", "requirement", body=("settled_angle",)),)
        },
        "hold_and_return": {
            "inversion": (
                _number("accel", "deg/s2"),
                _number("band", "deg"),
                _number("margin", "s"),
            )
        },
    }
)

# table kind -> the keys of profile.toml's [home] table (bringing the table to rest between tests)
HOME: Mapping[str, tuple[Need, ...]] = MappingProxyType(
    {
        "traction": (),
        "roller": (_number("tolerance", "mm"), _number("timeout_s", "s")),
        "inversion": (_number("tolerance", "deg"), _number("timeout_s", "s")),
    }
)


# test body -> (register, enum name) its procedure writes by name
BODY_ENUMS: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {"protective_monitor": (("SERVICE_KEY", "ENTER"),)}
)


def needs_of(test: str, kind: str) -> tuple[Need, ...]:
    """The params the procedure of test body `test` reads on a table of `kind` (none for a body
    the rig does not know: the plugin reports those)."""
    table = BODY_PARAMS.get(test, {})
    return tuple(table.get(ALL_KINDS, ())) + tuple(table.get(kind, ()))
