"""Power loss and restore: the acquisitions are the clock while the PLC cannot answer."""

import pytest

from rig import analysis
from rig.errors import ModbusExceptionError
from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

pytestmark = pytest.mark.safety


@pytest.mark.verifies("power_loss")
def test_power_loss(requirement, check, profile, table, actuators, reference_meter):
    """POWER OFF for off_s (timed by an acquisition), ON, then judge the restore."""
    kind = procedure_for(profile)
    p = requirement.params
    kind.reach_condition(table, dict(requirement.settings), p)
    off = arm(
        reference_meter,
        duration_s=float(p["off_s"]),
        rate_hz=200.0,
        serves=requirement,
        pretrigger_s=0.2,
        source="EXT",
        table=table,
    )
    rate = table.clock_rate()
    with table.heartbeat_paused():
        actuators.power = False
        off_trace = off.fetch(table)
        require_complete(check, off_trace, kind.channel, until=float(p["off_s"]))
        on = arm(
            reference_meter,
            duration_s=float(p["quiet_s"]),
            rate_hz=200.0,
            pretrigger_s=0.0,
            source="EXT",
        )
        actuators.power = True
        # poll at a small fraction of a device second so the first answer is seen promptly
        step = 0.02 / rate
        table.wait_responding(
            table.wall_timeout(float(p["quiet_s"]) * 2),
            request_timeout=max(step, 0.002),
            interval=step,
        )
        # UPTIME_MS counts from power on, boot included: the value the first answer carried is
        # when the PLC answered, on its own clock; it bounds the instant it could first answer
        # from above by at most one poll (conservative), with no host round trip in it
        answered = table.answered_uptime_ms()
        answer_time = None if answered is None else answered / 1000.0
        fault = table.read_raw("FAULT")
        booted_ms = table.read("FAULT_UPTIME_MS")  # for FAULT 8: when the boot finished
        on_trace = on.fetch(table)
        require_complete(check, on_trace, kind.channel, until=float(p["quiet_s"]))
    refused = 0
    try:
        table.command("START")
    except ModbusExceptionError as e:
        refused = e.code
    t, x = off_trace.t, off_trace[kind.channel]
    decay = float(p["decay_s"])
    values = {
        "force_after_off": kind.motion(off_trace, start=decay),
        "stop_time": analysis.stop_time(t, x, tolerance=float(p["still_tolerance"])),
        "drift_while_off": abs(analysis.drift(t, x, start=0.0, end=float(t[-1]))),
        "answer_time": answer_time,
        "fault": fault,
        "force_after_restore": kind.motion(on_trace, start=0.0),
        "motion_after_restore": kind.motion(on_trace, start=0.0),
        "start_refused": refused,
    }
    check.trace("power-off", off_trace, channel=kind.channel, marks={"decay": decay})
    check.trace("power-on", on_trace, channel=kind.channel)
    # the poll's share of the answer time: from the end of boot (the PLC's FAULT_UPTIME_MS for
    # FAULT 8) to the first answer the rig saw; the answer time is the conservative one
    share = "" if answered is None or not booted_ms else f"{answered - booted_ms} ms after "
    check.measure_all(values, note=f"first answer seen {share}the end of boot".strip())
