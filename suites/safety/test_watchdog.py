"""Comm-loss watchdog: stop the heartbeat while running; fault time from the PLC's own clock."""

import pytest

from rig import analysis
from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

pytestmark = pytest.mark.safety


@pytest.mark.verifies("watchdog")
def test_watchdog(requirement, check, profile, table, reference_meter):
    """The reference is triggered by *TRG at the last heartbeat write."""
    kind = procedure_for(profile)
    p = requirement.params
    s = dict(requirement.settings)
    kind.reach_condition(table, s, p)
    acq = arm(
        reference_meter,
        duration_s=float(p["trace_s"]),
        rate_hz=200.0,
        pretrigger_s=0.2,
        table=table,
    )
    with table.heartbeat_paused() as writer_before:
        last = table.last_heartbeat()
        reference_meter.trigger()
        trace = acq.fetch(table)
        require_complete(check, trace, kind.channel, until=float(p["trace_s"]))
        fault = table.read_raw("FAULT")
        fault_ms = table.read("FAULT_UPTIME_MS")
    fault_time = analysis.fault_time(fault_ms, last.before, writer_before) if fault_ms else None
    quiet = float(p["quiet_from_s"])
    values = {
        "fault": fault,
        "fault_time": fault_time,
        # after the controlled stop: no tension (traction), parked (roller), upright (inversion)
        "force_after": kind.motion(trace, start=quiet),
        "return_error": kind.final_error(trace, 0.0),
    }
    if "TRAVEL_START" in s:
        values["park_error"] = kind.final_error(trace, s["TRAVEL_START"])
    check.trace(
        "comm-loss",
        trace,
        channel=kind.channel,
        marks={"fault (PLC)": fault_time, "quiet from": quiet},
    )
    # which beat the fault is timed from, and the device ms in which that write landed (what
    # the host's round trip can still add to the fault time)
    if fault_ms and fault_ms < last.before:
        note = "timed from the heartbeat writer's last beat (the table faulted before the rig's)"
    else:
        note = f"the last heartbeat landed within {last.bracket_ms} device ms of its UPTIME_MS read"
    check.measure_all(values, note=note)
