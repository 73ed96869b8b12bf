"""What every table kind's procedure shares: arming an acquisition, reaching the setpoint, motion
as 'still' of the reference, and choosing the procedure of a profile's kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import analysis
from ..bench.table import Table
from ..profiles import Profile
from ..trace import Trace

# Bounds on waiting for a condition, in device seconds: twice the expected time plus this much.
# They decide nothing: a table that is late fails the wait, not a measurement.
CONDITION_MARGIN_S = 10.0
# After at_setpoint, device time before the provoking event (the reading has settled).
SETTLE_S = 0.5


@dataclass(frozen=True)
class Acquisition:
    """An armed acquisition on a measuring instrument."""

    meter: Any
    duration_s: float
    rate_hz: float

    def fetch(self, table: Table) -> Trace:
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
    table: Table | None = None,
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


class Procedure:
    """Common parts of a kind's procedure: settling at the setpoint, and motion as 'still' of
    the reference. Numbers come from the requirement's params (validated at load against
    rig/profiles/needs.py) and from the profile; there are no defaults here."""

    kind = ""
    channel = ""
    stop_rate_hz = 1000.0
    # the settings the time to reach the condition depends on (expected_s)
    motion_settings: tuple[str, ...] = ()

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def reach_condition(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> None:
        """Write the settings, START, and return once the table is in the condition the
        requirement names (params["at"]: setpoint | straight | moving; setpoint when absent)."""
        table.configure(dict(settings))
        table.command("START")
        self._wait_condition(table, settings, params)

    def _wait_condition(
        self, table: Table, settings: Mapping[str, float], params: Mapping[str, Any]
    ) -> None:
        table.wait_status(
            "at_setpoint", device_s=self.expected_s(table, settings) * 2 + CONDITION_MARGIN_S
        )
        table.wait_device(SETTLE_S)

    def motion_values(self, table: Table, settings: Mapping[str, float]) -> dict[str, float]:
        """The settings `expected_s` needs: from the requirement, or else the value the table
        holds now (what it will run with), never an assumed one."""
        return {
            name: float(settings[name]) if name in settings else float(table.read(name))
            for name in self.motion_settings
        }

    def expected_s(self, table: Table, settings: Mapping[str, float]) -> float:
        """Device seconds the table may take to reach its setpoint."""
        raise NotImplementedError

    def home(self, table: Table) -> None:
        """Bring the table to its rest position between tests (nothing by default)."""

    def motion(self, trace: Trace, *, start: float = 0.0, end: float | None = None) -> float:
        """Largest 100 ms mean away from the first over the window ('still' in the ICD)."""
        t = trace.t
        stop = float(t[-1]) if end is None else end
        return analysis.max_excursion(t, trace[self.channel], start=start, end=stop)

    def monitor_quantities(
        self, trace: Trace, params: Mapping[str, Any], trip: float | None
    ) -> dict[str, float | None]:
        """Quantities of a protective-monitor trip from the reference trace."""
        raise NotImplementedError

    def sensor_offset(self, settings: Mapping[str, float], params: Mapping[str, Any]) -> float:
        """SENSOR_OFFSET for the protective-monitor test: params sensor_offset (in the kind's
        primary unit)."""
        return float(params["sensor_offset"])

    def stop_quantities(
        self, trace: Trace, params: Mapping[str, Any], settings: Mapping[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Quantities of a safety stop; returns (quantities, instants to plot)."""
        raise NotImplementedError

    def final_error(self, trace: Trace, target: float) -> float:
        """|final level - target| of the reference."""
        return abs(analysis.final_level(trace.t, trace[self.channel]) - target)
