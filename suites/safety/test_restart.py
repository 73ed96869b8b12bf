"""No restart after an e-stop is released and reset."""

import pytest

from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

pytestmark = pytest.mark.safety


@pytest.mark.verifies("no_restart")
def test_no_restart(requirement, check, profile, table, actuators, reference_meter):
    """E-stop at the condition, then release the relay (trigger edge) and RESET: nothing moves."""
    kind = procedure_for(profile)
    p = requirement.params
    relay = p["relay"]
    kind.reach_condition(table, dict(requirement.settings), p)
    setattr(actuators, relay, True)
    table.wait_state("ESTOP", "FAULT")
    table.wait_status("motor_enabled", value=False)
    quiet = float(p["quiet_s"])
    acq = arm(
        reference_meter,
        duration_s=quiet + 1.0,
        rate_hz=100.0,
        pretrigger_s=0.1,
        source="EXT",
        table=table,
    )
    setattr(actuators, relay, False)
    table.command("RESET")
    trace = acq.fetch(table)
    require_complete(check, trace, kind.channel, until=quiet + 1.0)
    values = {"motion": kind.motion(trace, start=0.0), "state": table.read_raw("STATE")}
    check.trace("after-reset", trace, channel=kind.channel)
    check.measure_all(values)
