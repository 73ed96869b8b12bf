"""Start interlocks: START is refused while a stop input is active, and nothing moves."""

import pytest

from rig.errors import ModbusExceptionError
from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

pytestmark = pytest.mark.safety


@pytest.mark.verifies("interlocks")
def test_interlocks(requirement, check, profile, table, actuators, reference_meter):
    """For each relay named in params: relay ON, START, expect 06 and no motion."""
    kind = procedure_for(profile)
    p = requirement.params
    for relay in p["relays"]:
        table.ready()
        table.configure(dict(requirement.settings))
        setattr(actuators, relay, True)
        acq = arm(reference_meter, duration_s=float(p["still_s"]), rate_hz=100.0)
        reference_meter.trigger()
        code = 0
        try:
            table.command("START")
        except ModbusExceptionError as e:
            code = e.code
        trace = acq.fetch(table)
        require_complete(check, trace, kind.channel, until=float(p["still_s"]))
        check.trace(relay, trace, channel=kind.channel)
        check.measure_all(
            {"exception_code": code, "motion": kind.motion(trace)},
            note=f"START with {relay} relay ON",
        )
        setattr(actuators, relay, False)
