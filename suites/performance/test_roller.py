"""RT-600 performance requirements: cycle timing, speed, reversals, lift, PLC reading, session."""

import time

import numpy as np
import pytest

from rig import analysis
from rig.procedures import RollerProcedure, arm
from rig.procedures.events import EventsMissed, enough
from rig.procedures.roller import period_of, reversal_dwells

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
        self._done[i] = (settings, trace, duration)
        return self._done[i]


@pytest.fixture(scope="session")
def roller_runs():
    """Cycle runs, measured once per session."""
    return RollerRuns()


def _runs(profile, requirement, table, meter, roller_runs):
    source = profile.requirement(requirement.params.get("runs_of", requirement.id))
    for i in range(len(source.params["speeds"])):
        settings, trace, duration = roller_runs.get(table, meter, source, i)
        yield source, settings, trace, duration


@pytest.mark.verifies("roller_cycles")
def test_cycle_period(requirement, check, profile, table, position_meter, roller_runs):
    """Mean period and jitter between midpoint crossings toward TRAVEL_END."""
    n = int(requirement.params["periods"])
    hysteresis = float(requirement.params["hysteresis"])
    for source, s, trace, duration in _runs(
        profile, requirement, table, position_meter, roller_runs
    ):
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
        if not enough(
            check,
            "mean_period",
            len(periods),
            n,
            trace,
            "POS",
            until=duration,
            what=f"periods of the {label} run",
            d=d,
            v=v,
            T=nominal,
        ):
            continue
        check.measure("mean_period", float(np.mean(periods)), d=d, v=v, T=nominal, note=note)
        check.measure("jitter", analysis.jitter(periods), d=d, v=v, T=nominal, note=note)


@pytest.mark.verifies("roller_speed")
def test_carriage_speed(requirement, check, profile, table, position_meter, roller_runs):
    """Speed of the straight traversals (at least `margin` from both reversal points) of the
    runs' periods: the first `periods` out and the first `periods` back, each judged."""
    margin = float(requirement.params["margin"])
    for source, s, trace, duration in _runs(
        profile, requirement, table, position_meter, roller_runs
    ):
        n = int(source.params["periods"])
        low, high = s["TRAVEL_START"] + margin, s["TRAVEL_END"] - margin
        speeds = analysis.straight_speeds(trace.t, trace["POS"], low=low, high=high)
        label = f"{s['TRAVEL_START']:g}-{s['TRAVEL_END']:g}mm-{s['SPEED']:g}mmps"
        check.trace(f"straight-{label}", trace, channel="POS", lines={"low": low, "high": high})
        for direction, sign in (("out", 1.0), ("back", -1.0)):
            these = [float(sp) for sp in speeds if sp * sign > 0]
            if not enough(
                check,
                "straight_speed",
                len(these),
                n,
                trace,
                "POS",
                until=duration,
                what=f"traversals {direction} of the {label} run",
                v=s["SPEED"],
            ):
                continue
            for k, sp in enumerate(these[:n]):
                check.measure(
                    "straight_speed",
                    abs(sp),
                    v=s["SPEED"],
                    note=f"{label} traversal {direction} {k + 1} of {n}",
                )


@pytest.mark.verifies("roller_reversals")
def test_reversal_points(requirement, check, profile, table, position_meter, roller_runs):
    """The far and near reversals of the runs' periods (the first `periods` at each end)
    against TRAVEL_END and TRAVEL_START."""
    hysteresis = float(requirement.params["hysteresis"])
    for source, s, trace, duration in _runs(
        profile, requirement, table, position_meter, roller_runs
    ):
        n = int(source.params["periods"])
        mid = (s["TRAVEL_START"] + s["TRAVEL_END"]) / 2
        # the park before START is no reversal: no midpoint crossing precedes it
        far, near = analysis.reversal_points(
            trace.t, trace["POS"], midpoint=mid, hysteresis=hysteresis
        )
        label = f"{s['TRAVEL_START']:g}-{s['TRAVEL_END']:g}mm-{s['SPEED']:g}mmps"
        check.trace(
            f"reversals-{label}",
            trace,
            channel="POS",
            lines={"TRAVEL_START": s["TRAVEL_START"], "TRAVEL_END": s["TRAVEL_END"]},
        )
        for end, found, target in (("far", far, "TRAVEL_END"), ("near", near, "TRAVEL_START")):
            if not enough(
                check,
                "reversal_error",
                len(found),
                n,
                trace,
                "POS",
                until=duration,
                what=f"{end} reversals of the {label} run",
            ):
                continue
            for k, x in enumerate(found[:n]):
                check.measure(
                    "reversal_error",
                    abs(float(x) - s[target]),
                    note=f"{label} {end} reversal {k + 1} of {n} at {x:.2f} mm",
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


# ENC samples at each end of a dwell not used for the comparison (the carriage settling in).
DWELL_EDGE_S = 0.05
# A dwell is the stretch of ENC samples within this of the excursion's extreme (noise ~0.01 mm).
DWELL_BAND_MM = 0.2


@pytest.mark.verifies("roller_plc_reading")
def test_plc_position(requirement, check, table, position_meter):
    """PLC POSITION against ENC while still: at park, and in each dwell at both reversal points
    of two cycles, 5 comparisons (PLC samples placed in the ENC trace by UPTIME_MS, relative
    to the trigger). Every dwell is found where the carriage turned, however far out."""
    s = requirement.settings
    cycles = int(requirement.params["cycles"])
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
        note=f"comparison 1 of {1 + 2 * cycles}, at park: PLC {np.mean(plc):.2f} mm, "
        f"ENC {np.mean(enc):.2f} mm",
    )
    period = period_of(s, requirement.params)
    duration = (cycles + 0.3) * period * 1.1
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
    dwells = reversal_dwells(
        t,
        x,
        midpoint=mid,
        hysteresis=float(requirement.params["hysteresis"]),
        band=DWELL_BAND_MM,
    )
    check.trace(
        "dwells",
        trace,
        channel="POS",
        lines={"midpoint": mid},
        marks={f"dwell {k + 1}": d.start for k, d in enumerate(dwells[: 2 * cycles])},
    )
    far = [d for d in dwells if d.far]
    near = [d for d in dwells if not d.far]
    for end, found in (("far", far), ("near", near)):
        if not enough(
            check,
            "plc_error",
            len(found),
            cycles,
            trace,
            "POS",
            until=duration,
            what=f"dwells at the {end} reversal",
        ):
            return
    judged = sorted(far[:cycles] + near[:cycles], key=lambda d: d.start)
    for k, d in enumerate(judged):
        a, b = d.start + DWELL_EDGE_S, d.end - DWELL_EDGE_S
        during = [(p, vel) for (ts, p, vel) in samples if a <= ts <= b]
        where = f"comparison {k + 2} of {1 + 2 * cycles}, {'far' if d.far else 'near'} dwell"
        if not during:
            # the host's polling did not land inside the dwell: the rig missed it
            raise EventsMissed(
                f"{requirement.id}: no PLC reading landed inside the {where} "
                f"({a:.3f}-{b:.3f} s); the host polled too slowly"
            )
        inside = [p for p, vel in during if vel == 0]
        if not inside:
            check.measure(
                "plc_error",
                None,
                note=f"{where}: the PLC reports VELOCITY non-zero while the ENC stands still",
            )
            continue
        check.measure(
            "plc_error",
            abs(float(np.mean(inside)) - d.position),
            note=f"{where} at {d.position:.2f} mm: {len(inside)} PLC readings",
        )


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
    complete = int(len(rises) > 0 and len(falls) > 0 and falls[-1] > rises[0])
    if not enough(
        check, "session_width", complete, 1, trace, "LIFT", until=duration, what="sessions"
    ):
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
