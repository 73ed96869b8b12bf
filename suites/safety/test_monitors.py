"""Protective monitor type test: service-mode sensor offset drives the real quantity past its
limit and the independent monitor channel must trip."""

import pytest

from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

pytestmark = pytest.mark.safety


@pytest.mark.verifies("protective_monitor")
def test_protective_monitor(requirement, check, profile, table, reference_meter):
    """Offset the control channel, START, and judge the trip from FAULT and the reference trace."""
    kind = procedure_for(profile)
    s = dict(requirement.settings)
    p = requirement.params
    table.configure(s)
    # the key is the profile's: SERVICE_KEY's enum ENTER, 42405 (0xA5A5) in the ICD
    table.write("SERVICE_KEY", "ENTER")
    offset = kind.sensor_offset(s, p)
    table.write("SENSOR_OFFSET", offset)
    acq = arm(
        reference_meter,
        duration_s=float(p["trace_s"]),
        rate_hz=500.0,
        serves=requirement,
        pretrigger_s=0.1,
        table=table,
    )
    reference_meter.trigger()
    # the trigger instant is at or before this reading: trip times from it are upper bounds
    u_after = table.uptime_ms()
    table.command("START")
    trace = acq.fetch(table)
    require_complete(check, trace, kind.channel, until=float(p["trace_s"]))
    fault = table.read_raw("FAULT")
    fault_ms = table.read("FAULT_UPTIME_MS")
    trip = (fault_ms - u_after) / 1000.0 if fault_ms else None
    values = {"fault": fault, **kind.monitor_quantities(trace, p, trip)}
    check.trace(
        "trip",
        trace,
        channel=kind.channel,
        marks={"trip (PLC)": trip, "release": values.get("release")},
    )
    check.measure_all(values, note=f"SENSOR_OFFSET {offset:g}")
