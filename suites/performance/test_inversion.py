"""IT-90 performance requirements: settled angle, rotation rate, overshoot, hold, PLC reading."""

import pytest

from rig import analysis
from rig.procedures import InversionProcedure, arm
from rig.procedures.events import enough

from .steps import steps_of

pytestmark = pytest.mark.performance

INC_RATE_HZ = 100.0


def _moves(profile, requirement, table, inclinometer, steps):
    source = profile.requirement(requirement.params.get("moves_of", requirement.id))
    kind = InversionProcedure(profile)
    for settings in steps_of(source, "ANGLE_SET"):
        yield steps.get(table, inclinometer, kind, settings, plc_register="ANGLE")


@pytest.mark.verifies("settled_angle")
def test_settled_angle(requirement, check, profile, table, inclinometer, steps):
    """Settled angle at each ANGLE_SET, from the INC, against the profile's limit."""
    for move in _moves(profile, requirement, table, inclinometer, steps):
        setpoint = move.setting("ANGLE_SET")
        check.measure_settled(
            "settled_angle",
            move.trace,
            "ANGL",
            label=f"{setpoint:g}deg",
            lines={"set": setpoint},
            set=setpoint,
        )


@pytest.mark.verifies("angle_overshoot")
def test_overshoot(requirement, check, profile, table, inclinometer, steps):
    """Peak angle past set for every move of the named requirement."""
    for move in _moves(profile, requirement, table, inclinometer, steps):
        setpoint = move.setting("ANGLE_SET")
        peak = analysis.peak(move.trace.t, move.trace["ANGL"])
        check.trace(f"{setpoint:g}deg", move.trace, channel="ANGL", lines={"set": setpoint})
        check.measure("overshoot", peak - setpoint, set=setpoint)


@pytest.mark.verifies("angle_plc_reading")
def test_plc_angle(requirement, check, profile, table, inclinometer, steps):
    """PLC ANGLE against INC, paired readings while settled at each point."""
    for move in _moves(profile, requirement, table, inclinometer, steps):
        # the comparison is made at the move's settled point: its trace is the evidence
        check.trace(
            f"{move.setting('ANGLE_SET'):g}deg",
            move.trace,
            channel="ANGL",
            lines={"INC": move.reference_reading, "PLC": move.plc_reading},
        )
        check.measure(
            "plc_error",
            abs(move.plc_reading - move.reference_reading),
            note=f"at {move.setting('ANGLE_SET'):g} deg: PLC {move.plc_reading:.2f}, "
            f"INC {move.reference_reading:.3f}",
        )


@pytest.mark.verifies("rotation_rate")
def test_rotation_rate(requirement, check, table, inclinometer):
    """Rate between 10 % and 90 % of the move at each RATE."""
    p = requirement.params
    lo, hi = float(p["move_from"]), float(p["move_to"])
    for rate in p["rates"]:
        table.ready()
        table.configure({**requirement.settings, "RATE": rate, "ANGLE_SET": hi})
        duration = (hi - lo) / rate / 0.75 + 3.0
        acq = arm(inclinometer, duration_s=duration, rate_hz=INC_RATE_HZ)
        inclinometer.trigger()
        table.command("START")
        trace = acq.fetch(table)
        table.stop_and_wait()
        value = analysis.move_rate(trace.t, trace["ANGL"], start_level=lo, end_level=hi)
        check.trace(
            f"{rate:g}degps",
            trace,
            channel="ANGL",
            lines={"10 %": lo + 0.1 * (hi - lo), "90 %": lo + 0.9 * (hi - lo)},
        )
        check.measure("rotation_rate", value, rate=rate)


@pytest.mark.verifies("hold_and_return")
def test_hold_and_return(requirement, check, table, inclinometer):
    """Drift over the hold interval, hold width by 50 % crossings, return to 0."""
    s, p = requirement.settings, requirement.params
    table.configure(s)
    move = s["ANGLE_SET"] / s["RATE"] + s["RATE"] / p["accel"]
    duration = (2 * move + s["HOLD_S"]) * 1.2 + 5.0
    acq = arm(inclinometer, duration_s=duration, rate_hz=INC_RATE_HZ, serves=requirement)
    inclinometer.trigger()
    table.command("START")
    trace = acq.fetch(table)
    t, a = trace.t, trace["ANGL"]
    half = 0.5 * s["ANGLE_SET"]
    rises, falls = analysis.crossings(t, a, threshold=half, hysteresis=1.0)
    start, end = analysis.hold_interval(
        t, a, target=s["ANGLE_SET"], band=p["band"], margin=p["margin"]
    )
    check.trace(
        "hold",
        trace,
        channel="ANGL",
        marks={"hold from": start, "hold to": end},
        lines={"50 %": half},
    )
    check.measure("hold_drift", abs(analysis.drift(t, a, start=start, end=end)))
    complete = int(len(rises) > 0 and len(falls) > 0 and falls[-1] > rises[0])
    if enough(check, "hold_width", complete, 1, trace, "ANGL", until=duration, what="holds"):
        check.measure("hold_width", float(falls[-1] - rises[0]))
    check.measure("return_error", abs(analysis.final_level(t, a)))
