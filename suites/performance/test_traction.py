"""TT-890 performance requirements: force, ramps, overshoot, cycles, PLC reading, session."""

import numpy as np
import pytest

from rig import analysis
from rig.procedures import TractionProcedure, arm
from rig.procedures.events import enough

from .steps import steps_of

pytestmark = pytest.mark.performance


def _step(steps, table, meter, settings):
    return steps.get(table, meter, TractionProcedure(table.profile), settings, plc_register="FORCE")


@pytest.mark.verifies("settled_force")
def test_settled_force(requirement, check, table, force_meter, steps):
    """Settled force at each setpoint, from the LC, against the profile's limit."""
    for settings in steps_of(requirement, "FORCE_SET"):
        step = _step(steps, table, force_meter, settings)
        setpoint = step.setting("FORCE_SET")
        check.measure_settled(
            "settled_force",
            step.trace,
            "FORC",
            label=f"{setpoint:g}N",
            lines={"set": setpoint},
            set=setpoint,
        )


@pytest.mark.verifies("ramp_rate")
def test_ramp_rate(requirement, check, table, force_meter, steps):
    """Ramp rate between 10 % and 90 % of the step, at each RAMP_RATE."""
    for settings in steps_of(requirement, "FORCE_SET"):
        step = _step(steps, table, force_meter, settings)
        t, f = step.trace.t, step.trace["FORC"]
        start = float(requirement.params["step_from"])
        rate = analysis.ramp_rate(t, f, start_level=start, end_level=step.setting("FORCE_SET"))
        check.trace(
            f"{settings['RAMP_RATE']:g}Nps",
            step.trace,
            channel="FORC",
            lines={
                "10 %": start + 0.1 * (step.setting("FORCE_SET") - start),
                "90 %": start + 0.9 * (step.setting("FORCE_SET") - start),
            },
        )
        check.measure("ramp_rate", rate, rate=settings["RAMP_RATE"])


@pytest.mark.verifies("overshoot")
def test_overshoot(requirement, check, profile, table, force_meter, steps):
    """Peak force of every step of the requirements named in params steps_of."""
    for source in requirement.params["steps_of"]:
        for settings in steps_of(profile.requirement(source), "FORCE_SET"):
            step = _step(steps, table, force_meter, settings)
            peak = analysis.peak(step.trace.t, step.trace["FORC"])
            setpoint = step.setting("FORCE_SET")
            check.trace(
                f"{source}-{setpoint:g}N-{settings['RAMP_RATE']:g}Nps",
                step.trace,
                channel="FORC",
                lines={"set": setpoint},
                marks={"peak": float(step.trace.t[np.nanargmax(step.trace["FORC"])])},
            )
            check.measure(
                "peak_force",
                peak,
                set=step.setting("FORCE_SET"),
                note=f"step of {source}, RAMP_RATE {settings['RAMP_RATE']:g}",
            )


@pytest.mark.verifies("plc_reading")
def test_plc_reading(requirement, check, profile, table, force_meter, steps):
    """The PLC's own force reading against the LC, paired readings while settled."""
    for source in requirement.params["steps_of"]:
        for settings in steps_of(profile.requirement(source), "FORCE_SET"):
            step = _step(steps, table, force_meter, settings)
            # the comparison is made at the step's settled point: its trace is the evidence
            check.trace(
                f"{source}-{step.setting('FORCE_SET'):g}N",
                step.trace,
                channel="FORC",
                lines={"LC": step.reference_reading, "PLC": step.plc_reading},
            )
            check.measure(
                "plc_error",
                abs(step.plc_reading - step.reference_reading),
                reading=step.reference_reading,
                note=f"PLC {step.plc_reading:.2f} N, LC {step.reference_reading:.2f} N",
            )


@pytest.mark.verifies("intermittent")
def test_intermittent(requirement, check, table, force_meter):
    """Hold and rest widths (midpoint crossings) and settled rest force over the cycles."""
    s = requirement.settings
    cycles = int(requirement.params["cycles"])
    hold, rest = s["FORCE_SET"], s["FORCE_SET"] * s["REST_PCT"] / 100.0
    ramp = (hold - rest) / s["RAMP_RATE"]
    period = s["HOLD_S"] + s["REST_S"] + 2 * ramp
    # the first ramp, the cycles, half a cycle more to close the last rest, and margin for a
    # table whose levels last longer than set
    duration = hold / s["RAMP_RATE"] + (cycles + 0.5) * period * 1.25 + 2.0
    table.configure(s)
    acq = arm(force_meter, duration_s=duration, rate_hz=50.0, serves=requirement, pretrigger_s=0.1)
    force_meter.trigger()
    table.command("START")
    trace = acq.fetch(table)
    table.command("STOP")
    t, f = trace.t, trace["FORC"]
    mid = (hold + rest) / 2
    hyst = 0.05 * (hold - rest)
    rises, falls = analysis.crossings(t, f, threshold=mid, hysteresis=hyst)
    check.trace("cycles", trace, channel="FORC", lines={"midpoint": mid, "rest": rest})
    holds = [(r, next((x for x in falls if x > r), None)) for r in rises]
    holds = [(a, b) for a, b in holds if b is not None]
    rests = [(fa, next((x for x in rises if x > fa), None)) for fa in falls]
    rests = [(a, b) for a, b in rests if b is not None]
    judged_holds = holds[1:]  # the first hold is entered from 0 N: not judged
    if not enough(
        check, "rest_width", len(rests), cycles, trace, "FORC", until=duration, what="rests"
    ) or not enough(
        check,
        "hold_width",
        len(judged_holds),
        cycles - 1,
        trace,
        "FORC",
        until=duration,
        what="judged holds",
    ):
        return
    for a, b in judged_holds[:cycles]:
        check.measure("hold_width", b - a)
    target, tol = check.band("rest_force")
    for a, b in rests[:cycles]:
        check.measure("rest_width", b - a)
        window = (t >= a) & (t <= b)
        tw, fw = t[window], f[window]
        check.measure_from(
            "rest_force", analysis.settled_value, tw, fw, target=target, tolerance=tol
        )


@pytest.mark.verifies("session_length")
def test_session_length(requirement, check, table, force_meter):
    """Session width between the 50 % crossings of the set force."""
    s = requirement.settings
    duration = s["SESSION_S"] * 1.1 + s["FORCE_SET"] / s["RAMP_RATE"] * 2 + 5.0
    table.configure(s)
    acq = arm(force_meter, duration_s=duration, rate_hz=50.0, serves=requirement, pretrigger_s=0.1)
    force_meter.trigger()
    table.command("START")
    trace = acq.fetch(table)
    t, f = trace.t, trace["FORC"]
    half = 0.5 * s["FORCE_SET"]
    rises, falls = analysis.crossings(t, f, threshold=half, hysteresis=0.05 * s["FORCE_SET"])
    check.trace(
        "session",
        trace,
        channel="FORC",
        marks={"start": rises[0] if len(rises) else None, "end": falls[-1] if len(falls) else None},
        lines={"50 %": half},
    )
    complete = int(len(rises) > 0 and len(falls) > 0 and falls[-1] > rises[0])
    if not enough(
        check, "session_width", complete, 1, trace, "FORC", until=duration, what="sessions"
    ):
        return
    check.measure("session_width", float(falls[-1] - rises[0]))
