"""RT tables (roller): the reference is the carriage position (ENC POS) and the roller lift; the
nominal cycle period of the ICD is computed here and nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis
from ..bench.table import Table
from ..trace import Trace
from ..wait import wait_until
from .common import CONDITION_MARGIN_S, Procedure

# Device seconds the lift may take to reach its level after the carriage reached the far end:
# a bound on waiting, not a judged value.
LIFT_S = 5.0


def nominal_period(d: float, v: float, *, accel: float, dwell_total: float) -> float:
    """The ICD's nominal cycle period (plc-modbus.md): `T = 2 (d/v + v/a) + 1.0 s` with
    d = TRAVEL_END - TRAVEL_START, v = SPEED, a = `accel`, 1.0 s = `dwell_total`; the numbers
    come from the requirement's params."""
    return 2 * (d / v + v / accel) + dwell_total


def period_of(settings: Mapping[str, float], params: Mapping[str, Any]) -> float:
    """`nominal_period` for settings with TRAVEL_START, TRAVEL_END and SPEED and params with
    accel and dwell_total."""
    return nominal_period(
        settings["TRAVEL_END"] - settings["TRAVEL_START"],
        settings["SPEED"],
        accel=float(params["accel"]),
        dwell_total=float(params["dwell_total"]),
    )


@dataclass(frozen=True)
class Dwell:
    """The carriage standing at a reversal point: from `start` to `end` (device s after the
    trigger), at `position` (the mean ENC POS over it); `far` toward TRAVEL_END."""

    start: float
    end: float
    position: float
    far: bool


def reversal_dwells(
    t: np.ndarray, x: np.ndarray, *, midpoint: float, hysteresis: float, band: float
) -> list[Dwell]:
    """The dwells of every complete excursion beyond the travel midpoint, in time order.

    An excursion runs from one midpoint crossing to the next (far: rising then falling; near:
    falling then rising), so a reversal is found wherever the carriage turned, however far from
    TRAVEL_START / TRAVEL_END it did (that distance is what RT-PERF-03 judges, not a condition
    for finding it). Its dwell is the stretch of samples within `band` of the excursion's
    extreme. The park before START is no excursion (no crossing precedes it)."""
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    ok = ~np.isnan(x)
    tv, xv = t[ok], x[ok]
    rise, fall = analysis.crossings(tv, xv, threshold=midpoint, hysteresis=hysteresis)
    out: list[Dwell] = []
    for starts, ends, far in ((rise, fall, True), (fall, rise, False)):
        for a in starts:
            later = ends[ends > a]
            if not later.size:
                continue  # the excursion is still under way at the end of the trace
            i0, i1 = np.searchsorted(tv, a, side="left"), np.searchsorted(tv, later[0])
            seg = xv[i0:i1] if far else -xv[i0:i1]
            if seg.size == 0:
                continue
            idx = np.flatnonzero(seg >= seg.max() - band)
            still = slice(i0 + int(idx[0]), i0 + int(idx[-1]) + 1)
            out.append(
                Dwell(float(tv[still][0]), float(tv[still][-1]), float(np.mean(xv[still])), far)
            )
    return sorted(out, key=lambda d: d.start)


class RollerProcedure(Procedure):
    """Roller: motion is the carriage position; the stop also lowers the lift."""

    kind = "roller"
    channel = "POS"
    lift = "LIFT"
    motion_settings = ("TRAVEL_START", "TRAVEL_END", "SPEED")

    def expected_s(self, table: Table, settings: Mapping[str, float]) -> float:
        """Time to the far reversal from park, plus the lift."""
        v = self.motion_values(table, settings)
        return (v["TRAVEL_END"] - v["TRAVEL_START"]) / v["SPEED"] + LIFT_S

    def _wait_condition(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> None:
        if params.get("at", "setpoint") != "straight":
            super()._wait_condition(table, settings, params)
            return
        v = self.motion_values(table, settings)
        start, end = v["TRAVEL_START"], v["TRAVEL_END"]
        low, high = start + float(params["straight_margin"]), (start + end) / 2
        status = table.profile.register("STATUS")

        def on_straight() -> bool:
            # moving out on the straight, with the lift already at its level
            r = table.read_many(["POSITION", "VELOCITY", "STATUS"])
            at_level = status.bit(int(r["STATUS"]), "at_setpoint")
            return low <= r["POSITION"] <= high and r["VELOCITY"] > 0 and at_level

        wait_until(
            on_straight,
            table.wall_timeout(self.expected_s(table, settings) * 3 + CONDITION_MARGIN_S),
            interval=0.005,
            what=f"carriage on the straight ({low:g}-{high:g} mm)",
        )

    def home(self, table: Table) -> None:
        """Park the carriage at TRAVEL_START (a START then STOP returns it there); within the
        profile's [home] tolerance it is parked already."""
        park = table.read("TRAVEL_START")
        if abs(table.read("POSITION") - park) <= self.profile.home["tolerance"]:
            return
        table.command("START")
        table.stop_and_wait()
        wait_until(
            lambda: not table.status().get("motor_enabled"),
            table.wall_timeout(self.profile.home["timeout_s"]),
            what="carriage parked",
        )

    def stop_trace_s(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> float:
        """Device seconds of a safety stop's trace: params trace_s."""
        return float(params["trace_s"])

    def stop_quantities(
        self, trace: Trace, params: Mapping[str, Any], settings: Mapping[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Stop time and distance of the carriage, the lift after the stop, the park error
        (params still_tolerance, lift_drop, lift_by_s)."""
        t, x, lift = trace.t, trace[self.channel], trace[self.lift]
        stop = analysis.stop_time(t, x, tolerance=float(params["still_tolerance"]))
        lift0 = analysis.level_before(t, lift)
        drop = float(params["lift_drop"])
        lift_drop_time = analysis.first_crossing(t, lift, level=lift0 - drop, start=0.0)
        values = {
            "stop_time": stop,
            # requirements.md: Xf is the final level of the whole trace unless the row names a
            # window, and RT-SAF-01's stopping distance names none (a creep after 1 s counts)
            "stopping_distance": analysis.stopping_distance(t, x),
            "lift_after": analysis.max_after(t, lift, start=float(params["lift_by_s"])),
            "lift_drop_time": lift_drop_time,
            "park_error": self.final_error(trace, settings["TRAVEL_START"]),
        }
        return values, {"stop": stop, f"lift -{drop:g} mm": lift_drop_time}

    def monitor_quantities(
        self, trace: Trace, params: Mapping[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """The furthest the carriage went."""
        return {"peak_position": analysis.peak(trace.t, trace[self.channel])}
