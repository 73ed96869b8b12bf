"""TT tables (traction): the reference is cord tension; a stop is judged by its reaction and the
release below the params' release level."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import analysis
from ..bench.table import Table
from ..trace import Trace
from .common import Procedure


class TractionProcedure(Procedure):
    """Traction: motion is tension (nothing moves while the cord stays slack)."""

    kind = "traction"
    channel = "FORC"
    motion_settings = ("FORCE_SET", "RAMP_RATE")

    def expected_s(self, table: Table, settings: Mapping[str, float]) -> float:
        """Ramp time to FORCE_SET at RAMP_RATE."""
        v = self.motion_values(table, settings)
        return v["FORCE_SET"] / v["RAMP_RATE"]

    def stop_trace_s(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> float:
        """Device seconds of a safety stop's trace: params trace_s."""
        return float(params["trace_s"])

    def stop_quantities(
        self, trace: Trace, params: Mapping[str, Any], settings: Mapping[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Reaction and release of a safety stop (params release_level, release_limit_s)."""
        t, f = trace.t, trace[self.channel]
        x0 = analysis.level_before(t, f)
        reaction = analysis.reaction_time(t, f, x0=x0)
        release = analysis.release_time(t, f, threshold=float(params["release_level"]))
        values = {
            "reaction_time": reaction,
            "release_time": release,
            "force_after_release": analysis.max_after(t, f, start=float(params["release_limit_s"])),
        }
        return values, {"reaction": reaction, "release": release}

    def motion(self, trace: Trace, *, start: float = 0.0, end: float | None = None) -> float:
        """Peak tension in the window: the requirement's limit says what 'nothing moves' is."""
        return analysis.peak(trace.t, trace[self.channel], start=start, end=end)

    def sensor_offset(self, settings: Mapping[str, float], params: Mapping[str, Any]) -> float:
        """A fraction (params offset_fraction) of the FORCE_SET the offset fools the controller
        about."""
        return float(params["offset_fraction"]) * float(settings["FORCE_SET"])

    def monitor_quantities(
        self, trace: Trace, params: Mapping[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """Peak force and the release (below params release_level) after the trip."""
        t, f = trace.t, trace[self.channel]
        release = analysis.release_time(t, f, threshold=float(params["release_level"]))
        return {
            "peak_force": analysis.peak(t, f),
            "release_after_trip": None if trip is None else release - trip,
            "release": release,
        }
