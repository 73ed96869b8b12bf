"""Safety stops (e-stop, patient stop): one body for every table kind, repeated and judged worst."""

import pytest

from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

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
        duration = kind.stop_trace_s(table, requirement.settings, requirement.params)
        acq = arm(
            reference_meter,
            duration_s=duration,
            serves=requirement,
            pretrigger_s=0.2,
            table=table,
            source="EXT",
        )
        setattr(actuators, relay, True)
        trace = acq.fetch(table)
        # quantities of the whole trace (a final level, an event not found) are judged only on
        # the trace asked for: a shorter or gapped one is the rig's ERROR, not the unit's FAIL
        require_complete(check, trace, kind.channel, until=duration)
        values, marks = kind.stop_quantities(trace, requirement.params, requirement.settings)
        values["fault"] = table.read_raw("FAULT")
        check.trace(f"run{i + 1}", trace, channel=kind.channel, marks=marks)
        missing = sorted(k for k, v in values.items() if v is None)
        note = (
            f"not in the complete {duration:.2f} s trace: {', '.join(missing)}" if missing else ""
        )
        check.measure_all(values, note=note)
        setattr(actuators, relay, False)
