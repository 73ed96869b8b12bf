"""What differs between table kinds for the shared safety tests: reaching a condition, a stop,
motion. The bodies in suites/safety are one per requirement kind and call these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import analysis
from .errors import ConfigError
from .trace import Trace


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


class TractionBehaviour:
    """TT tables: the reference is cord tension; motion is tension above the release level."""

    channel = "FORC"
    stop_rate_hz = 1000.0

    def reach_condition(
        self, table: Any, settings: dict[str, float], *, settle_s: float = 0.5
    ) -> None:
        """Write the settings, START, wait until the table reports it is at its setpoint and
        has held there `settle_s` of device time."""
        table.configure(settings)
        table.command("START")
        ramp = settings.get("FORCE_SET", 890.0) / max(settings.get("RAMP_RATE", 10.0), 1.0)
        table.wait_status("at_setpoint", device_s=ramp * 2 + 10)
        table.wait_device(settle_s)

    def stop_quantities(
        self, trace: Trace, params: dict[str, Any]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Reaction and release of a safety stop; returns (quantities, instants to plot)."""
        t, f = trace.t, trace[self.channel]
        level = float(params.get("release_level", 15.0))
        x0 = analysis.level_before(t, f)
        reaction = analysis.reaction_time(t, f, x0=x0)
        release = analysis.release_time(t, f, threshold=level)
        after = float(params.get("release_limit_s", 3.0))
        values = {
            "reaction_time": reaction,
            "release_time": release,
            "force_after_release": analysis.max_after(t, f, start=after),
            "level_before": x0,
        }
        return values, {"reaction": reaction, "release": release}

    def motion(self, trace: Trace, *, start: float = 0.0, end: float | None = None) -> float:
        """Peak tension in the window: 'nothing moves' means it stays at or below 15 N."""
        return analysis.peak(trace.t, trace[self.channel], start=start, end=end)


BEHAVIOURS = {"traction": TractionBehaviour}


def behaviour_for(profile: Any) -> Any:
    """The behaviour object of a profile's table kind."""
    try:
        return BEHAVIOURS[profile.model.kind_name]()
    except KeyError:
        raise ConfigError(
            f"{profile.model.name}: no behaviour for table kind {profile.model.kind_name!r}; "
            f"known: {sorted(BEHAVIOURS)}"
        ) from None
