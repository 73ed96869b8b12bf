"""IT tables (inversion): the reference is the inversion angle (INC ANGL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import analysis
from ..bench.table import Table
from ..errors import DeviceError
from ..trace import Trace
from ..wait import wait_until
from .common import CONDITION_MARGIN_S, Procedure

# Device seconds of acceleration and deceleration at the ends of a move: a bound on waiting and
# on the length of a step's trace, not a judged value.
RAMPS_S = 2.0


def return_bound_s(angle: float, rate: float, params: Mapping[str, Any]) -> float:
    """Device seconds a patient stop's return to 0 is waited for: the trapezoidal rotation the
    ICD names (plc-modbus.md: back to 0 at RATE, 10 deg/s2 = params accel) from `angle`,
    `angle / rate + rate / accel`, times 1 + params return_margin, plus params return_settle_s
    at rest for the final level. A table slower than RATE / (1 + return_margin) is not back
    within it, and is judged as not having returned."""
    nominal = angle / rate + rate / float(params["accel"])
    return nominal * (1.0 + float(params["return_margin"])) + float(params["return_settle_s"])


class InversionProcedure(Procedure):
    """Inversion: motion is the frame angle; a stop is judged by overtravel and drift."""

    kind = "inversion"
    channel = "ANGL"
    motion_settings = ("ANGLE_SET", "RATE")

    def expected_s(self, table: Table, settings: Mapping[str, float]) -> float:
        """Time to rotate to ANGLE_SET at RATE."""
        v = self.motion_values(table, settings)
        return v["ANGLE_SET"] / v["RATE"] + RAMPS_S

    def _wait_condition(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> None:
        if params.get("at", "setpoint") != "moving":
            super()._wait_condition(table, settings, params)
            return
        low, high = float(params["moving_from"]), float(params["moving_to"])

        def moving_in_band() -> bool:
            v = table.read_many(["ANGLE", "ANGULAR_RATE"])
            return low <= v["ANGLE"] <= high and v["ANGULAR_RATE"] > 0

        wait_until(
            moving_in_band,
            table.wall_timeout(self.expected_s(table, settings) * 3 + CONDITION_MARGIN_S),
            interval=0.005,
            what=f"moving head-down between {low:g} and {high:g} deg",
        )

    def home(self, table: Table) -> None:
        """Return an inverted table upright: ANGLE_SET 0 and START (ICD), then wait IDLE; within
        the profile's [home] tolerance it is upright already."""
        if abs(table.read("ANGLE")) <= self.profile.home["tolerance"]:
            return
        table.configure({"ANGLE_SET": 0.0, "HOLD_S": 0})
        table.command("START")
        reached = wait_until(
            lambda: (
                "at_setpoint"
                if table.status().get("at_setpoint")
                else (s := table.state()) in ("IDLE", "FAULT", "ESTOP") and s
            ),
            table.wall_timeout(self.profile.home["timeout_s"]),
            what="back at 0 deg",
        )
        if reached in ("FAULT", "ESTOP"):
            # issue 8 finding 6: a fault ends the wait at once (not after home's timeout), and
            # an unintended COMM_LOSS says whose it was
            error = DeviceError(
                f"the table went to {reached} (FAULT {table.plc.fault()}) returning upright"
            )
            cause = table.unintended_comm_loss()
            if cause is not None:
                raise cause from error
            raise error
        table.stop_and_wait()

    def stop_trace_s(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> float:
        """Device seconds of a safety stop's trace: params trace_s for an e-stop; for a patient
        stop, which the ICD gives no time, what the return must physically take (from the
        present angle at RATE, `return_bound_s`)."""
        if params["relay"] != "patient":
            return float(params["trace_s"])
        rate = self.motion_values(table, settings)["RATE"]
        return return_bound_s(abs(table.read("ANGLE")), rate, params)

    def stop_quantities(
        self, trace: Trace, params: Mapping[str, Any], settings: Mapping[str, float]
    ) -> tuple[dict[str, float | None], dict[str, float]]:
        """Stop time, overtravel and drift of an e-stop; return error and rate of a return
        (params still_tolerance, overtravel_at_s)."""
        t, x = trace.t, trace[self.channel]
        values: dict[str, float | None] = {}
        marks: dict[str, float] = {}
        stop = analysis.stop_time(t, x, tolerance=float(params["still_tolerance"]))
        values["stop_time"] = stop
        marks["stop"] = stop
        at = float(params["overtravel_at_s"])
        if t[-1] >= at:
            values["overtravel"] = analysis.stopping_distance(t, x, window_end=at)
            values["drift"] = abs(analysis.drift(t, x, start=at, end=float(t[-1])))
        values["return_error"] = abs(analysis.final_level(t, x))
        x0 = analysis.level_before(t, x)
        try:
            values["return_rate"] = abs(analysis.move_rate(t, x, start_level=x0, end_level=0.0))
        except analysis.AnalysisError:
            # the trace is a complete record (the body checks that first): no return in it
            values["return_rate"] = None
        return values, marks

    def monitor_quantities(
        self, trace: Trace, params: Mapping[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """The largest angle reached."""
        return {"peak_angle": analysis.peak(trace.t, trace[self.channel])}
