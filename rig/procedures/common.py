"""What every table kind's procedure shares: arming an acquisition at the rate the sample-rate
rule gives, reaching the setpoint, motion as 'still' of the reference."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import analysis
from ..bench.table import Table
from ..errors import ConfigError, RigError
from ..profiles import Profile
from ..profiles.model import Requirement
from ..trace import Trace

# Bounds on waiting for a condition, in device seconds: twice the expected time plus this much.
# They decide nothing: a table that is late fails the wait, not a measurement.
CONDITION_MARGIN_S = 10.0
# After at_setpoint, device time before the provoking event (the reading has settled).
SETTLE_S = 0.5


# The sample-rate rule (docs/icd-readings.md, C7): the sample period is at most
# 1/PERIODS_PER_LIMIT of the tightest timing limit the acquisition serves. Each event time is
# late by less than one period (rig/analysis.py), so the sampling costs a verdict at most 5 % of
# its limit, and its rectangular contribution to an expanded uncertainty (k = 2, 2 period /
# sqrt(3)) is limit / 17.3 (TUR 17:1 from sampling alone, well above ILAC-G8's 4:1).
PERIODS_PER_LIMIT = 20
# ACQuire:RATE and ACQuire:POINts ranges (instruments-scpi.md)
MIN_RATE_HZ = 10.0
MAX_RATE_HZ = 10000.0
MAX_POINTS = 200_000
# rates are rounded up to a multiple of this: a round figure in the record, never below the rule
RATE_STEP_HZ = 10.0
# With no timing limit and no rate named: ten samples in each of the ICD's 100 ms means.
BLOCK_RATE_HZ = 100.0
# Measured by the PLC's clock registers, not by instrument samples: the sample rate serves none
# of them (their resolution is the PLC's 1 ms; the host round trip is the lead's, rig/plc.py).
CLOCK_TIMED = frozenset({"fault_time", "answer_time"})


def timing_limit(requirement: Requirement, env: Mapping[str, float] | None = None) -> float | None:
    """The tightest timing limit of `requirement` in seconds, or None when it judges no time
    from samples.

    Per measurement in seconds (those in CLOCK_TIMED excepted): a limit on one side (e.g.
    reaction time at most 0.100 s) is that limit; one on both sides (a width within 0.5 s of
    8 s, a period within 2 % of T) is its half-width, the time the verdict turns on. `env`
    binds the variables a limit needs (e.g. RT-PERF-01's T of the run).
    """
    limits = []
    for spec in requirement.measurements:
        if spec.unit != "s" or spec.name in CLOCK_TIMED or spec.equals is not None:
            continue
        try:
            low, high = spec.limits(env)
        except RigError as e:
            raise ConfigError(
                f"requirement {requirement.id}: the timing limit of {spec.name!r} cannot be "
                f"evaluated for the sample rate ({e})"
            ) from None
        if low is not None and high is not None:
            limits.append((high - low) / 2.0)
        elif high is not None or low is not None:
            limits.append(abs(high if high is not None else low))  # type: ignore[arg-type]
    positive = [x for x in limits if x > 0]
    return min(positive) if positive else None


def sample_rate(
    *,
    duration_s: float,
    pretrigger_s: float = 0.0,
    timing_limit_s: float | None = None,
    floor_hz: float | None = None,
    what: str = "acquisition",
) -> float:
    """The sample rate of an acquisition, by the rule (docs/icd-readings.md, C7).

    Rate = PERIODS_PER_LIMIT / timing_limit_s (the period at most 1/20 of the tightest timing
    limit served), at least `floor_hz` (what the acquisition's other quantities need, e.g. a
    slope fitted over enough samples; with neither given, BLOCK_RATE_HZ: ten samples to each
    100 ms mean) and at least 10 Hz, rounded up to a multiple of 10 Hz.
    The instrument's bounds decide the rest: a rule that asks for more than 10 kHz, or for more
    than 200000 points over the acquisition, is a ConfigError naming the limit (a coarser
    acquisition would be a weaker verdict, never silently taken); a floor that does not fit is
    lowered to what fits, not below the rule's rate.
    """
    if timing_limit_s is None and floor_hz is None:
        floor_hz = BLOCK_RATE_HZ
    span = duration_s + pretrigger_s
    need = MIN_RATE_HZ
    if timing_limit_s is not None:
        if not timing_limit_s > 0:
            raise ConfigError(f"{what}: timing limit {timing_limit_s!r} s is not > 0")
        need = max(need, PERIODS_PER_LIMIT / timing_limit_s)
    rule = _round_up(need)
    if rule > MAX_RATE_HZ:
        raise ConfigError(
            f"{what}: a timing limit of {timing_limit_s:g} s needs {rule:g} Hz "
            f"({PERIODS_PER_LIMIT} samples per limit); the instrument samples at most "
            f"{MAX_RATE_HZ:g} Hz"
        )
    fits = math.floor((MAX_POINTS - 1) / span / RATE_STEP_HZ) * RATE_STEP_HZ if span > 0 else 1e9
    if rule > fits:
        raise ConfigError(
            f"{what}: {span:g} s at {rule:g} Hz (timing limit {timing_limit_s:g} s) is more than "
            f"the instrument's {MAX_POINTS} points"
        )
    rate = max(rule, _round_up(floor_hz)) if floor_hz is not None else rule
    return min(rate, max(rule, fits), MAX_RATE_HZ)


def _round_up(rate_hz: float) -> float:
    # 1e-9 keeps 200.0000000001 (20 / 0.1 in floats) at 200
    return math.ceil(rate_hz / RATE_STEP_HZ - 1e-9) * RATE_STEP_HZ


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
    rate_hz: float | None = None,
    serves: Requirement | None = None,
    env: Mapping[str, float] | None = None,
    pretrigger_s: float = 0.0,
    source: str = "BUS",
    table: Table | None = None,
) -> Acquisition:
    """Configure and arm an acquisition of `duration_s` after the trigger.

    The sample rate is :func:`sample_rate`'s: from the tightest timing limit of the requirement
    the acquisition `serves` (with `env` binding the variables of its limits), at least
    `rate_hz` (the rate the acquisition's other quantities need). With `table` given and a
    pre-trigger asked for, return only once the PLC clock shows the pre-trigger time has passed
    since arming, so the samples before the trigger are real.
    """
    limit = timing_limit(serves, env) if serves is not None else None
    what = f"{serves.id} acquisition" if serves is not None else "acquisition"
    rate = sample_rate(
        duration_s=duration_s,
        pretrigger_s=pretrigger_s,
        timing_limit_s=limit,
        floor_hz=rate_hz,
        what=what,
    )
    meter.configure(rate=rate, duration_s=duration_s, pretrigger_s=pretrigger_s, source=source)
    meter.arm()
    if table is not None and pretrigger_s > 0:
        table.wait_device(pretrigger_s * 1.2)
    return Acquisition(meter, duration_s, rate)


class Procedure:
    """Common parts of a kind's procedure: settling at the setpoint, and motion as 'still' of
    the reference. Numbers come from the requirement's params (validated at load against
    rig/profiles/needs.py) and from the profile; there are no defaults here."""

    kind = ""
    channel = ""
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
