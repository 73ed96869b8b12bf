"""RT-600 performance requirements: cycle timing, speed, reversals, lift, PLC reading, session."""

import time

import numpy as np
import pytest

from rig import analysis
from rig.procedures import RollerProcedure, arm
from rig.procedures.roller import period_of

pytestmark = pytest.mark.performance

ENC_RATE_HZ = 50.0


class RollerRuns:
    """The cycle runs of RT-PERF-01, measured once and judged by PERF-01, -02 and -03."""

    def __init__(self):
        self._done = {}

    def get(self, table, meter, requirement, i):
        if i in self._done:
            return self._done[i]
        p = requirement.params
        start, end, speed = p["travel_start"][i], p["travel_end"][i], p["speeds"][i]
        settings = {
            **requirement.settings,
            "TRAVEL_START": start,
            "TRAVEL_END": end,
            "SPEED": speed,
        }
        period = period_of(settings, p)
        table.ready()
        table.configure(settings)
        here = table.read("POSITION")
        approach = abs(here - start) / speed + 2.0
        # the periods asked for need one boundary more, plus the approach, with margin
        duration = approach + (int(p["periods"]) + 1.5) * period * 1.1
        d, v = end - start, speed
        env = {"d": d, "v": v, "T": period}
        acq = arm(meter, duration_s=duration, rate_hz=ENC_RATE_HZ, serves=requirement, env=env)
        meter.trigger()
        table.command("START")
        trace = acq.fetch(table)
        table.stop_and_wait()
        self._done[i] = (settings, trace)
        return self._done[i]


@pytest.fixture(scope="session")
def roller_runs():
    """Cycle runs, measured once per session."""
    return RollerRuns()


def _runs(profile, requirement, table, meter, roller_runs):
    source = profile.requirement(requirement.params.get("runs_of", requirement.id))
    for i in range(len(source.params["speeds"])):
        settings, trace = roller_runs.get(table, meter, source, i)
        yield source, settings, trace


@pytest.mark.verifies("roller_cycles")
def test_cycle_period(requirement, check, profile, table, position_meter, roller_runs):
    """Mean period and jitter between midpoint crossings toward TRAVEL_END."""
    n = int(requirement.params["periods"])
    hysteresis = float(requirement.params["hysteresis"])
    for source, s, trace in _runs(profile, requirement, table, position_meter, roller_runs):
        d, v = s["TRAVEL_END"] - s["TRAVEL_START"], s["SPEED"]
        mid = (s["TRAVEL_START"] + s["TRAVEL_END"]) / 2
        bounds = analysis.cycle_boundaries(
            trace.t, trace["POS"], midpoint=mid, hysteresis=hysteresis
        )
        periods = analysis.cycle_periods(bounds)[:n]
        label = f"{s['TRAVEL_START']:g}-{s['TRAVEL_END']:g}mm-{v:g}mmps"
        check.trace(
            label,
            trace,
            channel="POS",
            marks={f"boundary {k + 1}": b for k, b in enumerate(bounds[: n + 1])},
            lines={"midpoint": mid},
        )
        nominal = period_of(s, source.params)
        note = (
            f"periods {', '.join(f'{p:.3f}' for p in periods)} s; nominal T {nominal:.3f} s"
            f"; travel {label}"
        )
        if len(periods) < n:
            check.measure(
                "mean_period",
                None,
                d=d,
                v=v,
                T=nominal,
                note=f"only {len(periods)} periods in the trace; {n} needed. {note}",
            )
            continue
        check.measure("mean_period", float(np.mean(periods)), d=d, v=v, T=nominal, note=note)
        check.measure("jitter", analysis.jitter(periods), d=d, v=v, T=nominal, note=note)


@pytest.mark.verifies("roller_speed")
def test_carriage_speed(requirement, check, profile, table, position_meter, roller_runs):
    """Speed of every straight traversal (at least `margin` from both reversal points)."""
    margin = float(requirement.params["margin"])
    for _, s, trace in _runs(profile, requirement, table, position_meter, roller_runs):
        speeds = analysis.straight_speeds(
            trace.t, trace["POS"], low=s["TRAVEL_START"] + margin, high=s["TRAVEL_END"] - margin
        )
        if len(speeds) == 0:
            check.measure("straight_speed", None, v=s["SPEED"], note="no straight traversal")
        for k, sp in enumerate(speeds):
            check.measure(
                "straight_speed",
                abs(float(sp)),
                v=s["SPEED"],
                note=f"traversal {k + 1} {'out' if sp > 0 else 'back'}",
            )


@pytest.mark.verifies("roller_reversals")
def test_reversal_points(requirement, check, profile, table, position_meter, roller_runs):
    """Every far and near reversal against TRAVEL_END and TRAVEL_START."""
    hysteresis = float(requirement.params["hysteresis"])
    for _, s, trace in _runs(profile, requirement, table, position_meter, roller_runs):
        mid = (s["TRAVEL_START"] + s["TRAVEL_END"]) / 2
        far, near = analysis.reversal_points(
            trace.t, trace["POS"], midpoint=mid, hysteresis=hysteresis
        )
        # the first near reversal is the park before START, not a reversal of the cycle
        for k, x in enumerate(far):
            check.measure(
                "reversal_error",
                abs(float(x) - s["TRAVEL_END"]),
                note=f"far reversal {k + 1} at {x:.2f} mm",
            )
        for k, x in enumerate(near):
            check.measure(
                "reversal_error",
                abs(float(x) - s["TRAVEL_START"]),
                note=f"near reversal {k + 1} at {x:.2f} mm",
            )


@pytest.mark.verifies("roller_lift")
def test_roller_lift(requirement, check, table, position_meter):
    """Settled lift at each INTENSITY, from the ENC LIFT channel."""
    per = float(requirement.params["mm_per_level"])
    lift_speed = float(requirement.params["lift_speed"])
    for level in requirement.params["levels"]:
        table.ready()
        table.configure({**requirement.settings, "INTENSITY": level})
        target, _ = check.band("settled_lift", level=level)
        duration = target / lift_speed / 0.75 + 8.0 if target else 8.0
        acq = arm(position_meter, duration_s=duration, rate_hz=ENC_RATE_HZ)
        position_meter.trigger()
        table.command("START")
        trace = acq.fetch(table)
        table.stop_and_wait()
        check.measure_settled(
            "settled_lift",
            trace,
            "LIFT",
            label=f"level{level:g}",
            lines={"level": per * level},
            level=level,
        )


@pytest.mark.verifies("roller_plc_reading")
def test_plc_position(requirement, check, table, position_meter):
    """PLC POSITION against ENC while still: at park, and in each dwell of two cycles (PLC
    samples placed in the ENC trace by UPTIME_MS, relative to the trigger)."""
    s = requirement.settings
    table.configure(s)
    # the park the comparison starts from is the one just configured
    RollerProcedure(table.profile).home(table)
    plc, enc = [], []
    for _ in range(5):
        plc.append(table.read("POSITION"))
        enc.append(position_meter.measure("POS"))
    check.measure(
        "plc_error",
        abs(np.mean(plc) - np.mean(enc)),
        note=f"at park: PLC {np.mean(plc):.2f} mm, ENC {np.mean(enc):.2f} mm",
    )
    period = period_of(s, requirement.params)
    duration = (int(requirement.params["cycles"]) + 0.3) * period * 1.1
    acq = arm(position_meter, duration_s=duration, rate_hz=200.0)
    position_meter.trigger()
    u_trigger = table.uptime_ms()  # the trigger was at or before this reading
    table.command("START")
    samples = []
    wall_end = time.monotonic() + table.wall_timeout(duration + 2)
    while time.monotonic() < wall_end:
        v = table.read_many(["UPTIME_MS", "POSITION", "VELOCITY"])
        samples.append(((v["UPTIME_MS"] - u_trigger) / 1000.0, v["POSITION"], v["VELOCITY"]))
        if samples[-1][0] > duration and position_meter.state == "DONE":
            break
    trace = acq.fetch(table)
    table.command("STOP")
    t, x = trace.t, trace["POS"]
    mid = (s["TRAVEL_START"] + s["TRAVEL_END"]) / 2
    check.trace("dwells", trace, channel="POS", lines={"midpoint": mid})
    dwells = _dwells(t, x, s["TRAVEL_START"], s["TRAVEL_END"])
    for k, (a, b, enc_mean) in enumerate(dwells[: 2 * int(requirement.params["cycles"])]):
        inside = [p for (ts, p, vel) in samples if a + 0.05 <= ts <= b - 0.05 and vel == 0]
        if not inside:
            check.measure("plc_error", None, note=f"dwell {k + 1}: no PLC reading inside it")
            continue
        check.measure(
            "plc_error",
            abs(float(np.mean(inside)) - enc_mean),
            note=f"dwell {k + 1} at {enc_mean:.2f} mm: {len(inside)} PLC readings",
        )


def _dwells(t, x, start, end, band=0.2):
    """(start, end, mean) of each stretch, after the carriage first moved, where the ENC
    position stands at a reversal point (within `band` of that visit's extreme)."""
    moved = np.flatnonzero(np.abs(x - x[0]) > 1.0)
    first_move = t[moved[0]] if len(moved) else np.inf
    out = []
    for target in (start, end):
        idx = np.flatnonzero(np.abs(x - target) <= 3.0)  # healthy reversals are within 2 mm
        for r in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if len(idx) else []:
            seg = x[r]
            extreme = seg.max() if target == end else seg.min()
            still = r[np.abs(seg - extreme) <= band]
            if len(still) > 5 and t[still[0]] > first_move:
                out.append((float(t[still[0]]), float(t[still[-1]]), float(np.mean(x[still]))))
    return sorted(out)


@pytest.mark.verifies("roller_session")
def test_session(requirement, check, table, position_meter):
    """Session width in the lift trace, and CYCLES against the round trips in the POS trace."""
    s = requirement.settings
    table.configure(s)
    duration = s["SESSION_S"] * 1.1 + 10.0
    acq = arm(position_meter, duration_s=duration, rate_hz=ENC_RATE_HZ, serves=requirement)
    position_meter.trigger()
    table.command("START")
    trace = acq.fetch(table)
    table.wait_state("IDLE", device_s=120)
    cycles = table.read("CYCLES")
    t, lift, x = trace.t, trace["LIFT"], trace["POS"]
    level = float(requirement.params["mm_per_level"]) * s["INTENSITY"]
    rises, falls = analysis.crossings(t, lift, threshold=level / 2, hysteresis=0.1 * level)
    if len(rises) == 0 or len(falls) == 0:
        check.measure("session_width", None, note="no complete session in the lift trace")
        return
    end = float(falls[-1])
    # the session ended when the lift left its level (the 50 % crossing comes later)
    at_level = t[(t < end) & (lift >= level - 0.2)]
    ended = float(at_level[-1]) if len(at_level) else end
    check.trace(
        "session",
        trace,
        channel="POS",
        marks={"start": rises[0], "session end": ended, "50 % fall": end},
    )
    check.measure("session_width", end - float(rises[0]))
    mid = (s["TRAVEL_START"] + s["TRAVEL_END"]) / 2
    hysteresis = float(requirement.params["hysteresis"])
    _, back = analysis.crossings(t, x, threshold=mid, hysteresis=hysteresis)
    trips = 0
    for fall in back:  # each return past the midpoint that reached park before the session end
        arrived = t[(t > fall) & (x <= s["TRAVEL_START"] + 1.0)]
        if len(arrived) and arrived[0] < ended:
            trips += 1
    check.measure(
        "cycle_count_error",
        cycles - trips,
        note=f"PLC CYCLES {cycles}, round trips in the ENC trace {trips}",
    )
