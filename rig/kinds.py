"""What differs between table kinds for the shared safety tests: reaching a condition, the
quantities of a stop, motion. The bodies in suites/safety are one per requirement kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import analysis
from .errors import ConfigError
from .trace import Trace
from .wait import wait_until


@dataclass(frozen=True)
class Acquisition:
    """An armed acquisition on a measuring instrument."""

    meter: Any
    duration_s: float
    rate_hz: float

    def fetch(self, table: Any) -> Trace:
        """Wait (polling the instrument) until done, then fetch every channel."""
        self.meter.wait_done(table.wall_timeout(self.duration_s + 1.0))
        return self.meter.fetch_trace()


def arm(
    meter: Any,
    *,
    duration_s: float,
    rate_hz: float,
    pretrigger_s: float = 0.0,
    source: str = "BUS",
    table: Any = None,
) -> Acquisition:
    """Configure and arm an acquisition of `duration_s` after the trigger.

    With `table` given and a pre-trigger asked for, return only once the PLC clock shows the
    pre-trigger time has passed since arming, so the samples before the trigger are real.
    """
    meter.configure(rate=rate_hz, duration_s=duration_s, pretrigger_s=pretrigger_s, source=source)
    meter.arm()
    if table is not None and pretrigger_s > 0:
        table.wait_device(pretrigger_s * 1.2)
    return Acquisition(meter, duration_s, rate_hz)


def _p(params: dict[str, Any], name: str, default: float | None = None) -> float:
    if name in params:
        return float(params[name])
    if default is None:
        raise ConfigError(f"requirement params need {name!r}")
    return default


class Behaviour:
    """Common parts: settling at the setpoint, and motion as 'still' of the reference."""

    channel = ""
    stop_rate_hz = 1000.0

    def reach_condition(
        self, table: Any, settings: dict[str, float], params: dict[str, Any] | None = None
    ) -> None:
        """Write the settings, START, and return once the table is in the condition the
        requirement names (params["at"]: setpoint | straight | moving)."""
        params = params or {}
        table.configure(settings)
        table.command("START")
        self._wait_condition(table, settings, params)

    def _wait_condition(
        self, table: Any, settings: dict[str, float], params: dict[str, Any]
    ) -> None:
        table.wait_status("at_setpoint", device_s=self.expected_s(settings) * 2 + 10)
        table.wait_device(0.5)

    def expected_s(self, settings: dict[str, float]) -> float:
        """Device seconds the table may take to reach its setpoint."""
        return 60.0

    def home(self, table: Any) -> None:
        """Bring the table to its rest position between tests (nothing by default)."""

    def motion(self, trace: Trace, *, start: float = 0.0, end: float | None = None) -> float:
        """Largest 100 ms mean away from the first over the window ('still' in the ICD)."""
        t = trace.t
        stop = float(t[-1]) if end is None else end
        return analysis.max_excursion(t, trace[self.channel], start=start, end=stop)

    def monitor_quantities(
        self, trace: Trace, params: dict[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """Quantities of a protective-monitor trip from the reference trace."""
        x = trace[self.channel]
        return {"peak": analysis.peak(trace.t, x)}

    def final_error(self, trace: Trace, target: float) -> float:
        """|final level - target| of the reference."""
        return abs(analysis.final_level(trace.t, trace[self.channel]) - target)


class TractionBehaviour(Behaviour):
    """TT tables: the reference is cord tension; motion is tension above the release level."""

    channel = "FORC"

    def expected_s(self, settings: dict[str, float]) -> float:
        """Ramp time to FORCE_SET."""
        return settings.get("FORCE_SET", 890.0) / max(settings.get("RAMP_RATE", 10.0), 1.0)

    def stop_quantities(
        self, trace: Trace, params: dict[str, Any], settings: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Reaction and release of a safety stop; returns (quantities, instants to plot)."""
        t, f = trace.t, trace[self.channel]
        level = _p(params, "release_level", 15.0)
        x0 = analysis.level_before(t, f)
        reaction = analysis.reaction_time(t, f, x0=x0)
        release = analysis.release_time(t, f, threshold=level)
        after = _p(params, "release_limit_s", 3.0)
        values = {
            "reaction_time": reaction,
            "release_time": release,
            "force_after_release": analysis.max_after(t, f, start=after),
        }
        return values, {"reaction": reaction, "release": release}

    def motion(self, trace: Trace, *, start: float = 0.0, end: float | None = None) -> float:
        """Peak tension in the window: 'nothing moves' means it stays at or below 15 N."""
        return analysis.peak(trace.t, trace[self.channel], start=start, end=end)

    def monitor_quantities(
        self, trace: Trace, params: dict[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """Peak force and the release after the trip."""
        t, f = trace.t, trace[self.channel]
        release = analysis.release_time(t, f, threshold=_p(params, "release_level", 15.0))
        return {
            "peak_force": analysis.peak(t, f),
            "release_after_trip": None if trip is None else release - trip,
            "release": release,
        }


class RollerBehaviour(Behaviour):
    """RT tables: the reference is the carriage position (ENC POS) and the roller lift."""

    channel = "POS"
    lift = "LIFT"
    stop_rate_hz = 1000.0

    def expected_s(self, settings: dict[str, float]) -> float:
        """Time to the far reversal from park, plus the lift."""
        span = settings.get("TRAVEL_END", 550.0) - settings.get("TRAVEL_START", 50.0)
        return span / max(settings.get("SPEED", 10.0), 1.0) + 5.0

    def _wait_condition(
        self, table: Any, settings: dict[str, float], params: dict[str, Any]
    ) -> None:
        at = params.get("at", "setpoint")
        if at != "straight":
            super()._wait_condition(table, settings, params)
            return
        start = settings.get("TRAVEL_START", table.plc.read("TRAVEL_START"))
        end = settings.get("TRAVEL_END", table.plc.read("TRAVEL_END"))
        margin = _p(params, "straight_margin", 60.0)
        low, high = start + margin, (start + end) / 2

        def on_straight() -> bool:
            # moving out on the straight, with the lift already at its level
            v = table.plc.read_many(["POSITION", "VELOCITY", "STATUS"])
            at_level = table.profile.register("STATUS").bit(int(v["STATUS"]), "at_setpoint")
            return low <= v["POSITION"] <= high and v["VELOCITY"] > 0 and at_level

        wait_until(
            on_straight,
            table.wall_timeout(self.expected_s(settings) * 3 + 10),
            interval=0.005,
            what=f"carriage on the straight ({low:g}-{high:g} mm)",
        )

    def home(self, table: Any) -> None:
        """Park the carriage at TRAVEL_START (a START then STOP returns it there)."""
        park = table.plc.read("TRAVEL_START")
        if abs(table.plc.read("POSITION") - park) <= 1.0:
            return
        table.command("START")
        table.stop_and_wait()
        wait_until(
            lambda: not table.plc.status().get("motor_enabled"),
            table.wall_timeout(60),
            what="carriage parked",
        )

    def stop_quantities(
        self, trace: Trace, params: dict[str, Any], settings: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Stop time and distance of the carriage, the lift after the stop, the park error."""
        t, x, lift = trace.t, trace[self.channel], trace[self.lift]
        tol = _p(params, "still_tolerance", 0.1)
        stop = analysis.stop_time(t, x, tolerance=tol)
        lift0 = analysis.level_before(t, lift)
        drop = _p(params, "lift_drop", 0.5)
        below = t[(t >= 0) & (lift < lift0 - drop)]
        lift_drop_time = float(below[0]) if len(below) else math.inf
        values = {
            "stop_time": stop,
            "stopping_distance": analysis.stopping_distance(t, x, window_end=1.0),
            "lift_after": analysis.max_after(t, lift, start=_p(params, "lift_by_s", 5.0)),
            "lift_drop_time": lift_drop_time,
            "park_error": self.final_error(trace, settings["TRAVEL_START"]),
        }
        return values, {"stop": stop, "lift -0.5 mm": lift_drop_time}

    def monitor_quantities(
        self, trace: Trace, params: dict[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """The furthest the carriage went."""
        return {"peak_position": analysis.peak(trace.t, trace[self.channel])}


class InversionBehaviour(Behaviour):
    """IT tables: the reference is the inversion angle (INC ANGL)."""

    channel = "ANGL"
    stop_rate_hz = 1000.0

    def expected_s(self, settings: dict[str, float]) -> float:
        """Time to rotate to ANGLE_SET."""
        return settings.get("ANGLE_SET", 90.0) / max(settings.get("RATE", 1.0), 0.1) + 2.0

    def _wait_condition(
        self, table: Any, settings: dict[str, float], params: dict[str, Any]
    ) -> None:
        if params.get("at", "setpoint") != "moving":
            super()._wait_condition(table, settings, params)
            return
        low, high = _p(params, "moving_from"), _p(params, "moving_to")

        def moving_in_band() -> bool:
            v = table.plc.read_many(["ANGLE", "ANGULAR_RATE"])
            return low <= v["ANGLE"] <= high and v["ANGULAR_RATE"] > 0

        wait_until(
            moving_in_band,
            table.wall_timeout(self.expected_s(settings) * 3 + 10),
            interval=0.005,
            what=f"moving head-down between {low:g} and {high:g} deg",
        )

    def home(self, table: Any) -> None:
        """Return an inverted table upright: ANGLE_SET 0 and START (ICD), then wait IDLE."""
        if abs(table.plc.read("ANGLE")) <= 0.3:
            return
        table.configure({"ANGLE_SET": 0.0, "HOLD_S": 0})
        table.command("START")
        wait_until(
            lambda: table.plc.status().get("at_setpoint") or table.state() == "IDLE",
            table.wall_timeout(200.0),
            what="back at 0 deg",
        )
        table.stop_and_wait()

    def stop_quantities(
        self, trace: Trace, params: dict[str, Any], settings: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Stop time, overtravel and drift of an e-stop; return error and rate of a return."""
        t, x = trace.t, trace[self.channel]
        values: dict[str, float] = {}
        marks: dict[str, float] = {}
        tol = _p(params, "still_tolerance", 0.05)
        stop = analysis.stop_time(t, x, tolerance=tol)
        values["stop_time"] = stop
        marks["stop"] = stop
        at = _p(params, "overtravel_at_s", 1.0)
        if t[-1] >= at:
            values["overtravel"] = analysis.stopping_distance(t, x, window_end=at)
            values["drift"] = abs(analysis.drift(t, x, start=at, end=float(t[-1])))
        values["return_error"] = abs(analysis.final_level(t, x))
        x0 = analysis.level_before(t, x)
        try:
            values["return_rate"] = abs(analysis.move_rate(t, x, start_level=x0, end_level=0.0))
        except analysis.AnalysisError:
            values["return_rate"] = math.nan
        return values, marks

    def monitor_quantities(
        self, trace: Trace, params: dict[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """The largest angle reached."""
        return {"peak_angle": analysis.peak(trace.t, trace[self.channel])}


BEHAVIOURS = {
    "traction": TractionBehaviour,
    "roller": RollerBehaviour,
    "inversion": InversionBehaviour,
}


def behaviour_for(profile: Any) -> Behaviour:
    """The behaviour object of a profile's table kind."""
    try:
        return BEHAVIOURS[profile.model.kind_name]()
    except KeyError:
        raise ConfigError(
            f"{profile.model.name}: no behaviour for table kind {profile.model.kind_name!r}; "
            f"known: {sorted(BEHAVIOURS)}"
        ) from None
