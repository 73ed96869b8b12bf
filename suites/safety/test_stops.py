"""Safety stops (e-stop, patient stop): one body for every table kind, repeated and judged worst."""

import pytest

from rig.procedures import arm, procedure_for

pytestmark = pytest.mark.safety


@pytest.mark.verifies("safety_stop")
def test_safety_stop(requirement, check, profile, table, actuators, reference_meter):
    """Bring the table to the condition, open the relay (trigger edge = t 0), analyse the trace."""
    kind = procedure_for(profile)
    relay = requirement.params["relay"]
    for i in range(requirement.repeat):
        check.repeat = i
        if i:
            table.ready()
        kind.reach_condition(table, dict(requirement.settings), requirement.params)
        acq = arm(
            reference_meter,
            duration_s=float(requirement.params["trace_s"]),
            serves=requirement,
            pretrigger_s=0.2,
            table=table,
            source="EXT",
        )
        setattr(actuators, relay, True)
        trace = acq.fetch(table)
        values, marks = kind.stop_quantities(trace, requirement.params, requirement.settings)
        values["fault"] = table.read_raw("FAULT")
        check.trace(f"run{i + 1}", trace, channel=kind.channel, marks=marks)
        check.measure_all(values)
        setattr(actuators, relay, False)
