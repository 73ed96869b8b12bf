"""Protective monitor type test: service-mode sensor offset drives the real quantity past its
limit and the independent monitor channel must trip."""

import pytest

from rig import analysis
from rig.kinds import arm, behaviour_for

pytestmark = pytest.mark.safety


@pytest.mark.verifies("protective_monitor")
def test_protective_monitor(requirement, check, profile, table, reference_meter):
    """Offset the control channel, START, and judge the trip from FAULT and the reference trace."""
    kind = behaviour_for(profile)
    s = dict(requirement.settings)
    p = requirement.params
    table.configure(s)
    table.plc.write("SERVICE_KEY", p.get("service_key", 42405))
    offset = float(p["offset_fraction"]) * s["FORCE_SET"]
    table.plc.write("SENSOR_OFFSET", offset)
    acq = arm(
        reference_meter,
        duration_s=float(p["trace_s"]),
        rate_hz=500.0,
        pretrigger_s=0.1,
        table=table,
    )
    reference_meter.trigger()
    # the trigger instant is at or before this reading: trip times from it are upper bounds
    u_after = table.plc.uptime_ms()
    table.command("START")
    trace = acq.fetch(table)
    fault = table.plc.read_raw("FAULT")
    fault_ms = table.plc.read("FAULT_UPTIME_MS")
    t, f = trace.t, trace[kind.channel]
    release = analysis.release_time(t, f, threshold=float(p.get("release_level", 15.0)))
    trip = (fault_ms - u_after) / 1000.0 if fault_ms else None
    values = {
        "fault": fault,
        "release_after_trip": None if trip is None else release - trip,
        "peak_force": analysis.peak(t, f),
    }
    check.trace("trip", trace, channel=kind.channel, marks={"trip (PLC)": trip, "release": release})
    check.measure_all(values, note=f"SENSOR_OFFSET {offset:g}")
